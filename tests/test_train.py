"""The trainer end to end on the smoke preset: run directory contents and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_records import comparable_records as _records

from nethack_moe.config.train import make_config
from nethack_moe.ppo.trainer import Trainer, TrainingInterrupted
from nethack_moe.runs.checkpoint import load_checkpoint
from nethack_moe.runs.rundir import RunDirExists


def _cfg(tmp: Path, name: str, *extra: str):
    return make_config(
        "smoke",
        [f"run.out_dir={tmp}", f"run.name={name}", "run.num_workers=1", "run.device=cpu", *extra],
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runs")
    summary = Trainer(_cfg(tmp, "full")).run()
    assert summary["episodes"] >= 12
    return tmp


def test_smoke_run_directory_holds_everything(smoke_run):
    run = smoke_run / "full"
    assert (run / "config.yaml").exists()
    assert any((run / "tb").iterdir()), "TensorBoard events"
    ck = run / "checkpoints"
    names = {p.name for p in ck.glob("*.pt")}
    assert {"final.pt", "best.pt", "ep_000004.pt", "ep_000008.pt"} <= names
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    types = {r["type"] for r in recs}
    assert {"run_start", "episode", "update", "checkpoint"} <= types
    eps = [r for r in recs if r["type"] == "episode"]
    assert [r["episode"] for r in eps] == list(range(1, len(eps) + 1))
    assert {r["phase"] for r in eps} == {"warmup", "transition", "finetune"}
    ups = [r for r in recs if r["type"] == "update"]
    for key in ("loss/policy", "loss/value", "approx_kl", "clip_frac", "explained_var", "routing/mi",
                "routing/effective_experts", "temperature", "lr", "phase"):  # fmt: skip
        assert key in ups[0], key
    # the lr and routing in force follow the phase
    for u in ups:
        phase = {
            "warmup": (1e-4, "softmax"),
            "transition": (5e-5, "sparsemax"),
            "finetune": (1e-5, "sparsemax"),
        }
        assert (u["lr"], u["routing"]) == phase[u["phase"]]
    ckpt = load_checkpoint(ck / "final.pt")
    assert ckpt["counters"]["episodes"] == len(eps)


def test_interrupt_and_resume_equals_uninterrupted(smoke_run, tmp_path):
    cfg = _cfg(tmp_path, "cut")
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, stop_after_updates=5).run()
    Trainer(cfg, resume=tmp_path / "cut").run()
    assert _records(tmp_path / "cut") == _records(smoke_run / "full")


def test_existing_run_dir_is_refused_without_resume_or_overwrite(smoke_run):
    cfg = _cfg(smoke_run, "full")
    with pytest.raises(RunDirExists, match="--resume"):
        Trainer(cfg)


def test_resume_a_finished_run_with_a_longer_curriculum(smoke_run, tmp_path):
    cfg = _cfg(tmp_path, "longer", "curriculum.total_episodes=16")
    out = Trainer(cfg, resume=smoke_run / "full").run()
    assert out["episodes"] >= 16
    eps = [r for r in _records(tmp_path / "longer") if "score" in r]
    assert [r["episode"] for r in eps] == list(range(1, len(eps) + 1))


def test_two_seeded_runs_are_identical(smoke_run, tmp_path):
    Trainer(_cfg(tmp_path, "again")).run()
    assert _records(tmp_path / "again") == _records(smoke_run / "full")


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_count_does_not_change_results(smoke_run, tmp_path, workers):
    """Throughput layout (workers, overlap of stepping and inference) leaves results unchanged."""
    cfg = make_config(
        "smoke",
        [f"run.out_dir={tmp_path}", "run.name=w", f"run.num_workers={workers}", "run.device=cpu"],
    )
    Trainer(cfg).run()
    assert _records(tmp_path / "w") == _records(smoke_run / "full")


def test_overlap_mode_is_seeded_and_resumes_exactly(tmp_path):
    """Learning in the background while the next rollout is collected (ppo.overlap, on in the
    s500 preset and so in smoke): two seeded runs are identical, and an interrupted run (its
    checkpoint carries the rollout collected but not yet learned) resumes to the same records.
    The synchronous loop differs, and resumes exactly too."""
    full = _cfg(tmp_path, "ov_full", "ppo.overlap=true")
    Trainer(full).run()
    Trainer(_cfg(tmp_path, "ov_again", "ppo.overlap=true")).run()
    assert _records(tmp_path / "ov_again") == _records(tmp_path / "ov_full")
    cut = _cfg(tmp_path, "ov_cut", "ppo.overlap=true")
    with pytest.raises(TrainingInterrupted):
        Trainer(cut, stop_after_updates=5).run()
    ck = load_checkpoint(sorted((tmp_path / "ov_cut" / "checkpoints").glob("ep_*.pt"))[-1])
    assert ck["pending"] is not None, "the next rollout was collected while update 5 ran"
    Trainer(cut, resume=tmp_path / "ov_cut").run()
    assert _records(tmp_path / "ov_cut") == _records(tmp_path / "ov_full")
    sync = _cfg(tmp_path, "sync", "ppo.overlap=false")
    Trainer(sync).run()
    assert _records(tmp_path / "sync") != _records(tmp_path / "ov_full")
    sync_cut = _cfg(tmp_path, "sync_cut", "ppo.overlap=false")
    with pytest.raises(TrainingInterrupted):
        Trainer(sync_cut, stop_after_updates=5).run()
    Trainer(sync_cut, resume=tmp_path / "sync_cut").run()
    assert _records(tmp_path / "sync_cut") == _records(tmp_path / "sync")
