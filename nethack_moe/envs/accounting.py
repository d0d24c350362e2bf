"""Per-episode accounting exactly as PROTOCOL.md defines it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from nle import nethack as nh

#: Columns of the per-env episode record array ``[N, len(EPISODE_FIELDS)]`` (float64).
EPISODE_FIELDS = ("done", "score", "reward", "length", "depth", "died", "seed_core", "seed_disp")
EP = {k: i for i, k in enumerate(EPISODE_FIELDS)}


@dataclass
class EpisodeRecord:
    """One finished episode."""

    env_index: int
    score: int
    """In-game score at the end minus at the start (last score seen while the game ran)."""
    reward: float
    """Sum of the rewards the learner was trained on (shaping included)."""
    length: int
    depth: int
    """Deepest dungeon level reached."""
    died: bool
    """Terminated by death (or another game end) rather than truncated by the step cap."""
    seed_core: int
    seed_disp: int

    def to_dict(self) -> dict:
        return asdict(self)


class EpisodeTracker:
    """Running totals for a group of envs; arrays indexed by local env slot.

    ``start`` at reset, ``update`` after every step with the new observation's blstats,
    ``finish`` when the episode ends. NLE zeroes ``blstats`` after death, so the score and depth
    of the final observation are ignored when the episode terminated.
    """

    def __init__(self, n: int):
        self.start_score = np.zeros(n, np.int64)
        self.last_score = np.zeros(n, np.int64)
        self.max_depth = np.zeros(n, np.int64)
        self.reward = np.zeros(n, np.float64)
        self.length = np.zeros(n, np.int64)
        self.seed_core = np.zeros(n, np.int64)
        self.seed_disp = np.zeros(n, np.int64)

    def start(self, i: int, blstats: np.ndarray, core: int, disp: int) -> None:
        self.start_score[i] = blstats[nh.NLE_BL_SCORE]
        self.last_score[i] = blstats[nh.NLE_BL_SCORE]
        self.max_depth[i] = blstats[nh.NLE_BL_DEPTH]
        self.reward[i] = 0.0
        self.length[i] = 0
        self.seed_core[i] = core
        self.seed_disp[i] = disp

    def update(self, i: int, blstats: np.ndarray, reward: float, game_over: bool) -> None:
        """Add one step; ``game_over``: the game ended (its blstats are then zeroed, ignore them)."""
        self.reward[i] += reward
        self.length[i] += 1
        if not game_over:
            self.last_score[i] = blstats[nh.NLE_BL_SCORE]
            d = blstats[nh.NLE_BL_DEPTH]
            if d > self.max_depth[i]:
                self.max_depth[i] = d

    def finish(self, i: int, died: bool, out: np.ndarray) -> None:
        """Write the finished episode's record into ``out`` (a row of ``EPISODE_FIELDS``)."""
        out[EP["done"]] = 1.0
        out[EP["score"]] = self.last_score[i] - self.start_score[i]
        out[EP["reward"]] = self.reward[i]
        out[EP["length"]] = self.length[i]
        out[EP["depth"]] = self.max_depth[i]
        out[EP["died"]] = float(died)
        out[EP["seed_core"]] = self.seed_core[i]
        out[EP["seed_disp"]] = self.seed_disp[i]


def record_from_row(env_index: int, row: np.ndarray) -> EpisodeRecord:
    """Build an :class:`EpisodeRecord` from one row of the shared episode array."""
    return EpisodeRecord(
        env_index=int(env_index),
        score=int(round(row[EP["score"]])),
        reward=float(row[EP["reward"]]),
        length=int(row[EP["length"]]),
        depth=int(row[EP["depth"]]),
        died=bool(row[EP["died"]]),
        seed_core=int(row[EP["seed_core"]]),
        seed_disp=int(row[EP["seed_disp"]]),
    )
