"""RolloutStorage: rows written per env group, the flat view, minibatches, checkpoint arrays."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from nethack_moe.features import FeatureSpec
from nethack_moe.models.acting import Obs
from nethack_moe.ppo.storage import RolloutStorage

T, N, E = 3, 4, 2


def _storage() -> RolloutStorage:
    return RolloutStorage(T, N, FeatureSpec(), E, torch.device("cpu"))


def _fill(st: RolloutStorage) -> None:
    """Row ``(t, i)`` holds values derived from its flat index ``k = t * N + i``."""
    for t in range(T):
        for lo, hi in ((0, 2), (2, 4)):
            k = torch.arange(t * N + lo, t * N + hi)
            obs = Obs(
                k[:, None].float().expand(-1, st.state.shape[2]),
                (k[:, None, None] % 7).to(torch.int16).expand(-1, *st.crop.shape[2:]),
                (k[:, None] % 2).bool().expand(-1, st.atoms.shape[2]),
            )
            out = SimpleNamespace(
                value=k.float() / 10, alpha=torch.stack([k / 100, 1 - k / 100], 1)
            )
            res: Any = SimpleNamespace(action=k, log_prob=-k.float(), out=out)
            st.store_act(t, lo, hi, obs, res)
            st.store_step(t, lo, hi, k.float() * 2, (k % 3 == 0).float())
            st.store_teacher(t, lo, hi, k % 5 - 1, k % 4)  # -1 (no advice) on every 5th row
    st.advantages = torch.arange(T * N, dtype=torch.float32).view(T, N) + 0.5
    st.returns = torch.arange(T * N, dtype=torch.float32).view(T, N) * 3


def test_group_rows_land_at_their_env_offsets():
    st = _storage()
    k = torch.tensor([6, 7])
    obs = Obs(torch.ones(2, st.state.shape[2]), torch.ones(2, *st.crop.shape[2:], dtype=torch.int16),
              torch.ones(2, st.atoms.shape[2], dtype=torch.bool))  # fmt: skip
    out = SimpleNamespace(value=torch.tensor([1.5, 2.5]), alpha=torch.tensor([[0.25, 0.75]] * 2))
    res: Any = SimpleNamespace(action=k, log_prob=torch.tensor([-1.0, -2.0]), out=out)
    st.store_act(1, 2, 4, obs, res)
    st.store_step(1, 2, 4, torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0]))
    assert st.actions.tolist() == [[0, 0, 0, 0], [0, 0, 6, 7], [0, 0, 0, 0]]
    assert st.logp[1].tolist() == [0.0, 0.0, -1.0, -2.0]
    assert st.values[1].tolist() == [0.0, 0.0, 1.5, 2.5]
    assert st.alpha[1, 2:].tolist() == [[0.25, 0.75]] * 2 and st.alpha[1, :2].abs().sum() == 0
    assert st.rewards[1].tolist() == [0.0, 0.0, 3.0, 4.0] and st.dones[1].tolist() == [0, 0, 0, 1]
    assert st.state[1, 2:].min() == 1 and st.state[1, :2].abs().sum() == 0
    assert st.state[0].abs().sum() == 0 and st.state[2].abs().sum() == 0
    assert st.crop[1, 2:].min() == 1 and st.atoms[1, 2:].all() and not st.atoms[1, :2].any()


def test_flat_rows_are_time_major():
    st = _storage()
    _fill(st)
    f = st.flat()
    k = torch.arange(T * N)
    assert f.actions.tolist() == k.tolist()
    assert f.old_logp.tolist() == (-k.float()).tolist()
    assert f.old_values == pytest.approx((k.float() / 10).tolist())
    assert f.advantages.tolist() == (k.float() + 0.5).tolist()
    assert f.returns.tolist() == (k.float() * 3).tolist()
    assert f.obs.state[:, 0].tolist() == k.float().tolist()
    assert f.obs.crop[:, 0, 0].tolist() == (k % 7).tolist()
    assert f.obs.atoms[:, 0].tolist() == (k % 2).bool().tolist()
    assert f.teacher_actions.tolist() == (k % 5 - 1).tolist()


@pytest.mark.parametrize("n", [1, 2, 4])
def test_minibatches_partition_a_seeded_permutation(n):
    st = _storage()
    _fill(st)
    mbs = list(st.minibatches(n, torch.Generator().manual_seed(5)))
    perm = torch.randperm(T * N, generator=torch.Generator().manual_seed(5))
    size = T * N // n
    assert len(mbs) == n
    for j, mb in enumerate(mbs):
        idx = perm[j * size : (j + 1) * size]
        assert mb.actions.tolist() == idx.tolist()  # row k holds action k
        assert mb.old_logp.tolist() == (-idx.float()).tolist()
        assert mb.old_values == pytest.approx((idx.float() / 10).tolist())
        assert mb.advantages.tolist() == (idx.float() + 0.5).tolist()
        assert mb.returns.tolist() == (idx.float() * 3).tolist()
        assert mb.obs.state[:, 0].tolist() == idx.float().tolist()
        assert mb.teacher_actions.tolist() == (idx % 5 - 1).tolist()
        assert mb.obs.crop.shape[0] == mb.obs.atoms.shape[0] == size
    assert sorted(a for mb in mbs for a in mb.actions.tolist()) == list(range(T * N))


def test_teacher_agreement_overall_and_per_branch():
    st = _storage()
    _fill(st)  # action k, teacher k % 5 - 1 (-1: none), branch k % 4
    k = torch.arange(T * N)
    valid = k % 5 != 0
    same = valid & (k == k % 5 - 1)
    got = st.teacher_agreement()
    assert got["teacher/agree"] == pytest.approx(float(same.sum() / valid.sum()))
    for b, name in enumerate(("prompt", "fight", "descend", "to_stairs")):
        rows = valid & (k % 4 == b)
        assert got[f"teacher/share/{name}"] == pytest.approx(float(rows.sum() / valid.sum()))
        assert got[f"teacher/agree/{name}"] == pytest.approx(
            float((same & rows).sum() / rows.sum())
        )
    st.teacher_actions.fill_(-1)
    assert st.teacher_agreement() == {}


def test_arrays_round_trip_as_copies():
    st = _storage()
    _fill(st)
    arr = st.arrays()
    assert set(arr) == set(RolloutStorage.FIELDS) and len(RolloutStorage.FIELDS) == 14
    for name in RolloutStorage.FIELDS:
        assert torch.equal(arr[name], getattr(st, name)), name
    arr["rewards"][0, 0] = 99.0  # a copy: the storage is not touched
    assert st.rewards[0, 0] == 0.0
    other = _storage()
    other.load_arrays(st.arrays())
    for name in RolloutStorage.FIELDS:
        assert torch.equal(getattr(other, name), getattr(st, name)), name
    # a checkpoint written before the teacher fields existed: no advice anywhere
    old = {k: v for k, v in st.arrays().items() if k not in RolloutStorage.OPTIONAL_FIELDS}
    other.load_arrays(old)
    assert (other.teacher_actions == -1).all() and (other.teacher_branches == -1).all()
    assert torch.equal(other.rewards, st.rewards)


def test_explained_variance_against_numpy():
    st = _storage()
    assert st.explained_variance() is None  # constant (zero) returns
    rng = np.random.default_rng(0)
    r = rng.normal(size=(T, N))
    v = r + rng.normal(scale=0.5, size=(T, N))
    st.returns = torch.tensor(r, dtype=torch.float32)
    st.values = torch.tensor(v, dtype=torch.float32)
    want = 1 - np.var(r - v) / np.var(r)
    assert st.explained_variance() == pytest.approx(want, rel=1e-5)


def test_compute_returns_writes_gae_per_env():
    st = _storage()
    st.rewards[:] = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2.0]])
    st.dones[2] = 1.0
    st.compute_returns(torch.full((N,), 5.0), gamma=0.5, lam=1.0)
    # values 0: env 0 gets 1 at t=0, discounted back nothing after; env 3 gets 2 at t=2
    assert st.advantages[:, 0].tolist() == [1.0, 0.0, 0.0]
    assert st.advantages[:, 3].tolist() == [0.5, 1.0, 2.0]
    assert torch.equal(st.returns, st.advantages + st.values)


def test_array_dtypes():
    """Crop ids are int16, atoms bool, actions int64 (they index the logits), the rest float32."""
    st = _storage()
    assert st.crop.dtype == torch.int16 and st.atoms.dtype == torch.bool
    assert st.actions.dtype == torch.long
    for name in ("state", "logp", "values", "alpha", "rewards", "dones", "advantages", "returns"):
        assert getattr(st, name).dtype == torch.float32, name
