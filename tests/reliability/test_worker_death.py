"""Fault 3: an env worker of a real ``nethack-moe train`` dies (SIGSEGV / SIGKILL from outside).

Once: it is restarted with fresh envs, its unfinished episodes are dropped and counted, training
finishes. Again and again (more than ``run.max_worker_restarts`` within a minute): the trainer
stops with a checkpoint and one clear error line (exit 1) instead of looping, and the run resumes.
"""

from __future__ import annotations

import os
import signal

from rel_helpers import (
    Run,
    episodes,
    events,
    records,
    records_so_far,
    train_args,
    wait_for,
    worker_pids,
)

from nethack_moe.runs.checkpoint import load_checkpoint

N_ENVS = 4  # smoke preset: 4 envs on 1 worker


def _first_update(run_dir, run):
    wait_for(
        lambda: any(r["type"] == "update" for r in records_so_far(run_dir)),
        180,
        "the first update",
        run,
    )


def test_dead_worker_is_restarted_and_training_finishes(tmp_path):
    out = tmp_path / "out"
    run_dir = out / "smoke"
    run = Run(train_args(out, "curriculum.total_episodes=40"), tmp_path / "logs")
    try:
        _first_update(run_dir, run)
        (pid,) = wait_for(lambda: worker_pids(run.pid), 30, "the env worker", run)
        os.kill(pid, signal.SIGSEGV)  # as if NetHack segfaulted
        rc = run.proc.wait(timeout=240)
    finally:
        run.cleanup()
    assert rc == 0, run.stderr
    assert "env worker 0 died" in run.stderr

    recs = records(run_dir)
    (ev,) = events(recs, "worker_restart")
    assert ev["count"] == 1 and ev["dropped_total"] == N_ENVS
    eps = episodes(recs)
    assert eps == list(range(1, len(eps) + 1)) and len(eps) >= 40
    c = load_checkpoint(run_dir / "checkpoints" / "final.pt")["counters"]
    assert (c["worker_restarts"], c["dropped_episodes"], c["episodes"]) == (1, N_ENVS, len(eps))


def test_workers_that_keep_dying_stop_the_run_with_a_checkpoint(tmp_path):
    out = tmp_path / "out"
    run_dir = out / "smoke"
    sets = ("curriculum.total_episodes=400", "run.max_worker_restarts=1")
    run = Run(train_args(out, *sets), tmp_path / "logs")
    try:
        _first_update(run_dir, run)
        first = wait_for(lambda: worker_pids(run.pid), 30, "the env worker", run)
        os.kill(first[0], signal.SIGKILL)
        (second,) = wait_for(
            lambda: [p for p in worker_pids(run.pid) if p not in first],
            60,
            "a restarted worker",
            run,
        )
        os.kill(second, signal.SIGKILL)
        rc = run.proc.wait(timeout=120)
    finally:
        run.cleanup()
    assert rc == 1, run.stderr
    (line,) = run.error_lines()
    assert "env workers died 2 times within 60 s; giving up" in line
    assert f"stopped with a checkpoint in {run_dir / 'checkpoints'}" in line
    assert "Traceback" not in run.stderr

    recs = records(run_dir)
    assert sum(ev["count"] for ev in events(recs, "worker_restart")) == 1
    (fail,) = events(recs, "worker_failure")
    assert "giving up" in fail["error"]
    last = [r for r in recs if r["type"] == "checkpoint"][-1]
    ck = load_checkpoint(run_dir / last["path"])
    assert (ck["counters"]["worker_restarts"], ck["counters"]["dropped_episodes"]) == (1, N_ENVS)
    assert ck["counters"]["episodes"] == (episodes(recs) or [0])[-1]

    # the run continues from that checkpoint
    more = max(ck["counters"]["episodes"] + 4, 12)
    res = Run(
        train_args(out, *sets[1:], f"curriculum.total_episodes={more}")
        + ["--resume", str(run_dir)],
        tmp_path / "resume",
    )
    assert res.wait(timeout=240) == 0, res.stderr
    eps = episodes(records(run_dir))
    assert eps == list(range(1, len(eps) + 1)) and len(eps) >= more
