"""Reading a run directory: ``metrics.jsonl``, the resolved config, phases, evaluation files.

``metrics.jsonl`` holds one JSON object per line with a ``type`` (``run_start``, ``episode``,
``update``, ``checkpoint``, ``event``). A line that is not JSON (a torn write at a crash) is skipped
with a warning; when a torn line was glued to the next record (the run resumed and appended),
the record after the tear is recovered.

After a resume from a checkpoint the file may hold the same episode (update) number twice: the
records logged after the checkpoint and before the crash, then again after the resume.
:func:`load_run` keeps the **last** record of each episode and update number.

:func:`read_metrics` gives the lines as written (dicts); :func:`load_run` gives the records as the
dataclasses of :mod:`nethack_moe.runs.records` (what an older file lacks is ``None``; a line of a
type this version does not know stays in :attr:`RunData.records` alone).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.router_figures import NullChoice, stricter_null
from nethack_moe.metrics.verdict import VerdictFigures, specialization_verdict
from nethack_moe.runs.records import (
    CHECKPOINT,
    EPISODE,
    EVENT,
    RECORD_TYPES,
    RUN_START,
    UPDATE,
    CheckpointLine,
    EpisodeLine,
    EventLine,
    RunStartLine,
    UpdateLine,
)
from nethack_moe.runs.rundir import RunDir

log = logging.getLogger(__name__)

_R = TypeVar("_R")


def read_metrics(
    path: str | Path,
    types: str | Iterable[str] | None = None,
    *,
    bad_lines: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` file, in file order, optionally only those of ``types``.

    Non-JSON lines are skipped with a warning (a torn last line is normal after a crash); their
    1-based line numbers are appended to ``bad_lines`` when given.
    """
    path = Path(path)
    want: set[str] | None
    if types is None:
        want = None
    elif isinstance(types, str):
        want = {types}
    else:
        want = set(types)
    out: list[dict[str, Any]] = []
    with path.open("r", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    n = len(lines)
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        rec = _parse_line(line)
        if rec is None:
            where = "last line" if all(not s.strip() for s in lines[i + 1 :]) else f"line {i + 1}"
            log.warning("%s: skipping torn/non-JSON %s (of %d): %.60r", path, where, n, line)
            if bad_lines is not None:
                bad_lines.append(i + 1)
            continue
        if want is None or rec.get("type") in want:
            out.append(rec)
    return out


def _parse_line(line: str) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        # a torn record followed (on the same line) by a complete one
        j = line.rfind('{"type"')
        if j <= 0:
            return None
        try:
            rec = json.loads(line[j:])
        except ValueError:
            return None
    return rec if isinstance(rec, dict) else None


def split_by_type(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group records by their ``type`` (unknown types are kept under their own name)."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in RECORD_TYPES}
    for r in records:
        out.setdefault(str(r.get("type")), []).append(r)
    return out


def dedupe_last(records: list[_R], key: Callable[[_R], Any]) -> list[_R]:
    """Keep the last record for each value of ``key(record)`` (records where it is ``None`` are
    kept), sorted by it."""
    keyed: dict[Any, _R] = {}
    rest: list[_R] = []
    for r in records:
        k = key(r)
        if k is None:
            rest.append(r)
        else:
            keyed[k] = r
    return [keyed[k] for k in sorted(keyed)] + rest


@dataclass
class PhaseSpan:
    """A curriculum phase as read back from a run (not :class:`~nethack_moe.config.curriculum.Phase`):
    its name and nominal episode range ``(start, end]`` (end may be None)."""

    name: str
    start: int
    end: int | None
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        end = "…" if self.end is None else str(self.end)
        return f"{self.name} ({self.start}–{end})"


@dataclass
class RunData:
    """Everything read from a run directory."""

    run_dir: Path
    config: dict[str, Any] | None
    config_text: str | None
    config_source: str
    records: list[dict[str, Any]]
    """Every line as read, in file order (unknown types included)."""
    episodes: list[EpisodeLine]
    """By episode number, the last record of each (:func:`load_run`); the training episodes
    (sampled actions): greedy ones are in :attr:`greedy_episodes`."""
    updates: list[UpdateLine]
    """By update number, the last record of each."""
    checkpoints: list[CheckpointLine]
    events: list[EventLine]
    run_start: RunStartLine | None
    phases: list[PhaseSpan]
    bad_lines: list[int] = field(default_factory=list)
    duplicate_episodes: int = 0
    duplicate_updates: int = 0
    greedy_episodes: list[EpisodeLine] = field(default_factory=list)
    """Episodes played by argmax during training (``ppo.greedy_envs``), by episode number."""


def load_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None, str]:
    """The resolved config of a run: ``(dict, text, source)``; ``(None, None, "absent")``."""
    import yaml

    for p in RunDir(run_dir).config_files():
        name = p.name
        if p.is_file():
            text = p.read_text(encoding="utf-8")
            try:
                cfg = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                log.warning("%s: cannot parse (%s)", p, exc)
                return None, text, f"{name} (unparseable)"
            return (cfg if isinstance(cfg, dict) else None), text, name
    return None, None, "absent"


def phases_from_config(
    config: dict[str, Any] | None, episodes: list[EpisodeLine] | None = None
) -> list[PhaseSpan]:
    """Phases of ``curriculum.phases`` in config order, else inferred from episode records.

    A configured phase ends where the next starts (the last at ``curriculum.total_episodes``).
    Inferred phases span the first to the last episode logged with that ``phase``.
    """
    cur = (config or {}).get("curriculum") if isinstance(config, dict) else None
    specs = cur.get("phases") if isinstance(cur, dict) else None
    phases: list[PhaseSpan] = []
    if isinstance(specs, list) and specs:
        total = cur.get("total_episodes") if isinstance(cur, dict) else None
        rows = [s for s in specs if isinstance(s, dict)]
        rows.sort(key=lambda s: int(s.get("start_episode", 0) or 0))
        for i, s in enumerate(rows):
            start = int(s.get("start_episode", 0) or 0)
            if i + 1 < len(rows):
                end: int | None = int(rows[i + 1].get("start_episode", 0) or 0)
            else:
                end = int(total) if isinstance(total, (int, float)) else None
            phases.append(PhaseSpan(str(s.get("name", f"phase{i}")), start, end, dict(s)))
    known = {p.name for p in phases}
    # phases seen in the records but not configured (or no config): first..last episode
    seen: dict[str, list[int]] = {}
    for e in episodes or []:
        name = "?" if e.phase is None else str(e.phase)
        ep = int(e.episode or 0)
        if name in seen:
            seen[name][0] = min(seen[name][0], ep)
            seen[name][1] = max(seen[name][1], ep)
        else:
            seen[name] = [ep, ep]
    extra = [(v[0], n, v[1]) for n, v in seen.items() if n not in known]
    for first, name, last in sorted(extra):
        phases.append(PhaseSpan(name, max(first - 1, 0), last, {}))
    return phases


def load_run(run_dir: str | Path) -> RunData:
    """Read ``metrics.jsonl``, the config and the phases of a run directory."""
    run_dir = Path(run_dir)
    mpath = RunDir(run_dir).metrics
    bad: list[int] = []
    records = read_metrics(mpath, bad_lines=bad) if mpath.is_file() else []
    if not mpath.is_file():
        log.warning("%s: no metrics.jsonl", run_dir)
    by = split_by_type(records)
    config, text, source = load_config(run_dir)
    run_start = RunStartLine.from_json(by[RUN_START][-1]) if by[RUN_START] else None
    if config is None and run_start and isinstance(run_start.config, dict):
        config = run_start.config
        source = "run_start record of metrics.jsonl (config file absent)"
    all_episodes = [EpisodeLine.from_json(r) for r in by[EPISODE]]
    all_updates = [UpdateLine.from_json(r) for r in by[UPDATE]]
    numbered = dedupe_last(all_episodes, lambda e: e.episode)
    episodes = [e for e in numbered if not e.greedy]
    updates = dedupe_last(all_updates, lambda u: u.update)
    return RunData(
        run_dir=run_dir,
        config=config,
        config_text=text,
        config_source=source,
        records=records,
        episodes=episodes,
        updates=updates,
        checkpoints=[CheckpointLine.from_json(r) for r in by[CHECKPOINT]],
        events=[EventLine.from_json(r) for r in by[EVENT]],
        run_start=run_start,
        phases=phases_from_config(config, episodes),
        bad_lines=bad,
        duplicate_episodes=len(all_episodes) - len(numbered),
        duplicate_updates=len(all_updates) - len(updates),
        greedy_episodes=[e for e in numbered if e.greedy],
    )


def load_eval_files(run_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Evaluation JSON files ``run_dir/eval/*.json``, oldest first (by ``created``, then mtime)."""
    out: list[tuple[str, float, Path, dict[str, Any]]] = []
    for p in RunDir(run_dir).eval_files():
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read evaluation file (%s)", p, exc)
            continue
        if not isinstance(data, dict) or not isinstance(data.get(mn.CHECKPOINTS), dict):
            log.warning("%s: not an evaluation file (no 'checkpoints')", p)
            continue
        out.append((str(data.get("created", "")), p.stat().st_mtime, p, data))
    out.sort(key=lambda t: (t[0], t[1]))
    return [(p, data) for _, _, p, data in out]


# ------------------------------------------------------------------------------ evaluation entries
def _float(v: Any) -> float | None:
    """``v`` as a float, ``None`` when missing or not a number."""
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class SpecializationFigures:
    """The specialization figures of an evaluation entry's ``summary`` (PROTOCOL.md, each next to
    its baseline), as the report and ``compare`` read them; ``None`` where the entry lacks one.
    The verdict is built from the summary's figures (:attr:`verdict`); a sentence stored in an old
    file is ignored."""

    scenario_mi: float | None = None
    """I(argmax expert; scenario), nats."""
    scenario_mi_normalized: float | None = None
    shuffled_p95: float | None = None
    """p95 of the scenario information with the expert assignments permuted across states."""
    shifted_p95: float | None = None
    """p95 with the assignments shifted circularly within each episode."""
    p_value: float | None = None
    """Under the permutations."""
    shifted_p_value: float | None = None
    """Under the within-episode shifts."""
    graph_argmax_change: float | None = None
    """Share of states whose argmax expert changes with ``h_graph`` replaced by its mean."""
    state_argmax_change: float | None = None
    """The same with ``h_state`` replaced by its mean."""
    hint_follow_share: float | None = None
    """Share of the steps with a navigation hint on which the hinted move was taken."""
    figures: VerdictFigures | None = field(default=None, compare=False)
    """Everything the verdict reads (``None`` for an entry without specialization figures)."""

    @classmethod
    def from_summary(cls, summary: dict[str, Any] | None) -> SpecializationFigures:
        """The figures of an entry's summary (keys of :mod:`nethack_moe.metrics.names`)."""
        s = summary or {}
        sp = s.get(mn.SPECIALIZATION) or {}
        rel = s.get(mn.RELIANCE) or {}
        hint = s.get(mn.HINT) or {}

        def change(name: str) -> float | None:
            return _float((rel.get(name) or {}).get(mn.ARGMAX_CHANGE))

        has = bool(sp) or bool(rel)
        return cls(
            scenario_mi=_float(sp.get(mn.SCENARIO_MI)),
            scenario_mi_normalized=_float(sp.get(mn.SCENARIO_MI_NORMALIZED)),
            shuffled_p95=_float(sp.get(mn.SCENARIO_MI_SHUFFLED_P95)),
            shifted_p95=_float(sp.get(mn.SCENARIO_MI_SHIFTED_P95)),
            p_value=_float(sp.get(mn.SCENARIO_MI_P_VALUE)),
            shifted_p_value=_float(sp.get(mn.SCENARIO_MI_SHIFTED_P_VALUE)),
            graph_argmax_change=change(mn.GRAPH_MEAN),
            state_argmax_change=change(mn.STATE_MEAN),
            hint_follow_share=_float(hint.get(mn.FOLLOW_SHARE)),
            figures=VerdictFigures.from_json(s) if has else None,
        )

    @property
    def empty(self) -> bool:
        """No figure at all (an evaluation file written before the specialization figures)."""
        return all(getattr(self, f.name) is None for f in fields(self) if f.name != "figures")

    @property
    def null(self) -> NullChoice | None:
        """The stricter of the two nulls of the scenario information (``None`` without one)."""
        if self.shuffled_p95 is None:
            return None
        return stricter_null(self.shuffled_p95, self.p_value, self.shifted_p95,
                             self.shifted_p_value)  # fmt: skip

    @property
    def baseline_p95(self) -> float | None:
        """The p95 of the stricter null."""
        null = self.null
        return None if null is None else null.p95

    @property
    def above_baseline(self) -> bool | None:
        """The scenario information above every baseline computed (``None`` without one)."""
        if self.scenario_mi is None or self.baseline_p95 is None:
            return None
        return self.scenario_mi > self.baseline_p95

    @property
    def verdict(self) -> str | None:
        """:func:`nethack_moe.metrics.verdict.specialization_verdict` of the figures."""
        return None if self.figures is None else specialization_verdict(self.figures)


@dataclass(frozen=True)
class EvalRun:
    """One played set of episodes of an evaluation file: a checkpoint's run (sampled, or greedy
    with ``evaluate --actions greedy``), the greedy run beside it (``greedy_result``), or a
    baseline (``player`` names it)."""

    file: Path
    checkpoint: str
    """The entry's key under ``checkpoints``."""
    player: str
    greedy: bool
    episodes: list[dict[str, Any]]
    """Per-episode records as in the file."""
    summary: dict[str, Any]
    """The entry's ``summary`` as in the file."""
    beside: bool = False
    """The greedy run beside the entry's sampled one (``greedy_result``), not an entry itself."""

    @property
    def is_baseline(self) -> bool:
        """Played by a rule baseline (random, hint follower), not a checkpoint's policy."""
        return self.player != mn.POLICY

    def column(self, key: str) -> list[Any] | None:
        """``key`` of every episode record; ``None`` when a record lacks it."""
        vals = [e.get(key) for e in self.episodes]
        return vals if vals and all(v is not None for v in vals) else None

    @property
    def scores(self) -> list[float]:
        """Scores of the episodes that have one."""
        return [float(e["score"]) for e in self.episodes if e.get("score") is not None]

    @property
    def routing(self) -> dict[str, Any]:
        """The summary's routing figures (empty for a baseline or an old file)."""
        r = self.summary.get(mn.ROUTING)
        return r if isinstance(r, dict) else {}

    @property
    def specialization(self) -> SpecializationFigures:
        """The summary's specialization figures."""
        return SpecializationFigures.from_summary(self.summary)


def _eval_run(path: Path, ck: str, player: str, e: dict[str, Any], *, beside: bool) -> EvalRun:
    """The :class:`EvalRun` of an entry (or of the greedy run beside it)."""
    summary = e.get(mn.SUMMARY)
    return EvalRun(
        file=path,
        checkpoint=ck,
        player=player,
        greedy=beside or bool(e.get(mn.GREEDY, False)),
        episodes=list(e.get(mn.EPISODES) or []),
        summary=summary if isinstance(summary, dict) else {},
        beside=beside,
    )


@dataclass(frozen=True)
class EvalFile:
    """An evaluation JSON file: its protocol and every played set of episodes in it."""

    path: Path
    protocol: str | None
    runs: list[EvalRun]

    @classmethod
    def from_json(cls, path: Path, data: dict[str, Any]) -> EvalFile:
        """Each entry of ``checkpoints``, then its greedy run beside it when there is one."""
        runs: list[EvalRun] = []
        for ck, entry in (data.get(mn.CHECKPOINTS) or {}).items():
            player = str(entry.get(mn.PLAYER) or mn.POLICY)
            runs.append(_eval_run(path, str(ck), player, entry, beside=False))
            if isinstance(entry.get(mn.GREEDY_RESULT), dict):
                runs.append(_eval_run(path, str(ck), player, entry[mn.GREEDY_RESULT], beside=True))
        protocol = data.get("protocol")
        return cls(path, None if protocol is None else str(protocol), runs)

    @property
    def checkpoints(self) -> list[str]:
        """The entry names, in file order."""
        return list(dict.fromkeys(r.checkpoint for r in self.runs))

    @property
    def entries(self) -> list[EvalRun]:
        """The entries themselves (checkpoints and baselines), without the greedy runs beside."""
        return [r for r in self.runs if not r.beside]

    def beside(self, entry: EvalRun) -> EvalRun | None:
        """The greedy run beside ``entry`` (``None`` when there is none)."""
        return next((r for r in self.runs if r.beside and r.checkpoint == entry.checkpoint), None)


def load_evaluations(run_dir: str | Path) -> list[EvalFile]:
    """:func:`load_eval_files` as typed :class:`EvalFile` records, oldest first."""
    return [EvalFile.from_json(p, data) for p, data in load_eval_files(run_dir)]
