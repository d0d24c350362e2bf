"""Reward shaping (envs/shaping.py): NLE's enums, each term on its own, and resume exactness."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from nle.env.tasks import TASK_ACTIONS
from nle.nethack.actions import CompassDirection, MiscDirection

from nethack_moe import features as F
from nethack_moe.envs import group
from nethack_moe.envs.factory import EnvConfig, SeedPlan
from nethack_moe.envs.shaping import Shaper, descend_reward, hint_action
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.game.actions import HINT_ACTIONS, HINT_COMMANDS
from nethack_moe.game.navigation import DIRS


def test_hint_actions_are_the_tasks_compass_moves_then_down():
    # the NetHackScore ids the vector env used as raw numbers before
    assert HINT_ACTIONS.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 18]
    assert [TASK_ACTIONS[a] for a in HINT_ACTIONS] == list(HINT_COMMANDS)
    assert HINT_COMMANDS[-1] == MiscDirection.DOWN
    # the hint's move k is navigation.DIRS[k]: N is up (-1, 0), SE is (1, 1) ...
    moves = dict(zip(HINT_COMMANDS, DIRS.tolist(), strict=False))
    assert moves[CompassDirection.N] == [-1, 0] and moves[CompassDirection.SE] == [1, 1]


def _state_with_hint(k: int | None, dist: float = 0.0, stairs: bool = False) -> np.ndarray:
    s = np.zeros((1, F.STATE_DIM), np.float32)
    if k is not None:
        s[0, F.NAV_ONEHOT + k] = 1.0
        s[0, F.NAV_DIST] = dist / 40.0
        s[0, F.NAV_STAIRS] = float(stairs)
    return s


def test_hint_action_reads_the_one_hot():
    assert hint_action(_state_with_hint(None)).tolist() == [-1]
    assert hint_action(_state_with_hint(2)).tolist() == [3]
    assert hint_action(_state_with_hint(8)).tolist() == [18]


def test_descend_reward_pays_each_new_deepest_level_once():
    cfg = EnvConfig(descend_bonus=2.0)
    assert descend_reward(cfg, 3, 1, False) == 4.0
    assert descend_reward(cfg, 2, 2, False) == 0.0  # back on a level already reached
    assert descend_reward(cfg, 3, 1, True) == 0.0  # game over: blstats are zeroed
    assert descend_reward(EnvConfig(), 3, 1, False) == 0.0


def test_shaper_pays_exploration_stairs_progress_and_the_hint():
    cfg = EnvConfig(explore_bonus=0.5, stairs_bonus=0.25, hint_bonus=0.1)
    sh = Shaper(cfg, 1)
    js = np.array([0])
    one = np.array([1])

    def observe(state, cells, depth=1, fresh=False):
        return float(sh.observe(js, state, cells * one, depth * one, np.array([fresh]))[0])

    assert observe(_state_with_hint(1, 6.0, True), 1, fresh=True) == 0.0  # start: recorded only
    assert sh.hint_reward(0, 2) == 0.1 and sh.hint_reward(0, 3) == 0.0
    assert observe(_state_with_hint(1, 5.0, True), 3) == 0.5 * 2 + 0.25 * 1.0  # 2 cells, 1 step
    assert observe(_state_with_hint(1, 7.0, True), 3) == -0.25 * 2.0  # going back costs
    assert observe(_state_with_hint(0, 3.0, False), 4) == 0.5  # no stairs goal: no progress term
    assert observe(_state_with_hint(0, 3.0, True), 9, depth=2) == 0.0  # new level: nothing
    assert Shaper(EnvConfig(), 1).enabled is False and sh.enabled


ALL_BONUSES: dict[str, Any] = dict(
    explore_bonus=0.01, stairs_bonus=0.05, hint_bonus=0.1, descend_bonus=1.0
)


def _hinted_play(cfg: EnvConfig, n: int, steps: int, workers: int = 0, direct: bool = True):
    """Half hint-following, half random play; per step (state, reward, terminated, truncated,
    finished episodes)."""
    rng = np.random.default_rng(1)
    out = []
    old = group.EnvGroup.direct_step
    group.EnvGroup.direct_step = direct
    try:
        with VectorEnv(cfg, n, workers, SeedPlan("train", 3)) as v:
            for _ in range(steps):
                hint = np.maximum(hint_action(v.buf.state), 0)
                v.step(np.where(rng.random(n) < 0.5, hint, rng.integers(0, v.n_actions, n)))
                out.append((v.buf.state.copy(), v.buf.reward.copy(), v.buf.terminated.copy(),
                            v.buf.truncated.copy(), [e.to_dict() for e in v.finished()]))  # fmt: skip
    finally:
        group.EnvGroup.direct_step = old
    return out


def test_episode_reward_is_the_sum_of_the_shaped_step_rewards():
    cfg = EnvConfig(max_episode_steps=60, **ALL_BONUSES)
    plain = _hinted_play(EnvConfig(max_episode_steps=60), 4, 120)
    shaped = _hinted_play(cfg, 4, 120)
    total = np.zeros(4)
    n_eps = 0
    for (_, r, *_, eps), (*_, eps_plain) in zip(shaped, plain, strict=True):
        total += r
        for e, p in zip(eps, eps_plain, strict=True):
            assert e["score"] == p["score"]  # shaping never changes the score
            assert e["reward"] == pytest.approx(total[e["env_index"]], abs=1e-4)
            total[e["env_index"]] = 0.0
            n_eps += 1
    assert n_eps == 8


def test_resume_replays_the_shaping_state_exactly():
    cfg = EnvConfig(max_episode_steps=40, **ALL_BONUSES)
    rng = np.random.default_rng(3)
    with VectorEnv(cfg, 3, 0, SeedPlan("train", 2)) as v:
        for _ in range(25):
            v.step(np.where(rng.random(3) < 0.5, np.maximum(hint_action(v.buf.state), 0), 1))
        st = v.get_state()
        acts = [np.where(rng.random(3) < 0.5, 18, rng.integers(0, 23, 3)) for _ in range(30)]
        ref = []
        for a in acts:
            v.step(np.where(a == 18, np.maximum(hint_action(v.buf.state), 0), a))
            ref.append((v.buf.reward.copy(), [e.to_dict() for e in v.finished()]))
    with VectorEnv(cfg, 3, 0, SeedPlan("train", 2)) as w:
        w.set_state(st)
        for a, (r, eps) in zip(acts, ref, strict=True):
            w.step(np.where(a == 18, np.maximum(hint_action(w.buf.state), 0), a))
            assert np.array_equal(w.buf.reward, r)
            assert [e.to_dict() for e in w.finished()] == eps
