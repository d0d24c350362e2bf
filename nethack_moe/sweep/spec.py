"""The sweep spec: its file read and checked, and the runs it names.

:func:`load_spec` / :func:`parse_spec` read a spec (a base config, rows with their config files
and ``--set`` overrides, training seeds, what runs after training, baselines, slurm settings)
into a :class:`SweepSpec`, refusing a bad one in one line (:class:`SpecError`) before anything
runs; :meth:`SweepSpec.runs` gives one :class:`RunSpec` per (row, seed), with its run and output
directories.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nethack_moe.config.train import TrainConfig, make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.evaluation.players import BASELINES
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
