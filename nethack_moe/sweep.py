"""``nethack-moe sweep SPEC.yaml``: many training runs (rows x seeds), piece by piece.

A spec names a base config, rows (a name, an optional config file of their own and ``--set``
overrides), training seeds and what to do after training. The sweep runs each (row, seed) in
turn through the ``nethack-moe`` CLI, one stage after another, and skips what is finished:

* ``train`` -- done when ``WORK/ROW_sSEED/checkpoints/final.pt`` exists; a run directory with a
  checkpoint but no ``final.pt`` is continued with ``train --resume`` (a kill loses at most one
  checkpoint interval); a run directory holding another experiment is refused, never replaced;
* ``evaluate`` -- E200, sampled and greedy, to ``OUT/ROW_sSEED/eval_E200.json``;
* ``analyze`` -- the specialization figures, to ``OUT/ROW_sSEED/analysis.json``;
* then the run's small outputs (``config.yaml``, ``metrics.jsonl.gz``) are copied to
  ``OUT/ROW_sSEED/`` and ``status.json`` says ``done``.

A stage that fails is recorded in ``status.json`` (stage, exit code, the log's last line) and the
sweep goes on with the next run. The table over all finished runs is written at the end
(:mod:`nethack_moe.analysis.ablation_table`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nethack_moe.config.train import TrainConfig, config_from_dict, make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.evaluation.players import BASELINES
from nethack_moe.runs.checkpoint import config_leaves, plain_value
from nethack_moe.runs.resume import RESUME_SETTABLE_KEYS
from nethack_moe.runs.rundir import RunDir

#: Stages that may follow training, in the order they run.
AFTER_STAGES: tuple[str, ...] = ("evaluate", "analyze")
#: Keys of a spec file, and of one row.
SPEC_KEYS = ("name", "base", "seeds", "rows", "out", "work_dir", "after", "baselines", "evaluate",
             "analyze", "slurm")  # fmt: skip
ROW_KEYS = ("name", "config", "set", "note")
EVAL_KEYS = ("episodes", "workers", "num_envs")
ANALYZE_KEYS = ("episodes", "probe_episodes", "workers")
#: Run keys the sweep sets itself (a row may not): where the run goes and its seed.
SWEEP_OWNED = ("run.seed", "run.name", "run.out_dir")
#: Keys that change how a run executes, not what it computes (ignored when adopting a run).
EXECUTION_KEYS = RESUME_SETTABLE_KEYS
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message is one line naming the key."""


@dataclass(frozen=True)
class Row:
    """One row of a sweep: a name, its own base config (or the spec's) and overrides."""

    name: str
    config: str
    sets: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class EvalSettings:
    """How the ``evaluate`` stage runs (E200 by default)."""

    episodes: int = 200
    workers: int = 2
    num_envs: int = 16


@dataclass(frozen=True)
class AnalyzeSettings:
    """How the ``analyze`` stage runs (the CLI's defaults when unset)."""

    episodes: int = 20
    probe_episodes: int | None = None
    workers: int = 2


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked spec (see :func:`load_spec`)."""

    name: str
    rows: tuple[Row, ...]
    seeds: tuple[int, ...]
    out: Path
    """Small, committable outputs: ``OUT/ROW_sSEED/`` per run, ``OUT/table.{json,md}``."""
    work_dir: Path
    """Training run directories (checkpoints): ``WORK/ROW_sSEED/``."""
    after: tuple[str, ...] = AFTER_STAGES
    baselines: tuple[str, ...] = ()
    evaluate: EvalSettings = field(default_factory=EvalSettings)
    analyze: AnalyzeSettings = field(default_factory=AnalyzeSettings)
    slurm: dict[str, Any] = field(default_factory=dict)
    """Parameters for submitit's executor (``--launcher slurm``), e.g. ``timeout_min``."""

    def runs(self) -> list[RunSpec]:
        """Every (row, seed), rows first."""
        return [RunSpec(self, row, seed) for row in self.rows for seed in self.seeds]

    def run_named(self, name: str) -> RunSpec:
        for r in self.runs():
            if r.name == name:
                return r
        raise SpecError(f"no run named {name!r} in sweep {self.name!r}")


@dataclass(frozen=True)
class RunSpec:
    """One (row, seed) of a sweep and where its files go."""

    spec: SweepSpec
    row: Row
    seed: int

    @property
    def name(self) -> str:
        return f"{self.row.name}_s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return self.spec.work_dir / self.name

    @property
    def out_dir(self) -> Path:
        return self.spec.out / self.name

    @property
    def final_checkpoint(self) -> Path:
        return RunDir(self.run_dir).final

    def config_sets(self) -> list[str]:
        """The ``--set`` list of the training run (the row's, then the sweep's own keys)."""
        return [*self.row.sets, f"run.seed={self.seed}", f"run.out_dir={self.spec.work_dir}",
                f"run.name={self.name}"]  # fmt: skip

    def config(self) -> TrainConfig:
        return make_config(self.row.config, self.config_sets())


# ------------------------------------------------------------------ spec
def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec; a bad one raises :class:`SpecError` in one line before anything
    runs (unknown key, unknown or bad row override, duplicate row name, bad seed)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"sweep spec {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError(
            f"sweep spec {str(p)!r} is not valid YAML: {' '.join(str(e).split())}"
        ) from e
    if not isinstance(data, dict):
        raise SpecError(f"sweep spec {str(p)!r} must hold a mapping")
    return parse_spec(data, where=str(p))


def parse_spec(data: dict[str, Any], where: str = "spec") -> SweepSpec:
    """A :class:`SweepSpec` from a plain mapping (see :func:`load_spec`)."""
    _known(data, SPEC_KEYS, where)
    for key in ("name", "base", "seeds", "rows"):
        if key not in data:
            raise SpecError(f"{where}: missing key {key!r}")
    name = _name(data["name"], f"{where}: name")
    base = str(data["base"])
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(_is_seed(s) for s in seeds):
        raise SpecError(f"{where}: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{where}: seeds repeat: {seeds!r}")
    rows = _rows(data["rows"], base, where)
    after = tuple(data.get("after", AFTER_STAGES) or ())
    for stage in after:
        if stage not in AFTER_STAGES:
            raise SpecError(
                f"{where}: after: unknown stage {stage!r}; known: {', '.join(AFTER_STAGES)}"
            )
    baselines = tuple(data.get("baselines") or ())

    for b in baselines:
        if b not in BASELINES:
            raise SpecError(f"{where}: baselines: unknown {b!r}; known: {', '.join(BASELINES)}")
    slurm = data.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise SpecError(f"{where}: slurm must be a mapping of submitit parameters")
    spec = SweepSpec(
        name=name,
        rows=rows,
        seeds=tuple(int(s) for s in seeds),
        out=Path(str(data.get("out", f"sweeps/{name}"))),
        work_dir=Path(str(data.get("work_dir", f"runs/sweeps/{name}"))),
        after=after,
        baselines=baselines,
        evaluate=_settings(EvalSettings, data.get("evaluate"), EVAL_KEYS, f"{where}: evaluate"),
        analyze=_settings(AnalyzeSettings, data.get("analyze"), ANALYZE_KEYS, f"{where}: analyze"),
        slurm=dict(slurm),
    )
    for run in spec.runs()[:: len(spec.seeds)]:  # every row's config builds (one seed suffices)
        try:
            run.config()
        except ConfigError as e:
            raise SpecError(f"{where}: row {run.row.name!r}: {' '.join(str(e).split())}") from e
    return spec


def _rows(raw: Any, base: str, where: str) -> tuple[Row, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{where}: rows must be a non-empty list")
    rows: list[Row] = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            raise SpecError(f"{where}: rows[{i}] must be a mapping with a name")
        _known(r, ROW_KEYS, f"{where}: rows[{i}]")
        if "name" not in r:
            raise SpecError(f"{where}: rows[{i}] has no name")
        name = _name(r["name"], f"{where}: rows[{i}].name")
        if any(x.name == name for x in rows):
            raise SpecError(f"{where}: duplicate row name {name!r}")
        sets = r.get("set") or {}
        if not isinstance(sets, dict):
            raise SpecError(f"{where}: row {name!r}: set must be a mapping of key: value")
        for key in sets:
            if key in SWEEP_OWNED:
                raise SpecError(f"{where}: row {name!r}: {key} is set by the sweep itself")
        pairs = tuple(f"{k}={_yaml_value(v)}" for k, v in sets.items())
        rows.append(Row(name, str(r.get("config") or base), pairs, str(r.get("note") or "")))
    return tuple(rows)


def _settings(cls: type, raw: Any, keys: Sequence[str], where: str) -> Any:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a mapping")
    _known(raw, keys, where)
    for k, v in raw.items():
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise SpecError(f"{where}.{k} must be an integer >= 0, got {v!r}")
    return cls(**raw)


def _known(d: dict[str, Any], keys: Sequence[str], where: str) -> None:
    for k in d:
        if k not in keys:
            raise SpecError(f"{where}: unknown key {k!r}; known: {', '.join(keys)}")


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise SpecError(f"{where} must be a name of letters, digits, '_', '.', '-', got {v!r}")
    return v


def _is_seed(s: Any) -> bool:
    return isinstance(s, int) and not isinstance(s, bool) and s >= 0


def _yaml_value(v: Any) -> str:
    """A value as ``--set`` parses it back (YAML flow style for lists and mappings)."""
    if isinstance(v, str):
        return v
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


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
