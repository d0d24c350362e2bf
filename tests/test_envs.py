"""Env factory, seeding, episode accounting and the vector env, on the real NLE."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from nle import nethack as nh

from nethack_moe.envs.factory import (
    EnvConfig,
    SeedPlan,
    eval_seeds,
    make_env,
    seed_env,
    train_seeds,
)
from nethack_moe.envs.vector import VectorEnv


def _play(cfg: EnvConfig, core: int, disp: int, actions: np.ndarray):
    """Independent replay with a raw env: (score while running, max depth, length, done)."""
    env = make_env(cfg).unwrapped
    seed_env(env, core, disp)
    obs, _ = env.reset()
    start = int(obs["blstats"][nh.NLE_BL_SCORE])
    last, depth, n = start, int(obs["blstats"][nh.NLE_BL_DEPTH]), 0
    done = False
    for a in actions:
        obs, _, done, _, _ = env.step(int(a))
        n += 1
        if done:
            break
        last = int(obs["blstats"][nh.NLE_BL_SCORE])
        depth = max(depth, int(obs["blstats"][nh.NLE_BL_DEPTH]))
        if n >= cfg.max_episode_steps:
            break
    env.close()
    return last - start, depth, n, done


def test_bad_config_values_fail_naming_the_value():
    with pytest.raises(ValueError, match="NetHackNope-v0.*NetHackScore-v0"):
        make_env(EnvConfig(task="NetHackNope-v0"))
    with pytest.raises(ValueError, match="role 'zzz'.*mon"):
        make_env(EnvConfig(character="zzz-hum-neu-mal"))
    with pytest.raises(ValueError, match="max_episode_steps=-5"):
        make_env(EnvConfig(max_episode_steps=-5))
    with pytest.raises(ValueError, match="crop_size"):
        EnvConfig(crop_size=4).validate()


@pytest.mark.parametrize("task", ["NetHackScore-v0", "NetHackStaircase-v0", "NetHackChallenge-v0"])
def test_factory_makes_registered_tasks(task):
    env = make_env(EnvConfig(task=task, max_episode_steps=10))
    seed_env(env, 1, 2)
    obs, _ = env.reset()
    assert set(obs) == {"glyphs", "blstats", "message", "tty_chars"}
    env.close()


def test_real_seeding_reproduces_a_game():
    cfg = EnvConfig()
    runs = []
    for _ in range(2):
        env = make_env(cfg).unwrapped
        seed_env(env, 123, 456)
        obs, _ = env.reset()
        frames = [obs["glyphs"].copy()]
        for a in [1, 2, 3, 4, 1, 1, 2]:
            obs, *_ = env.step(a)
            frames.append(obs["glyphs"].copy())
        runs.append(np.stack(frames))
        env.close()
    assert np.array_equal(runs[0], runs[1])


def test_train_seeds_never_collide_with_eval_seeds():
    evals = {eval_seeds(100000, i)[0] for i in range(200)}
    for i in range(8):
        for k in range(50):
            c, d = train_seeds(1, i, k)
            assert c >= 2**32 and d >= 2**32 and c not in evals


def test_accounting_on_a_death():
    """A seeded random game that dies at step 209: score, length, depth from the running game."""
    cfg = EnvConfig(max_episode_steps=300)
    rng = np.random.default_rng(5)
    acts = rng.integers(0, 23, (260, 8))
    with VectorEnv(cfg, 8, 0, SeedPlan("train", 11)) as v:
        rec = None
        for t in range(260):
            v.step(acts[t])
            for e in v.finished():
                if e.env_index == 5 and rec is None:
                    rec = e
    assert rec is not None and rec.died, rec
    score, depth, n, done = _play(cfg, rec.seed_core, rec.seed_disp, acts[:, 5])
    assert done and n == rec.length == 209
    assert (rec.score, rec.depth) == (score, depth)


def test_accounting_on_truncation():
    cfg = EnvConfig(max_episode_steps=50)
    rng = np.random.default_rng(1)
    acts = rng.integers(0, 23, (50, 3))
    with VectorEnv(cfg, 3, 0, SeedPlan("train", 4)) as v:
        for t in range(50):
            v.step(acts[t])
            recs = v.finished()
        assert v.buf.truncated.all() and not v.buf.terminated.any()
    assert len(recs) == 3
    for e in recs:
        assert not e.died and e.length == 50
        score, depth, n, done = _play(cfg, e.seed_core, e.seed_disp, acts[:, e.env_index])
        assert (e.score, e.depth, n) == (score, depth, 50)
        assert not done


def _trajectory(workers: int, steps: int = 120):
    cfg = EnvConfig(max_episode_steps=40)
    rng = np.random.default_rng(0)
    out = []
    with VectorEnv(cfg, 4, workers, SeedPlan("train", 9)) as v:
        for _ in range(steps):
            v.step(rng.integers(0, v.n_actions, 4))
            out.append(
                (
                    v.buf.state.copy(),
                    v.buf.crop.copy(),
                    v.buf.atoms.copy(),
                    v.buf.reward.copy(),
                    [e.to_dict() for e in v.finished()],
                )
            )
    return out


def test_vector_env_same_seed_same_trajectory_whatever_the_workers():
    a, b, c = _trajectory(0), _trajectory(1), _trajectory(2)
    for x, y, z in zip(a, b, c, strict=True):
        for i in range(4):
            assert np.array_equal(x[i], y[i]) and np.array_equal(x[i], z[i])
        assert x[4] == y[4] == z[4]
    assert sum(len(x[4]) for x in a) == 12  # 4 envs x 3 episodes of 40 steps


@pytest.mark.parametrize("shaping", [False, True])
def test_vector_env_replay_restores_games_exactly(shaping):
    cfg = EnvConfig(max_episode_steps=30)
    if shaping:
        cfg = EnvConfig(max_episode_steps=30, explore_bonus=0.01, stairs_bonus=0.05, hint_bonus=0.1)
    rng = np.random.default_rng(3)
    acts = rng.integers(0, 23, (70, 3))
    with VectorEnv(cfg, 3, 1, SeedPlan("train", 2)) as v:
        for t in range(40):
            v.step(acts[t])
        st = v.get_state()
        ref = []
        for t in range(40, 70):
            v.step(acts[t])
            ref.append(
                (v.buf.state.copy(), [e.to_dict() for e in v.finished()], v.buf.reward.copy())
            )
    with VectorEnv(cfg, 3, 0, SeedPlan("train", 2)) as w:
        w.set_state(st)
        for k, t in enumerate(range(40, 70)):
            w.step(acts[t])
            assert np.array_equal(ref[k][0], w.buf.state)
            assert ref[k][1] == [e.to_dict() for e in w.finished()]
            assert np.array_equal(ref[k][2], w.buf.reward)


def test_truncated_episode_keeps_its_last_features():
    cfg = EnvConfig(max_episode_steps=5)
    with VectorEnv(cfg, 2, 0, SeedPlan("train", 1)) as v:
        prev = v.buf.state.copy()
        for _ in range(5):
            prev = v.buf.state.copy()
            v.step(np.array([19, 19]))  # wait
        assert v.buf.truncated.all()
        # waiting does not move the hero: the last observation looks like the one before
        assert np.allclose(v.buf.final_state[:, 12:14], prev[:, 12:14])


def test_shaping_rewards_exploration_and_is_counted_in_episode_reward():
    cfg = EnvConfig(max_episode_steps=30)
    shaped = EnvConfig(max_episode_steps=30, explore_bonus=0.5)
    rng = np.random.default_rng(2)
    acts = rng.integers(1, 9, (30, 2))  # moves only
    out = []
    for c in (cfg, shaped):
        with VectorEnv(c, 2, 0, SeedPlan("train", 6)) as v:
            for t in range(30):
                v.step(acts[t])
            out.append(v.finished())
    for plain, more in zip(out[0], out[1], strict=True):
        assert plain.score == more.score  # shaping never changes the score
        assert more.reward > plain.reward  # moving around stands on new cells


@pytest.mark.parametrize("shaped", [False, True])
def test_direct_stepping_gives_the_gym_trajectories(shaped, monkeypatch):
    """EnvGroup steps NetHackScore below NLE's gymnasium wrapper (envs/stepping.py): the features,
    rewards, end flags, last features and episode records are those of the gym path, bit for bit."""
    from nethack_moe.envs import group

    extra: dict[str, Any] = dict(
        explore_bonus=0.01, stairs_bonus=0.05, hint_bonus=0.1, descend_bonus=1.0
    )
    cfg = EnvConfig(max_episode_steps=250, **(extra if shaped else {}))
    rng = np.random.default_rng(5)
    acts = rng.integers(0, 23, (260, 8))
    runs = []
    for direct in (True, False):
        monkeypatch.setattr(group.EnvGroup, "direct_step", direct)
        out: list[list[Any]] = []
        with VectorEnv(cfg, 8, 0, SeedPlan("train", 11)) as v:
            for t in range(260):
                v.step(acts[t])
                b = v.buf
                out.append(
                    [b.state.tobytes(), b.crop.tobytes(), b.atoms.tobytes(), b.reward.tobytes(),
                     b.terminated.tobytes(), b.truncated.tobytes(), b.final_state.tobytes(),
                     [e.to_dict() for e in v.finished()]]
                )  # fmt: skip
        runs.append(out)
    assert runs[0] == runs[1]
    eps = [e for step in runs[0] for e in step[-1]]
    assert any(e["died"] for e in eps) and any(not e["died"] for e in eps)  # deaths and the cap


def test_an_interrupted_start_leaves_no_worker_behind(monkeypatch):
    """Ctrl-C while the second worker starts: the first is stopped before the error propagates.
    Workers ignore SIGTERM, so a survivor would hang multiprocessing's exit handler (seen as a
    trainer that never exits after a Ctrl-C during start-up)."""
    started: list[Any] = []
    real = VectorEnv._start_worker

    def start(self: VectorEnv, k: int, restart: bool) -> None:
        if k == 1:
            raise KeyboardInterrupt
        real(self, k, restart)
        started.append(self._procs[k])

    monkeypatch.setattr(VectorEnv, "_start_worker", start)
    with pytest.raises(KeyboardInterrupt) as e:  # its traceback keeps the object alive, as the
        VectorEnv(EnvConfig(), 4, 2, SeedPlan("train", 3))  # trainer's reference cycles do
    assert e.traceback and len(started) == 1
    assert not started[0].is_alive(), "worker 0 outlived the interrupted start"
