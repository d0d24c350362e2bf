"""Fault 7: a crashed or hung episode during evaluation (real envs in a worker process, the real
checkpoint of the finished smoke run). The worker is killed (SIGKILL) or frozen (SIGSTOP, caught by
the step timeout) in the middle of the first episodes; those episodes are reported and played again
once with the same seed, so the statistics hold every seed, each with the result of an undisturbed
evaluation. An episode that fails twice is listed as failed, never silently dropped."""

from __future__ import annotations

import logging
import os
import signal

import pytest

evaluation = pytest.importorskip("nethack_moe.evaluation.runner")
loading = pytest.importorskip("nethack_moe.evaluation.loading")

EPISODES, N_ENVS, SEED0 = 4, 2, 100000


def _faulty_venv(sig: int, at_step: int, passes: str):
    """A VectorEnv that sends ``sig`` to its worker before step ``at_step`` (in the first pass
    only, or in every pass)."""
    made = [0]

    class Faulty(evaluation.VectorEnv):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made[0] += 1
            self._fault = passes == "all" or made[0] == 1
            self._steps = 0

        def step(self, actions):
            self._steps += 1
            if self._fault and self._steps == at_step:
                for pid in self.worker_pids():
                    os.kill(pid, sig)
            super().step(actions)

    return Faulty


@pytest.fixture(scope="module")
def policy(finished_run):
    model, cfg, _ = loading.load_policy(finished_run / "checkpoints" / "final.pt", "cpu")
    return model, cfg


@pytest.fixture(scope="module")
def reference(policy):
    model, cfg = policy
    res = evaluation.rollout(model, cfg, EPISODES, SEED0, N_ENVS, workers=1, progress=False)
    assert not res.retried and not res.failed
    return res.records


def _strip(recs):
    return [{k: v for k, v in r.items() if k != "retried"} for r in recs]


@pytest.mark.parametrize(
    ("sig", "timeout"), [(signal.SIGKILL, 60.0), (signal.SIGSTOP, 4.0)], ids=["crash", "hang"]
)
def test_lost_episode_is_reported_and_retried_once_with_the_same_seed(
    policy, reference, monkeypatch, caplog, sig, timeout
):
    model, cfg = policy
    monkeypatch.setattr(evaluation, "VectorEnv", _faulty_venv(sig, at_step=10, passes="first"))
    with caplog.at_level(logging.WARNING):
        res = evaluation.rollout(
            model, cfg, EPISODES, SEED0, N_ENVS, workers=1, progress=False, step_timeout=timeout
        )
    lost = [SEED0, SEED0 + 1]  # the two envs of the worker were playing the first two seeds
    assert res.retried == lost and not res.failed
    for s in lost:
        assert f"episode on seed {s} lost" in caplog.text
    assert [r["seed"] for r in res.records] == list(range(SEED0, SEED0 + EPISODES))
    assert [r["retried"] for r in res.records] == [True, True] + [False] * (EPISODES - 2)
    assert _strip(res.records) == _strip(reference), "a retried episode differs from its seed's"


def test_episode_failing_twice_is_listed_not_dropped(policy, monkeypatch, caplog):
    model, cfg = policy
    monkeypatch.setattr(evaluation, "VectorEnv", _faulty_venv(signal.SIGKILL, 3, passes="all"))
    with caplog.at_level(logging.WARNING):
        res = evaluation.rollout(model, cfg, EPISODES, SEED0, N_ENVS, workers=1, progress=False)
    got = {r["seed"] for r in res.records}
    failed = {f["seed"] for f in res.failed}
    assert failed, "every pass crashed: some episode must have failed twice"
    assert got | failed == set(range(SEED0, SEED0 + EPISODES)) and not got & failed
    for f in res.failed:
        assert len(f["errors"]) == 2
        assert f"episode on seed {f['seed']} failed twice and is missing" in caplog.text
