"""Fault 4: the learner process of a real ``nethack-moe train`` (``ppo.learner=process``) is killed
from outside (SIGKILL, as by the OOM killer): the trainer stops within a poll interval with one
clear error line (exit 1) that names the last checkpoint and how to resume, and stops its env
workers; the checkpoint loads and the run resumes."""

from __future__ import annotations

import os
import signal

from rel_helpers import Run, events, learner_pids, records, records_so_far, train_args, wait_for

from nethack_moe.runs.checkpoint import load_checkpoint


def test_dead_learner_stops_the_run_in_one_line_and_it_resumes(tmp_path):
    out = tmp_path / "out"
    run_dir = out / "smoke"
    sets = ("curriculum.total_episodes=400", "ppo.learner=process", "run.checkpoint_every=4")
    run = Run(train_args(out, *sets), tmp_path / "logs")
    try:
        wait_for(
            lambda: any(r["type"] == "checkpoint" for r in records_so_far(run_dir)),
            180,
            "the first checkpoint",
            run,
        )
        (pid,) = wait_for(lambda: learner_pids(run.pid), 30, "the learner process", run)
        os.kill(pid, signal.SIGKILL)
        rc = run.proc.wait(timeout=120)
    finally:
        run.cleanup()
    assert rc == 1, run.stderr
    (line,) = run.error_lines()
    assert "learner process" in line and "died" in line and f"--resume {run_dir}" in line
    recs = records(run_dir)
    assert events(recs, "learner_failure")
    ckpt_rel = [r["path"] for r in recs if r["type"] == "checkpoint" and r["kind"] == "periodic"][
        -1
    ]
    assert f"last checkpoint {run_dir / ckpt_rel};" in line and "ranks" not in line
    load_checkpoint(run_dir / ckpt_rel)

    again = Run(["train", "--resume", str(run_dir), "--set", "run.max_env_steps=3000"],
                tmp_path / "logs2")  # fmt: skip
    try:
        rc = again.wait(timeout=240)
    finally:
        again.cleanup()
    assert rc == 0, again.stderr
    assert (run_dir / "checkpoints" / "final.pt").exists()
