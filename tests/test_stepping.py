"""CoreStep (NetHackScore below its gymnasium wrapper) gives the wrapper's trajectories exactly."""

from __future__ import annotations

import numpy as np
import pytest

from nethack_moe.envs.factory import EnvConfig, make_env, seed_env
from nethack_moe.envs.stepping import CoreStep, GymStep, StepStatus, stepper

#: Checked every step besides the features' keys: the game's own state flags.
EXTRA = ("program_state", "internal")


def _pair(cfg: EnvConfig, core: int, disp: int) -> tuple[GymStep, CoreStep]:
    envs = [make_env(cfg).unwrapped for _ in range(2)]
    for e in envs:
        seed_env(e, core, disp)
    return GymStep(envs[0]), CoreStep(envs[1])


def _snapshot(s: GymStep) -> list[np.ndarray]:
    e = s.env
    keys = list(s.buffers) + [e.last_observation[e._observation_keys.index(k)] for k in EXTRA]
    return [np.array(a, copy=True) for a in keys]


def _play(cfg: EnvConfig, seed: int, steps: int) -> list[int]:
    """Step a gym env and a CoreStep env with the same seeds and actions; return end statuses."""
    rng = np.random.default_rng(seed)
    gym, core = _pair(cfg, 1000 + seed, 2000 + seed)
    ends = []
    try:
        for s in (gym, core):
            s.reset()
        for t in range(steps):
            a = int(rng.integers(gym.env.action_space.n))
            want, got = gym(a), core(a)
            assert got == want, f"seed {seed} step {t}: {got} != {want}"
            assert all(type(x) is type(y) for x, y in zip(got, want, strict=True))
            for x, y in zip(_snapshot(core), _snapshot(gym), strict=True):
                np.testing.assert_array_equal(x, y)
            for name in ("_steps", "_frozen_steps"):
                assert getattr(core.env, name) == getattr(gym.env, name), name
            if want[1]:
                ends.append(want[3])
                for s in (gym, core):
                    seed_env(s.env, 3000 + t, seed)
                    s.reset()
    finally:
        gym.env.close()
        core.env.close()
    return ends


def test_core_step_equals_the_gym_step_through_deaths_and_the_step_cap():
    # NLE's own cap is one more than ours (make_env): 81 steps, then NLE quits the game (ABORTED)
    cfg = EnvConfig(max_episode_steps=80)
    ends = []
    for seed in range(6):
        ends += _play(cfg, seed, 400)
    assert StepStatus.DEATH in ends and StepStatus.ABORTED in ends, ends


def test_core_step_keeps_the_reward_with_another_penalty():
    ends = _play(EnvConfig(max_episode_steps=200, penalty_step=-0.25), 11, 250)
    assert ends


@pytest.mark.parametrize("task", ["NetHackStaircase-v0", "NetHackChallenge-v0"])
def test_other_tasks_go_through_gymnasium(task):
    env = make_env(EnvConfig(task=task, max_episode_steps=10)).unwrapped
    assert type(stepper(env)) is GymStep
    with pytest.raises(TypeError):
        CoreStep(env)
    env.close()
    env = make_env(EnvConfig(max_episode_steps=10)).unwrapped
    assert type(stepper(env)) is CoreStep and type(stepper(env, direct=False)) is GymStep
    env.close()
