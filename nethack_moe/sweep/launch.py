"""A whole sweep: every run in turn on this machine, or a slurm job array.

:func:`run_sweep` runs the baselines once and then each (row, seed) through its stages
(:func:`nethack_moe.sweep.stages.run_one`), skipping finished runs and going on after a failed one
(:class:`SweepResult`); :func:`submit_slurm` submits the unfinished runs as a job array through
``submitit``, each task running :func:`slurm_job`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nethack_moe.sweep.spec import SpecError, SweepSpec, load_spec
from nethack_moe.sweep.stages import (
    Runner,
    RunStatus,
    StageFailed,
    missing_outputs,
    run_baselines,
    run_one,
    status_of,
    subprocess_runner,
)


@dataclass
class SweepResult:
    """What one call of :func:`run_sweep` did."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[RunStatus] = field(default_factory=list)


def run_sweep(
    spec: SweepSpec,
    only: Sequence[str] = (),
    skip_failed: bool = False,
    runner: Runner = subprocess_runner,
    say: Callable[[str], None] = lambda s: None,
) -> SweepResult:
    """Every (row, seed) in turn (or those named in ``only``); finished runs are skipped, failed
    ones retried unless ``skip_failed``. A failing run is recorded and the sweep goes on."""
    runs = [spec.run_named(n) for n in only] if only else spec.runs()
    res = SweepResult()
    try:
        if not only:
            run_baselines(spec, runner, say)
    except StageFailed as e:
        say(f"baselines failed: {e} (log {e.log}); the runs go on")
    for i, run in enumerate(runs, 1):
        st = status_of(run)
        finished = st is not None and st.state == "done" and not missing_outputs(run)
        if finished or (st is not None and skip_failed and st.state == "failed"):
            res.skipped.append(run.name)
            continue
        say(f"[{i}/{len(runs)}] {run.name}")
        st = run_one(run, runner, say)
        if st.state == "done":
            res.done.append(run.name)
        else:
            say(f"{run.name}: FAILED at {st.stage} (exit {st.returncode}): {st.error}")
            res.failed.append(st)
    return res


# ------------------------------------------------------------------ slurm (submitit)
def submit_slurm(spec_path: Path, spec: SweepSpec, executor: Any = None) -> list[Any]:
    """Submit every unfinished run as one job of a job array through submitit.

    ``executor``: a submitit executor (default ``submitit.AutoExecutor`` with the spec's
    ``slurm`` parameters); tests pass ``submitit.LocalExecutor``. Returns the jobs."""
    try:
        import submitit
    except ImportError as e:
        raise SpecError("--launcher slurm needs submitit: pip install 'nethack-moe[slurm]'") from e
    names = [r.name for r in spec.runs() if (st := status_of(r)) is None or st.state != "done"]
    if executor is None:
        executor = submitit.AutoExecutor(folder=str(spec.work_dir / "submitit"))
        executor.update_parameters(name=f"sweep-{spec.name}", **spec.slurm)
    if not names:
        return []
    return list(executor.map_array(slurm_job, [str(spec_path)] * len(names), names))


def slurm_job(spec_path: str, name: str) -> str:
    """One job of the array: the named run of the spec, every unfinished stage."""
    spec = load_spec(spec_path)
    st = run_one(spec.run_named(name))
    if st.state != "done":
        raise RuntimeError(f"{name}: failed at {st.stage} (exit {st.returncode}): {st.error}")
    return st.state
