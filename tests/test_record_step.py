"""The collector's ``_record_step`` (reward scaling, truncation bootstrap, row offset) and
``RunningMeanStd``, driven with a fake env buffer and a fake critic; expected values by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from nethack_moe.ppo.collector import Collector
from nethack_moe.ppo.trainer import Counters, RolloutContext, RunningMeanStd

GAMMA = 0.9


class FakeCritic:
    """``V(s) = 10 * s[0]``; records the routing it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []

    def __call__(self, state, crop, atoms, routing, temperature):
        self.calls.append((routing, temperature, state.shape[0]))
        return SimpleNamespace(value=10.0 * state[:, 0])


class FakeStorage:
    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, list[float], list[float]]] = []

    def store_step(self, t, lo, hi, reward, done):
        self.rows.append((t, lo, hi, reward.tolist(), done.tolist()))


def _trainer(reward, terminated, truncated, reward_norm: bool) -> Any:
    """A trainer with only what ``_record_step`` reads. Env ``i``'s final observation has
    ``state[0] = i + 1``, so ``V(final_i) = 10 (i + 1)``."""
    n = len(reward)
    final_state = np.zeros((n, 4), np.float32)
    final_state[:, 0] = np.arange(1, n + 1)
    buf = SimpleNamespace(
        reward=np.asarray(reward, np.float32),
        terminated=np.asarray(terminated, bool),
        truncated=np.asarray(truncated, bool),
        final_state=final_state,
        final_crop=np.zeros((n, 3, 3), np.int16),
        final_atoms=np.zeros((n, 2), bool),
    )
    tr: Any = Collector.__new__(Collector)  # no run directory, no env workers
    tr.venv = SimpleNamespace(buf=buf, finished=lambda lo, hi: [])
    tr.cfg = SimpleNamespace(ppo=SimpleNamespace(reward_norm=reward_norm, gamma=GAMMA))
    tr.rnorm = RunningMeanStd(n, GAMMA)
    tr.acting_model = FakeCritic()
    tr.device = torch.device("cpu")
    tr.storages = [FakeStorage()]
    tr.C = Counters()
    return tr


CTX = RolloutContext(phase=None, routing="sparsemax", temperature=0.5, lr=1e-4, slot=0, finished=[])  # type: ignore[arg-type]


def test_only_truncated_envs_of_the_group_are_bootstrapped_at_their_own_rows():
    # six envs, the group is envs 3..5 (lo = 3): env 3 truncated, env 4 died, env 5 runs on.
    # env 0 (another group) is truncated too and must not be touched.
    tr = _trainer(
        reward=[7.0, 0.0, 0.0, 1.0, -2.0, 0.5],
        terminated=[False, False, False, False, True, False],
        truncated=[True, False, False, True, False, False],
        reward_norm=False,
    )
    tr._record_step(4, 3, 6, CTX)
    [(t, lo, hi, r, done)] = tr.storages[0].rows
    assert (t, lo, hi) == (4, 3, 6)
    # env 3: 1 + 0.9 * V(final_3) = 1 + 0.9 * 40; env 4 died: -2 alone; env 5: 0.5
    assert r == pytest.approx([1.0 + GAMMA * 40.0, -2.0, 0.5])
    assert done == [1.0, 1.0, 0.0]
    assert tr.acting_model.calls == [("sparsemax", 0.5, 1)]  # one env, under the rollout's routing
    assert tr.C.env_steps == 3


def test_death_wins_over_truncation_no_bootstrap():
    """An env flagged both terminated and truncated died: no future value."""
    tr = _trainer(
        reward=[1.0, 2.0], terminated=[True, False], truncated=[True, True], reward_norm=False
    )
    tr._record_step(0, 0, 2, CTX)
    [(_, _, _, r, done)] = tr.storages[0].rows
    assert r == pytest.approx([1.0, 2.0 + GAMMA * 20.0])
    assert done == [1.0, 1.0]


def test_no_truncation_no_critic_call():
    tr = _trainer(reward=[1.0, 2.0], terminated=[False, True], truncated=[False, False],
                  reward_norm=False)  # fmt: skip
    tr._record_step(0, 0, 2, CTX)
    assert tr.storages[0].rows[0][3] == pytest.approx([1.0, 2.0])
    assert tr.acting_model.calls == []


def _pooled_var(xs: list[float], c: float = 1e-4) -> float:
    """Variance of the returns pooled with RunningMeanStd's prior (weight ``c``, mean 0, var 1)."""
    m = sum(xs) / (len(xs) + c)
    return (c * (1 + m * m) + sum((x - m) ** 2 for x in xs)) / (len(xs) + c)


def test_reward_is_scaled_before_the_bootstrap_is_added():
    # group envs 2..4 of five; env 2 truncated. First step: the discounted returns equal the
    # rewards (1, -2, 0.5), so sigma = sqrt(pooled variance of those three + 1e-8).
    tr = _trainer(
        reward=[0.0, 0.0, 1.0, -2.0, 0.5],
        terminated=[False] * 5,
        truncated=[False, False, True, False, False],
        reward_norm=True,
    )
    tr._record_step(0, 2, 5, CTX)
    sigma = math.sqrt(_pooled_var([1.0, -2.0, 0.5]) + 1e-8)
    r = tr.storages[0].rows[0][3]
    # scaled, then + gamma V(final_2) = 0.9 * 30 in the critic's (scaled) units
    assert r == pytest.approx([1.0 / sigma + GAMMA * 30.0, -2.0 / sigma, 0.5 / sigma], rel=1e-6)
    # the bootstrap does not enter the return statistics: env 2 ended (reset), the others hold r
    assert tr.rnorm.ret.tolist() == pytest.approx([0.0, 0.0, 0.0, -2.0, 0.5])
    assert tr.rnorm.var == pytest.approx(_pooled_var([1.0, -2.0, 0.5]))


def test_running_mean_std_against_numpy_over_chunks():
    """Chunks of two env groups with episode ends: the running mean and variance equal NumPy's
    over every discounted return seen (pooled with the prior), and each scaled reward is the
    reward over the std after its chunk."""
    rng = np.random.default_rng(0)
    n, g = 4, 0.99
    rms = RunningMeanStd(n, g)
    ret = np.zeros(n)
    seen: list[float] = []
    for step in range(30):
        for lo, hi in ((0, 2), (2, 4)):
            r = rng.normal(size=hi - lo) * (1 + step % 3)
            done = rng.random(hi - lo) < 0.2
            for k in range(hi - lo):  # the discounted return per env, by hand
                ret[lo + k] = g * ret[lo + k] + r[k]
                seen.append(float(ret[lo + k]))
            scaled = rms.scale(r.copy(), done, lo, hi)
            ret[lo:hi][done] = 0.0
            c = 1e-4
            m = np.sum(seen) / (len(seen) + c)
            var = (c * (1 + m * m) + np.sum((np.asarray(seen) - m) ** 2)) / (len(seen) + c)
            assert rms.mean == pytest.approx(m, rel=1e-9, abs=1e-12)
            assert rms.var == pytest.approx(var, rel=1e-9)
            assert rms.count == pytest.approx(len(seen) + c)
            assert scaled == pytest.approx(r / np.sqrt(var + 1e-8), rel=1e-9)
            assert rms.ret == pytest.approx(ret)
    # with thousands of returns the prior no longer shows: plain NumPy figures
    assert rms.var == pytest.approx(np.var(seen), rel=1e-3)
    assert rms.mean == pytest.approx(np.mean(seen), rel=1e-3, abs=1e-4)


def test_running_mean_std_state_round_trip():
    a = RunningMeanStd(3, 0.9)
    a.scale(np.array([1.0, 2.0, 3.0]), np.array([False, True, False]))
    b = RunningMeanStd(3, 0.9)
    b.load(a.state())
    x = np.array([0.5, -1.0, 2.0])
    assert b.scale(x.copy(), np.zeros(3, bool)) == pytest.approx(
        a.scale(x.copy(), np.zeros(3, bool))
    )


def test_recorded_bootstrap_reaches_gae_through_the_real_storage():
    """Three steps of two envs through ``_record_step`` into a real :class:`RolloutStorage`,
    then GAE: env 0 is truncated at step 1 (V(final_0) = 10), env 1 dies at step 2."""
    from nethack_moe.features import FeatureSpec
    from nethack_moe.ppo.storage import RolloutStorage

    g, lam = GAMMA, 0.5
    tr = _trainer(reward=[0.0, 0.0], terminated=[False, False], truncated=[False, False],
                  reward_norm=False)  # fmt: skip
    st = RolloutStorage(3, 2, FeatureSpec(), 2, torch.device("cpu"))
    st.values[:] = torch.tensor([[0.5, 1.0], [1.0, 0.2], [0.2, 0.4]])
    tr.storages = [st]
    buf = tr.venv.buf
    steps = [  # (rewards, terminated, truncated)
        ([1.0, 0.0], [False, False], [False, False]),
        ([0.5, 1.0], [False, False], [True, False]),
        ([0.0, 2.0], [False, True], [False, False]),
    ]
    for t, (r, term, trunc) in enumerate(steps):
        buf.reward[:], buf.terminated[:], buf.truncated[:] = r, term, trunc
        tr._record_step(t, 0, 2, CTX)
    st.compute_returns(torch.tensor([5.0, 7.0]), g, lam)
    # env 0: d2 = 0 + g*5 - 0.2 (running at the end); d1 = 0.5 + g*10 - 1 (truncated: V(final),
    # and the chain is cut); d0 = 1 + g*1 - 0.5
    d2, d1, d0 = g * 5 - 0.2, 0.5 + g * 10 - 1.0, 1.0 + g * 1.0 - 0.5
    env0 = [d0 + g * lam * d1, d1, d2]
    # env 1: d2 = 2 - 0.4 (died: no V(s_T)); d1 = 1 + g*0.4 - 0.2; d0 = 0 + g*0.2 - 1
    e2, e1, e0 = 2.0 - 0.4, 1.0 + g * 0.4 - 0.2, g * 0.2 - 1.0
    a1 = e1 + g * lam * e2
    env1 = [e0 + g * lam * a1, a1, e2]
    assert st.advantages[:, 0].tolist() == pytest.approx(env0, abs=1e-6)
    assert st.advantages[:, 1].tolist() == pytest.approx(env1, abs=1e-6)
    assert st.dones.tolist() == [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
