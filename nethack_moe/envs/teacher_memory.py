"""The teacher's per-env memory: preallocated ``[N, ...]`` arrays, one row per env, cleared at
episode start, so that the kernel allocates nothing per step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nle import nethack as nh

from nethack_moe import features as F

# ---------------------------------------------------------------------------------------------
# Per-env memory
# ---------------------------------------------------------------------------------------------


@dataclass
class TeacherMemory:
    """The teacher's memory of ``N`` envs (rows), updated in place by :func:`compute_teacher`.

    The level part clears itself when the depth changes; :meth:`clear` a row at episode start.
    """

    level: np.ndarray
    """``[N]`` int64: depth the level part belongs to (-1 = none)."""
    searched: np.ndarray
    """``[N, 21, 79]`` int16: searches made next to each cell of this level."""
    failed: np.ndarray
    """``[N, 21, 79]`` int16: moves into each cell that left the hero in place (3 = blocked)."""
    kicks: np.ndarray
    """``[N, 21, 79]`` int16: kicks at each door of this level."""
    seen: np.ndarray
    """``[N, 21, 79]`` bool: cells next to where the hero has been on this level, observed or
    rushed through (their blank map is rock, not unexplored)."""
    peaceful: np.ndarray
    """``[N, NUMMONS]`` bool: monster kinds NetHack asked "Really attack?" about."""
    pos: np.ndarray
    """``[N, 2]`` int64: hero position (y, x) at the last observation (-1 = none)."""
    taken: np.ndarray
    """``[N]`` int64: action taken from the last observation (-1 = none or consumed)."""
    kick_dir: np.ndarray
    """``[N]`` int64: direction of a kick waiting for its direction prompt: 0..7 at a door,
    8..15 at a monster (-1 = none)."""
    stall: np.ndarray
    """``[N]`` int64: consecutive steps that left the hero in place."""
    eats: np.ndarray
    """``[N]`` int64: eat commands given this episode."""
    held: np.ndarray
    """``[N]`` int64: 1 while the hero has not moved since a trap held it (failed moves then say
    nothing about the cells moved into), else 0."""
    doors: np.ndarray
    """``[N, 21, 79]`` int8: what each doorway of this level was last seen as: 2 a door (open or
    closed: no diagonal moves), 1 no door (empty or broken), 0 never seen as a doorway."""
    goal: np.ndarray
    """``[N, 4]`` int64: the walk goal the teacher committed to: ``(branch, y, x, limit)``
    (``limit``: the search round it was chosen in; branch -1 = none). Re-planning from every
    cell made the goal flip between two cells as the hero moved (the hero went back and forth)."""
    prev: np.ndarray
    """``[N, 2]`` int64: hero position one observation before ``pos`` (-1 = none)."""
    calm: np.ndarray
    """``[N]`` int64: steps left without rush moves, after the hero came back to the cell it
    left the step before (a rush overshooting and the path leading back)."""

    def rows(self, sl: Any) -> TeacherMemory:
        """View (slice) of some rows."""
        return TeacherMemory(*(getattr(self, f)[sl] for f in _MEM_FIELDS))

    def clear(self, i: Any) -> None:
        """Forget everything about rows ``i`` (a new episode)."""
        self.level[i] = -1
        self.searched[i] = 0
        self.failed[i] = 0
        self.kicks[i] = 0
        self.seen[i] = False
        self.peaceful[i] = False
        self.pos[i] = -1
        self.taken[i] = -1
        self.kick_dir[i] = -1
        self.stall[i] = 0
        self.eats[i] = 0
        self.doors[i] = 0
        self.held[i] = 0
        self.goal[i] = -1
        self.prev[i] = -1
        self.calm[i] = 0


_MEM_FIELDS = ("level", "searched", "failed", "kicks", "seen", "peaceful", "pos", "taken", "kick_dir",
               "stall", "eats", "held", "doors", "goal", "prev", "calm")  # fmt: skip


def new_teacher_memory(n: int) -> TeacherMemory:
    """Empty memory for ``n`` envs."""
    R, C = F.ROWS, F.COLS
    m = TeacherMemory(
        np.zeros(n, np.int64), np.zeros((n, R, C), np.int16), np.zeros((n, R, C), np.int16),
        np.zeros((n, R, C), np.int16), np.zeros((n, R, C), np.bool_),
        np.zeros((n, nh.NUMMONS), np.bool_),
        np.zeros((n, 2), np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64),
        np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64),
        np.zeros((n, R, C), np.int8), np.zeros((n, 4), np.int64), np.zeros((n, 2), np.int64),
        np.zeros(n, np.int64),
    )  # fmt: skip
    m.clear(slice(None))
    return m
