"""Fault 2: SIGINT (Ctrl-C) and SIGTERM (preemption) sent to the whole process group of a real
``nethack-moe train``: the current update is finished, a checkpoint written, one clear line printed,
exit status 130 / 143. The env workers ignore both signals, so no episode is lost to them."""

from __future__ import annotations

import os
import signal

import pytest
from rel_helpers import Run, episodes, events, records, records_so_far, train_args, wait_for

from nethack_moe.runs.checkpoint import load_checkpoint


@pytest.mark.parametrize(
    ("sig", "status", "learner"),
    [(signal.SIGINT, 130, "thread"), (signal.SIGTERM, 143, "thread"),
     (signal.SIGTERM, 143, "process")],
    ids=["SIGINT", "SIGTERM", "SIGTERM-learner-process"],
)  # fmt: skip
def test_signal_to_process_group_checkpoints_and_exits_interrupted(tmp_path, sig, status, learner):
    """The learner process ignores both signals too: the trainer takes its state into the
    checkpoint, then stops it."""
    out = tmp_path / "out"
    run_dir = out / "smoke"
    sets = ("curriculum.total_episodes=400", f"ppo.learner={learner}")
    run = Run(train_args(out, *sets), tmp_path / "logs")
    try:
        wait_for(
            lambda: any(r["type"] == "update" for r in records_so_far(run_dir)),
            180,
            "the first update",
            run,
        )
        os.killpg(run.pid, sig)  # like Ctrl-C in a terminal, or a preemption of the whole job
        rc = run.proc.wait(timeout=90)
    finally:
        run.cleanup()
    assert rc == status, run.stderr
    (line,) = run.error_lines()
    assert f"interrupted by signal {int(sig)}" in line and f"--resume {run_dir}" in line

    recs = records(run_dir)
    (ev,) = events(recs, "interrupted")
    assert ev["signal"] == int(sig)
    assert not events(recs, "worker_restart"), "a worker died from the signal"
    ckpt_rel = [r["path"] for r in recs if r["type"] == "checkpoint"][-1]
    assert f"checkpoint {run_dir / ckpt_rel};" in line
    ck = load_checkpoint(run_dir / ckpt_rel)
    # the update in progress was finished and is in the checkpoint
    last_update = [r for r in recs if r["type"] == "update"][-1]
    assert ck["counters"]["updates"] == last_update["update"]
    assert ck["counters"]["episodes"] == (episodes(recs) or [0])[-1] == ev["episode"]
    assert ck["metrics_offset"] <= (run_dir / "metrics.jsonl").stat().st_size


def test_ctrl_c_during_start_up_exits_130_with_one_line(tmp_path):
    """SIGINT while the envs start (before the training loop's handler): no traceback. Sent to the
    trainer only: a child that Python is just starting (the forkserver) prints its own traceback
    when a group-wide Ctrl-C lands during its start-up, which is CPython's, not the trainer's."""
    out = tmp_path / "out"
    # a long curriculum: under load the smoke run's 12 episodes could end before the signal lands
    # (seen once as exit code 0); the signal must find the trainer still starting or training
    run = Run(train_args(out, "curriculum.total_episodes=100000"), tmp_path / "logs")
    try:
        wait_for(lambda: (out / "smoke" / "config.yaml").exists(), 120, "the start of run()", run)
        os.kill(run.pid, signal.SIGINT)
        rc = run.proc.wait(timeout=60)
    finally:
        run.cleanup()
    # 130, or killed by SIGINT itself after printing the line (about 1 start in 15 hit that, on
    # the code before the learner process too; a shell shows both as 130)
    assert rc in (130, -signal.SIGINT), run.stderr
    assert "Traceback" not in run.stderr
    (line,) = run.error_lines()
    assert "interrupted" in line
