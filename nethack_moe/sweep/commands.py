"""The ``nethack-moe`` command lines a sweep runs: train, evaluate, analyze, the baselines.

Each stage of a run is one CLI call (:func:`train_command`, :func:`evaluate_command`,
:func:`analyze_command`, :func:`baselines_command`), run with the interpreter of this process
(:func:`cli_prefix`); :func:`planned_commands` lists a run's, for ``--dry-run``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nethack_moe.runs.rundir import RunDir
from nethack_moe.sweep.spec import RunSpec, SweepSpec


# ------------------------------------------------------------------ commands of one run
def cli_prefix() -> list[str]:
    """The ``nethack-moe`` command as this interpreter runs it."""
    return [sys.executable, "-m", "nethack_moe"]


def train_command(run: RunSpec, resume: bool) -> list[str]:
    """The training command: fresh (with the row's config and overrides) or ``--resume``."""
    if resume:
        return [*cli_prefix(), "train", "--resume", str(run.run_dir), "--set", "run.progress=false"]
    cmd = [*cli_prefix(), "train", "--config", run.row.config]
    for s in [*run.config_sets(), "run.progress=false"]:
        cmd += ["--set", s]
    return cmd


def evaluate_command(run: RunSpec, out: Path) -> list[str]:
    e = run.spec.evaluate
    return [*cli_prefix(), "evaluate", str(run.final_checkpoint), "--actions", "both",
            "--episodes", str(e.episodes), "--workers", str(e.workers), "--num-envs",
            str(e.num_envs), "--out", str(out)]  # fmt: skip


def analyze_command(run: RunSpec, out_dir: Path) -> list[str]:
    a = run.spec.analyze
    cmd = [*cli_prefix(), "analyze", str(run.final_checkpoint), "--episodes", str(a.episodes),
           "--workers", str(a.workers), "--out-dir", str(out_dir)]  # fmt: skip
    if a.probe_episodes is not None:
        cmd += ["--probe-episodes", str(a.probe_episodes)]
    return cmd


def baselines_command(spec: SweepSpec, out: Path) -> list[str]:
    e = spec.evaluate
    cmd = [*cli_prefix(), "evaluate", "--episodes", str(e.episodes), "--workers", str(e.workers),
           "--num-envs", str(e.num_envs), "--out", str(out)]  # fmt: skip
    for b in spec.baselines:
        cmd += ["--baseline", b]
    return cmd


def planned_commands(run: RunSpec) -> list[list[str]]:
    """What :func:`run_one` would run for ``run`` from scratch (``--dry-run``)."""
    cmds = [train_command(run, resume=False)]
    if "evaluate" in run.spec.after:
        cmds.append(evaluate_command(run, run.out_dir / "eval_E200.json"))
    if "analyze" in run.spec.after:
        cmds.append(analyze_command(run, RunDir(run.run_dir).analysis_dir("final")))
    return cmds
