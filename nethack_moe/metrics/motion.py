"""Where a player's steps take the hero: the figures behind "greedy play loops in place".

Each step (the action of row t of an episode, seen in the position of row t+1; the last action
of an episode has no next row and is not counted) is exactly one of:

- ``still``: the position (x, y, depth) did not change (a move into a wall, a no-op, a prompt);
- ``back``: back to the cell of two rows before, which the hero had just left (A-B-A);
- ``revisit``: any other cell this episode had already stood on;
- ``new``: a cell first stood on in this episode.

A memoryless deterministic policy that repeats a no-op shows as ``still``; one that walks
between two cells as ``back``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nethack_moe.metrics.statelog import StateLog

MOTION_KINDS = ("still", "back", "revisit", "new")


@dataclass(frozen=True)
class MotionFigures:
    """Shares of the counted steps, and how many there were."""

    still: float
    back: float
    revisit: float
    new: float
    steps: int

    def to_json(self) -> dict[str, float | int]:
        """The ``motion`` block of an evaluation summary."""
        return {**{k: getattr(self, k) for k in MOTION_KINDS}, "steps": self.steps}


def motion_kinds(st: StateLog) -> np.ndarray:
    """``[S]`` int8: for each row, how the step before it moved the hero (an index into
    :data:`MOTION_KINDS`); ``-1`` for the first row of an episode (no step led to it)."""
    ep = st.episode.astype(np.int64)
    key = (ep * 64 + st.depth.astype(np.int64)) * 4096 + st.y.astype(np.int64) * 128 + st.x
    _, first = np.unique(key, return_index=True)  # the key holds the episode: per-episode cells
    is_new = np.zeros(key.shape[0], bool)
    is_new[first] = True  # rows are in time order within an episode, so the first is the visit
    kinds = np.full(key.shape[0], -1, np.int8)
    after = np.flatnonzero(ep[1:] == ep[:-1]) + 1  # rows that show the result of a step
    still = key[after] == key[after - 1]
    back = np.zeros(after.shape[0], bool)
    two_back = after >= 2
    idx = after[two_back]
    back[two_back] = (key[idx] == key[idx - 2]) & (key[idx] != key[idx - 1])  # same episode too
    new = is_new[after] & ~still
    kinds[after] = np.select([still, back, new], [0, 1, 3], default=2)
    return kinds


def motion_figures(st: StateLog) -> MotionFigures | None:
    """The shares over every episode of ``st`` (``None`` without a counted step)."""
    kinds = motion_kinds(st)
    counted = kinds[kinds >= 0]
    if counted.shape[0] == 0:
        return None
    still, back, revisit, new = (float((counted == i).mean()) for i in range(len(MOTION_KINDS)))
    return MotionFigures(still, back, revisit, new, int(counted.shape[0]))
