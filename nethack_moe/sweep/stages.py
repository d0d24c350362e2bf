"""One run of a sweep, stage by stage: train, evaluate, analyze, collect; and where it stands.

:func:`run_one` runs the stages a (row, seed) still lacks (:func:`missing_outputs`) through a
:data:`Runner` (:func:`subprocess_runner`: the ``nethack-moe`` CLI), records each stage's outcome
in the run's ``status.json`` (:class:`RunStatus`) and raises :class:`StageFailed` with the log's
last error line when one fails. A run directory trained outside the sweep is adopted when its
config matches (:func:`config_difference`); the baselines run once per sweep
(:func:`run_baselines`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nethack_moe.config.train import TrainConfig, config_from_dict
from nethack_moe.core.errors import ConfigError
from nethack_moe.runs.checkpoint import config_leaves, plain_value
from nethack_moe.runs.resume import RESUME_SETTABLE_KEYS
from nethack_moe.runs.rundir import RunDir
from nethack_moe.sweep.commands import (
    analyze_command,
    baselines_command,
    evaluate_command,
    train_command,
)
from nethack_moe.sweep.spec import AFTER_STAGES, RunSpec, SweepSpec

#: Keys that change how a run executes, not what it computes (ignored when adopting a run).
EXECUTION_KEYS = RESUME_SETTABLE_KEYS


# ------------------------------------------------------------------ status
@dataclass
class RunStatus:
    """``OUT/ROW_sSEED/status.json``: where a run of a sweep stands."""

    name: str
    state: str  # "done" | "failed" | "running" | "interrupted"
    stage: str = ""
    returncode: int | None = None
    error: str = ""
    log: str = ""
    stage_wall_s: dict[str, float] = field(default_factory=dict)
    note: str = ""
    """Where the results came from when not from this sweep's own stages (adopted runs)."""
    updated: str = ""

    @staticmethod
    def read(path: Path) -> RunStatus | None:
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(RunStatus)}
        return RunStatus(**{k: v for k, v in data.items() if k in known})

    def write(self, path: Path) -> None:
        self.updated = datetime.now(timezone.utc).isoformat(timespec="seconds")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")
        os.replace(tmp, path)


def status_of(run: RunSpec) -> RunStatus | None:
    return RunStatus.read(run.out_dir / "status.json")


class StageFailed(Exception):
    """A stage of one run failed; the run is recorded as failed and the sweep goes on."""

    def __init__(self, stage: str, returncode: int | None, error: str, log: Path | None) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage, self.returncode, self.error, self.log = stage, returncode, error, log


class SweepInterrupted(Exception):
    """SIGINT/SIGTERM: the running stage was stopped (training writes its checkpoint)."""


# ------------------------------------------------------------------ running
Runner = Callable[[list[str], Path], int]


def subprocess_runner(cmd: list[str], log: Path) -> int:
    """Run ``cmd`` with its output appended to ``log``; SIGINT/SIGTERM reach it and end the sweep."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        stop: list[int] = []

        def forward(signum: int, _frame: Any) -> None:
            stop.append(signum)
            proc.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            rc = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    if stop:
        raise SweepInterrupted(f"stopped by signal {stop[0]} (exit {rc})")
    return rc


def run_one(
    run: RunSpec, runner: Runner = subprocess_runner, say: Callable[[str], None] = lambda s: None
) -> RunStatus:
    """Every unfinished stage of ``run``; returns its status (``done`` or ``failed``)."""
    status_path = run.out_dir / "status.json"
    st = RunStatus(run.name, "running")
    old = status_of(run)
    if old is not None:
        st.stage_wall_s, st.note = dict(old.stage_wall_s), old.note
    try:
        for stage, fn in (("train", _stage_train), ("evaluate", _stage_evaluate),
                          ("analyze", _stage_analyze), ("collect", _stage_collect)):  # fmt: skip
            if stage in AFTER_STAGES and stage not in run.spec.after:
                continue
            st.stage = stage
            st.write(status_path)
            t0 = time.monotonic()
            if fn(run, runner, say):  # True: it did work (False: already done)
                st.stage_wall_s[stage] = round(time.monotonic() - t0, 1)
    except StageFailed as e:
        st.state, st.returncode, st.error = "failed", e.returncode, e.error
        st.log = str(e.log) if e.log else ""
        st.write(status_path)
        return st
    except SweepInterrupted:
        st.state = "interrupted"
        st.write(status_path)
        raise
    st.state, st.stage = "done", ""
    st.write(status_path)
    return st


def _check(stage: str, rc: int, log: Path) -> None:
    if rc != 0:
        raise StageFailed(stage, rc, _last_error_line(log), log)


def _last_error_line(log: Path) -> str:
    """The most telling line of a failed command's log: the last error line, else the last one."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in reversed(lines):
        if "error" in ln.lower() or "Traceback" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


#: The output file of each stage that may follow training.
STAGE_OUTPUTS = {"evaluate": "eval_E200.json", "analyze": "analysis.json"}


def missing_outputs(run: RunSpec) -> list[str]:
    """The spec's after-training stages whose output ``run`` lacks (a run finished under a spec
    with fewer stages is not finished under one with more)."""
    return [s for s in run.spec.after if not (run.out_dir / STAGE_OUTPUTS[s]).is_file()]


def _needs_checkpoint(run: RunSpec) -> bool:
    """Whether a later stage still needs the trained checkpoint."""
    return not run.spec.after or bool(missing_outputs(run))


def _stage_train(run: RunSpec, runner: Runner, say: Callable[[str], None]) -> bool:
    if run.final_checkpoint.is_file() or not _needs_checkpoint(run):
        return False
    log = run.spec.work_dir / f"{run.name}.train.log"
    resume = _adopt(run)
    say(f"{run.name}: train{' (resuming)' if resume else ''}")
    if not resume and run.run_dir.exists():
        shutil.rmtree(run.run_dir)  # a start that never wrote a checkpoint: nothing to lose
    _check("train", runner(train_command(run, resume), log), log)
    if not run.final_checkpoint.is_file():
        raise StageFailed("train", 0, f"no {run.final_checkpoint} after training", log)
    return True


def _adopt(run: RunSpec) -> bool:
    """Whether ``run.run_dir`` holds a checkpoint of *this* run's experiment to resume.

    Raises :class:`StageFailed` if it holds another experiment (it is never replaced)."""
    saved = RunDir(run.run_dir).config
    if not saved.is_file():
        return False
    try:
        theirs = config_from_dict(yaml.safe_load(saved.read_text()))
    except (ConfigError, yaml.YAMLError) as e:
        raise StageFailed("train", None, f"{saved} cannot be read: {e}", None) from e
    key = config_difference(theirs, run.config())
    if key:
        raise StageFailed(
            "train",
            None,
            f"{run.run_dir} holds another experiment ({key} differs); move it away",
            None,
        )
    return has_checkpoint(run)


def has_checkpoint(run: RunSpec) -> bool:
    """Whether the run directory holds a checkpoint to resume from (``best.pt`` is not one)."""
    return bool(RunDir(run.run_dir).resumable_checkpoints())


def config_difference(a: TrainConfig, b: TrainConfig) -> str:
    """The first dotted key whose value differs between two configs (execution keys ignored);
    the leaves and the list/tuple equality of :mod:`nethack_moe.runs.checkpoint`."""
    da, db = a.to_dict(), b.to_dict()
    for section in list(da) + [k for k in db if k not in da]:
        for key, x, y in config_leaves(section, da.get(section), db.get(section)):
            if key not in EXECUTION_KEYS and plain_value(x) != plain_value(y):
                return key
    return ""


def _stage_evaluate(run: RunSpec, runner: Runner, say: Callable[[str], None]) -> bool:
    target = run.out_dir / "eval_E200.json"
    if target.is_file():
        return False
    say(f"{run.name}: evaluate (E200, sampled and greedy)")
    run.out_dir.mkdir(parents=True, exist_ok=True)
    partial = run.run_dir / "eval_E200.partial.json"
    log = run.spec.work_dir / f"{run.name}.evaluate.log"
    _check("evaluate", runner(evaluate_command(run, partial), log), log)
    _move_json(partial, target, "evaluate", log)
    return True


def _stage_analyze(run: RunSpec, runner: Runner, say: Callable[[str], None]) -> bool:
    target = run.out_dir / "analysis.json"
    if target.is_file():
        return False
    say(f"{run.name}: analyze")
    out_dir = RunDir(run.run_dir).analysis_dir("final")
    log = run.spec.work_dir / f"{run.name}.analyze.log"
    _check("analyze", runner(analyze_command(run, out_dir), log), log)
    md = out_dir / "analysis.md"
    if md.is_file():
        shutil.copyfile(md, run.out_dir / "analysis.md")
    _move_json(out_dir / "analysis.json", target, "analyze", log, keep_source=True)
    return True


def _stage_collect(run: RunSpec, runner: Runner, say: Callable[[str], None]) -> bool:
    """The run's config and metrics (gzipped) next to its evaluation."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    did = False
    cfg = RunDir(run.run_dir).config
    if cfg.is_file() and not (run.out_dir / cfg.name).is_file():
        shutil.copyfile(cfg, run.out_dir / cfg.name)
        did = True
    metrics = RunDir(run.run_dir).metrics
    gz = run.out_dir / "metrics.jsonl.gz"
    if metrics.is_file() and (not gz.is_file() or gz.stat().st_mtime < metrics.stat().st_mtime):
        tmp = gz.with_suffix(".tmp")
        with open(metrics, "rb") as src, gzip.GzipFile(tmp, "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, gz)
        did = True
    return did


def _move_json(src: Path, dst: Path, stage: str, log: Path, keep_source: bool = False) -> None:
    """Check that ``src`` is a JSON file and put it at ``dst`` atomically."""
    try:
        json.loads(src.read_text())
    except (OSError, ValueError) as e:
        raise StageFailed(stage, 0, f"{src} missing or not JSON: {e}", log) from e
    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    if not keep_source:
        src.unlink()


def run_baselines(
    spec: SweepSpec, runner: Runner = subprocess_runner, say: Callable[[str], None] = lambda s: None
) -> bool:
    """E200 of the spec's baselines on the same seeds, once (``OUT/baselines_E200.json``)."""
    target = spec.out / "baselines_E200.json"
    if not spec.baselines or target.is_file():
        return False
    say(f"baselines: {', '.join(spec.baselines)} (E200)")
    spec.out.mkdir(parents=True, exist_ok=True)
    partial = spec.work_dir / "baselines_E200.partial.json"
    log = spec.work_dir / "baselines.evaluate.log"
    partial.parent.mkdir(parents=True, exist_ok=True)
    rc = runner(baselines_command(spec, partial), log)
    if rc != 0:
        raise StageFailed("baselines", rc, _last_error_line(log), log)
    _move_json(partial, target, "baselines", log)
    return True
