"""Fault 1: ``kill -9`` of the trainer mid-run (and mid-checkpoint-write), then ``--resume``.

The trainer is a real ``nethack-moe train`` subprocess, killed with SIGKILL once a checkpoint exists
and more records were logged after it. The debris of a kill during a checkpoint write is then added
by hand (an atomic write's half-written temp file, a truncated and an empty ``ep_*.pt`` as a
non-atomic copy would leave, a torn last line in metrics.jsonl) together with a malicious pickle
named like the newest checkpoint. ``--resume RUN_DIR`` must pick the last *complete* checkpoint,
repair metrics.jsonl and finish with exactly the episodes of an uninterrupted run.
"""

from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path

from rel_helpers import Run, episodes, events, records, records_so_far, train_args, wait_for

from nethack_moe.runs.checkpoint import load_checkpoint

KEYS = ("episode", "score", "length", "seed_core", "seed_disp", "env_index", "phase")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _killed_after_a_checkpoint(run_dir: Path, run: Run) -> None:
    def ready() -> bool:
        recs = records_so_far(run_dir)
        ck = [
            i for i, r in enumerate(recs) if r["type"] == "checkpoint" and r["kind"] == "periodic"
        ]
        return bool(ck) and any(r["type"] == "update" for r in recs[ck[0] + 1 :])

    wait_for(ready, 180, "a periodic checkpoint followed by another update", run)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=30) == -signal.SIGKILL


def test_kill9_mid_run_then_resume_continues_from_last_complete_checkpoint(tmp_path, finished_run):
    out = tmp_path / "out"
    run_dir = out / "smoke"
    ck = run_dir / "checkpoints"
    args = train_args(out, "curriculum.total_episodes=24")
    _killed_after_a_checkpoint(run_dir, Run(args, tmp_path / "first"))

    periodic = sorted(ck.glob("ep_*.pt"))
    assert periodic, "a checkpoint existed when the trainer was killed"
    last = periodic[-1]
    last_ep = load_checkpoint(last)["counters"]["episodes"]
    ups_at_kill = [r["update"] for r in records_so_far(run_dir) if r["type"] == "update"]
    assert max(ups_at_kill) > load_checkpoint(last)["counters"]["updates"]  # logged past it
    assert not (ck / "final.pt").exists()

    # --- debris of a kill in the middle of the next checkpoint write, and a hostile file
    data = last.read_bytes()
    (ck / f".ep_{last_ep + 4:06d}.pt.k1ll3d.tmp").write_bytes(data[: len(data) // 2])
    (ck / f"ep_{last_ep + 4:06d}.pt").write_bytes(data[: len(data) // 2])  # truncated
    (ck / f"ep_{last_ep + 1:06d}.pt").write_bytes(b"")  # empty
    marker = tmp_path / "PWNED"
    (ck / "ep_999999.pt").write_bytes(pickle.dumps({"format": "x", "p": _Evil(marker)}))
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"type":"episode","episode":')  # torn last line

    run = Run(args + ["--resume", str(run_dir)], tmp_path / "resume")
    rc = run.wait(timeout=240)
    assert rc == 0, run.stderr
    assert not marker.exists(), "a pickle in the run directory was executed"
    for bad in (f"ep_{last_ep + 4:06d}.pt", f"ep_{last_ep + 1:06d}.pt", "ep_999999.pt"):
        assert f"skipping unusable checkpoint {ck / bad}" in run.stderr, bad

    recs = records(run_dir)  # every line is complete JSON: the torn line was dropped
    assert len([r for r in recs if r["type"] == "run_start"]) == 1
    (resumed,) = events(recs, "resumed")
    assert resumed["from"] == str(last) and resumed["episode"] == last_ep
    eps = episodes(recs)
    assert eps == list(range(1, len(eps) + 1)), "episodes lost or counted twice"
    ups = [r["update"] for r in recs if r["type"] == "update"]
    assert ups == list(range(1, len(ups) + 1)), "updates logged after the checkpoint kept twice"
    assert len(eps) >= 24
    assert load_checkpoint(ck / "final.pt")["counters"]["episodes"] == len(eps)

    # the work after the checkpoint was played again identically: the result equals the uninterrupted run's
    ref = [r for r in records(finished_run) if r["type"] == "episode"]
    got = [r for r in recs if r["type"] == "episode"]
    assert [{k: r[k] for k in KEYS} for r in got] == [{k: r[k] for k in KEYS} for r in ref]
