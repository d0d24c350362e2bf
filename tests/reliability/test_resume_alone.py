"""Fault 1, resumed from the run alone: a ``smoke`` run started with ``--config smoke`` and its own
``run.name`` is killed with SIGKILL after its first checkpoint, then continued with
``nethack-moe train --resume RUN`` and nothing else. It must continue in its own directory with its
own config, and finish with exactly the episodes of an uninterrupted run."""

from __future__ import annotations

import yaml
from rel_helpers import Run, episodes, events, records, train_args
from test_kill_resume import KEYS, _killed_after_a_checkpoint

from nethack_moe.runs.checkpoint import load_checkpoint


def test_kill9_then_resume_with_the_run_alone_finishes_like_an_uninterrupted_run(
    tmp_path, finished_run
):
    out = tmp_path / "out"
    run_dir = out / "mine"
    args = train_args(out, "run.name=mine", "curriculum.total_episodes=24")
    _killed_after_a_checkpoint(run_dir, Run(args, tmp_path / "first"))
    assert not (run_dir / "checkpoints" / "final.pt").exists()

    run = Run(["train", "--resume", str(run_dir)], tmp_path / "resume")  # no --config, no --set
    assert run.wait(timeout=240) == 0, run.stderr

    assert sorted(p.name for p in out.iterdir()) == ["mine"], "written outside the run's directory"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["run"]["name"] == "mine" and saved["env"]["max_episode_steps"] == 40  # smoke
    recs = records(run_dir)
    assert len(events(recs, "resumed")) == 1
    eps = episodes(recs)
    assert eps == list(range(1, len(eps) + 1)), "episodes lost or counted twice"
    assert load_checkpoint(run_dir / "checkpoints" / "final.pt")["counters"]["episodes"] == len(eps)

    ref = [r for r in records(finished_run) if r["type"] == "episode"]
    got = [r for r in recs if r["type"] == "episode"]
    assert [{k: r[k] for k in KEYS} for r in got] == [{k: r[k] for k in KEYS} for r in ref]
