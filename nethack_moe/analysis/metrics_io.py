"""Reading a run directory: ``metrics.jsonl``, the resolved config, phases, evaluation files.

``metrics.jsonl`` holds one JSON object per line with a ``type`` (``run_start``, ``episode``,
``update``, ``checkpoint``, ``event``). A line that is not JSON (a torn write at a crash) is skipped
with a warning; when a torn line was glued to the next record (the run resumed and appended),
the record after the tear is recovered.

After a resume from a checkpoint the file may hold the same episode (update) number twice: the
records logged after the checkpoint and before the crash, then again after the resume.
:func:`load_run` keeps the **last** record of each episode and update number.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECORD_TYPES = ("run_start", "episode", "update", "checkpoint", "event")


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


def dedupe_last(records: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Keep the last record for each value of ``key`` (records without it are kept), sorted by it."""
    keyed: dict[Any, dict[str, Any]] = {}
    rest: list[dict[str, Any]] = []
    for r in records:
        k = r.get(key)
        if k is None:
            rest.append(r)
        else:
            keyed[k] = r
    return [keyed[k] for k in sorted(keyed)] + rest


@dataclass
class Phase:
    """A curriculum phase: name and its nominal episode range ``(start, end]`` (end may be None)."""

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
    episodes: list[dict[str, Any]]
    updates: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    events: list[dict[str, Any]]
    run_start: dict[str, Any] | None
    phases: list[Phase]
    bad_lines: list[int] = field(default_factory=list)
    duplicate_episodes: int = 0
    duplicate_updates: int = 0


def load_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None, str]:
    """The resolved config of a run: ``(dict, text, source)``; ``(None, None, "absent")``."""
    import yaml

    for name in ("config.yaml", "config.yml", "config.json"):
        p = run_dir / name
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
    config: dict[str, Any] | None, episodes: list[dict[str, Any]] | None = None
) -> list[Phase]:
    """Phases of ``curriculum.phases`` in config order, else inferred from episode records.

    A configured phase ends where the next starts (the last at ``curriculum.total_episodes``).
    Inferred phases span the first to the last episode logged with that ``phase``.
    """
    cur = (config or {}).get("curriculum") if isinstance(config, dict) else None
    specs = cur.get("phases") if isinstance(cur, dict) else None
    phases: list[Phase] = []
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
            phases.append(Phase(str(s.get("name", f"phase{i}")), start, end, dict(s)))
    known = {p.name for p in phases}
    # phases seen in the records but not configured (or no config): first..last episode
    seen: dict[str, list[int]] = {}
    for e in episodes or []:
        name = str(e.get("phase", "?"))
        ep = int(e.get("episode", 0) or 0)
        if name in seen:
            seen[name][0] = min(seen[name][0], ep)
            seen[name][1] = max(seen[name][1], ep)
        else:
            seen[name] = [ep, ep]
    extra = [(v[0], n, v[1]) for n, v in seen.items() if n not in known]
    for first, name, last in sorted(extra):
        phases.append(Phase(name, max(first - 1, 0), last, {}))
    return phases


def load_run(run_dir: str | Path) -> RunData:
    """Read ``metrics.jsonl``, the config and the phases of a run directory."""
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.jsonl"
    bad: list[int] = []
    records = read_metrics(mpath, bad_lines=bad) if mpath.is_file() else []
    if not mpath.is_file():
        log.warning("%s: no metrics.jsonl", run_dir)
    by = split_by_type(records)
    config, text, source = load_config(run_dir)
    run_start = by["run_start"][-1] if by["run_start"] else None
    if config is None and run_start and isinstance(run_start.get("config"), dict):
        config = run_start["config"]
        source = "run_start record of metrics.jsonl (config file absent)"
    episodes = dedupe_last(by["episode"], "episode")
    updates = dedupe_last(by["update"], "update")
    return RunData(
        run_dir=run_dir,
        config=config,
        config_text=text,
        config_source=source,
        records=records,
        episodes=episodes,
        updates=updates,
        checkpoints=by["checkpoint"],
        events=by["event"],
        run_start=run_start,
        phases=phases_from_config(config, episodes),
        bad_lines=bad,
        duplicate_episodes=len(by["episode"]) - len(episodes),
        duplicate_updates=len(by["update"]) - len(updates),
    )


def load_eval_files(run_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Evaluation JSON files ``run_dir/eval/*.json``, oldest first (by ``created``, then mtime)."""
    d = Path(run_dir) / "eval"
    out: list[tuple[str, float, Path, dict[str, Any]]] = []
    if not d.is_dir():
        return []
    for p in sorted(d.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read evaluation file (%s)", p, exc)
            continue
        if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), dict):
            log.warning("%s: not an evaluation file (no 'checkpoints')", p)
            continue
        out.append((str(data.get("created", "")), p.stat().st_mtime, p, data))
    out.sort(key=lambda t: (t[0], t[1]))
    return [(p, data) for _, _, p, data in out]
