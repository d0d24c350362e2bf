"""Reward shaping, in one place: what the learner is paid besides NLE's reward.

Four documented terms (:class:`~nethack_moe.envs.factory.EnvConfig`), none of which changes the
in-game score that the evaluation reports:

* ``descend_bonus`` per dungeon level deeper than the deepest reached so far this episode;
* ``hint_bonus`` for taking the action the navigation hint advises (:data:`~nethack_moe.game.actions.HINT_ACTIONS`);
* ``explore_bonus`` per cell of the level the hero stands on for the first time;
* ``stairs_bonus`` per step of shortest-path progress toward the known down stairs (a potential
  difference: going back costs what going forward earned).

The vector env calls :func:`descend_reward` for each step's NLE reward, :meth:`Shaper.hint_reward`
for the action just taken, and :meth:`Shaper.observe` with the features of the new observations.
Resume replays each episode's actions through the same calls, so the shaping state is rebuilt
exactly.
"""

from __future__ import annotations

import numpy as np

from nethack_moe import features as F
from nethack_moe.envs.factory import EnvConfig
from nethack_moe.game.actions import HINT_ACTIONS


def hint_action(state: np.ndarray) -> np.ndarray:
    """``[B]`` action id the navigation hint of ``state [B, S]`` advises; -1 without a hint."""
    nav = state[:, F.NAV_ONEHOT : F.NAV_ONEHOT + F.N_NAV]
    return np.where(nav.any(1), HINT_ACTIONS[nav.argmax(1)], -1)


def descend_reward(cfg: EnvConfig, depth: int, max_depth: int, game_over: bool) -> float:
    """``descend_bonus`` per level below the deepest one of the episode (0 once the game ended:
    NLE zeroes the blstats then)."""
    if not cfg.descend_bonus or game_over or depth <= max_depth:
        return 0.0
    return cfg.descend_bonus * float(depth - max_depth)


class Shaper:
    """The shaping state of ``n`` envs: what the last observation of each looked like."""

    def __init__(self, cfg: EnvConfig, n: int):
        self.cfg = cfg
        self.enabled = bool(cfg.explore_bonus or cfg.stairs_bonus or cfg.hint_bonus)
        self.prev_hint = np.full(n, -1, np.int64)  # action the hint advised for the current obs
        self.prev_cells = np.zeros(n, np.int64)
        self.prev_dist = np.zeros(n, np.float64)
        self.prev_stairs = np.zeros(n, bool)
        self.prev_depth = np.zeros(n, np.int64)

    def hint_reward(self, j: int, action: int) -> float:
        """``hint_bonus`` when env ``j`` took the action its last observation's hint advised."""
        if self.cfg.hint_bonus and action == self.prev_hint[j]:
            return self.cfg.hint_bonus
        return 0.0

    def observe(
        self,
        js: np.ndarray,
        state: np.ndarray,
        cells: np.ndarray,
        depth: np.ndarray,
        fresh: np.ndarray,
    ) -> np.ndarray:
        """Shaping rewards ``[len(js)]`` of envs ``js`` for their new observations.

        Args:
            js: local env indices.
            state: ``[len(js), S]`` their new state vectors.
            cells: ``[len(js)]`` cells of the level stood on so far (``Memory.n_visited``).
            depth: ``[len(js)]`` their dungeon depth.
            fresh: ``[len(js)]`` rows that start a new episode: they only record the start.
        """
        cfg = self.cfg
        self.prev_hint[js] = hint_action(state)
        dist = state[:, F.NAV_DIST] * 40.0
        stairs = state[:, F.NAV_STAIRS] > 0.5
        same = (depth == self.prev_depth[js]) & ~fresh
        r = cfg.explore_bonus * np.maximum(cells - self.prev_cells[js], 0) * same
        r = r + cfg.stairs_bonus * (self.prev_dist[js] - dist) * (
            same & stairs & self.prev_stairs[js]
        )
        self.prev_cells[js] = cells
        self.prev_dist[js] = dist
        self.prev_stairs[js] = stairs
        self.prev_depth[js] = depth
        return r
