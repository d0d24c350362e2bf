"""The learner process (``ppo.learner=process``): the same records as the learner thread, exact
resume in both directions between the two, a dead learner that ends the run with one line and
a usable checkpoint, the settings it refuses, and the thread it falls back to on a GPU."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch
from run_records import comparable_records as _records

from nethack_moe.config.train import make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.ppo import trainer as trainer_mod
from nethack_moe.ppo.distributed import DistContext
from nethack_moe.ppo.learner import ACTING_NICE, LearnerError, ProcessLearner
from nethack_moe.ppo.trainer import Trainer, TrainingInterrupted
from nethack_moe.ppo.update import UpdateStats
from nethack_moe.runs.checkpoint import load_checkpoint


def _cfg(tmp: Path, name: str, *extra: str):
    return make_config("smoke", [f"run.out_dir={tmp}", f"run.name={name}", "run.num_workers=1",
                                 "run.device=cpu", "run.progress=false", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def thread_run(tmp_path_factory) -> Path:
    """The smoke preset as shipped: overlap with the learner thread."""
    tmp = tmp_path_factory.mktemp("learner")
    Trainer(_cfg(tmp, "thread", "ppo.learner=thread")).run()
    return tmp / "thread"


def test_process_learner_gives_the_thread_learners_records(thread_run, tmp_path):
    Trainer(_cfg(tmp_path, "proc", "ppo.learner=process")).run()
    recs = _records(tmp_path / "proc")
    assert len([r for r in recs if r["type"] == "update"]) >= 5
    assert recs == _records(thread_run)
    ck = load_checkpoint(tmp_path / "proc" / "checkpoints" / "final.pt")
    ref = load_checkpoint(thread_run / "checkpoints" / "final.pt")
    for k, v in ref["model"].items():  # the learner's parameters reached the checkpoint
        assert torch.equal(ck["model"][k], v), k
    assert ck["optimizer"]["state"][0]["step"] == ref["optimizer"]["state"][0]["step"]


@pytest.mark.parametrize(("first", "then"), [("process", "thread"), ("thread", "process")])
def test_an_interrupted_run_resumes_exactly_with_either_learner(thread_run, tmp_path, first, then):
    """Stopped after update 5 (as by SIGINT) with one learner, resumed with the other: the
    checkpoint holds the learner's optimizer and generator, and the rollout not yet learned."""
    with pytest.raises(TrainingInterrupted):
        Trainer(_cfg(tmp_path, "cut", f"ppo.learner={first}"), stop_after_updates=5).run()
    ck = load_checkpoint(sorted((tmp_path / "cut" / "checkpoints").glob("ep_*.pt"))[-1])
    assert ck["counters"]["updates"] == 5 and ck["pending"] is not None
    Trainer(_cfg(tmp_path, "cut", f"ppo.learner={then}"), resume=tmp_path / "cut").run()
    assert _records(tmp_path / "cut") == _records(thread_run)


class _KillLearner(Trainer):
    """Kills the learner process (SIGKILL) after update 3, as the OOM killer would; notes the
    acting thread's niceness."""

    nice: int | None = None

    def after_update(self, stats: UpdateStats) -> None:
        super().after_update(stats)
        self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        if self.C.updates == 3:
            assert isinstance(self.learner, ProcessLearner)
            os.kill(self.learner.proc.pid, signal.SIGKILL)


def test_a_dead_learner_ends_the_run_in_one_line_and_the_last_checkpoint_resumes(
    thread_run, tmp_path
):
    cfg = _cfg(tmp_path, "dead", "ppo.learner=process", "run.checkpoint_every=2")
    trainer = _KillLearner(cfg)
    with pytest.raises(LearnerError) as e:
        trainer.run()
    assert trainer.nice is not None and trainer.nice >= ACTING_NICE, "the acting thread yields"
    msg = str(e.value)
    assert "\n" not in msg
    assert "learner process" in msg and "died" in msg and "exit code -9" in msg
    assert f"--resume {tmp_path / 'dead'}" in msg and "last checkpoint" in msg
    recs = [json.loads(x) for x in (tmp_path / "dead" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in recs if r.get("kind") == "learner_failure"]
    Trainer(cfg, resume=tmp_path / "dead").run()
    assert _records(tmp_path / "dead") == _records(thread_run)


def test_learner_settings_are_checked_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="ppo.learner='gpu'; allowed: thread, process"):
        _cfg(tmp_path, "x", "ppo.learner=gpu").validate()
    with pytest.raises(ConfigError, match="needs ppo.overlap=true"):
        _cfg(tmp_path, "x", "ppo.learner=process", "ppo.overlap=false").validate()
    monkeypatch.setattr(trainer_mod, "resolve_device", lambda *a: torch.device("cuda"))
    monkeypatch.setattr(trainer_mod, "init_distributed", lambda dev, t: DistContext(device=dev))
    t = Trainer(_cfg(tmp_path, "x", "ppo.learner=process"))
    assert t.learner_kind == "thread", "on a GPU the update runs in a thread (same results)"


def test_ctrl_c_during_start_up_stops_the_workers_and_the_learner(tmp_path, monkeypatch):
    """A KeyboardInterrupt late in start-up (env workers and learner process running): both are
    stopped before it propagates, so the process can exit (a worker ignores SIGTERM)."""

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Collector, "__init__", interrupted)
    t = Trainer(_cfg(tmp_path, "x", "ppo.learner=process"))
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert isinstance(t.learner, ProcessLearner) and not t.learner.proc.is_alive()
    assert t.venv._procs and not any(p.is_alive() for p in t.venv._procs)
