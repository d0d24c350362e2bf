"""Compare runs or evaluation files side by side, with bootstrap confidence intervals.

An input is an evaluation JSON file (``evaluate --out FILE``; every checkpoint in it is one row) or
a run directory: its ``eval/*.json`` files when present (every checkpoint evaluated, the latest file
for each checkpoint and greedy flag), otherwise the training episodes of its last phase, labelled
as such (a training average is not a held-out evaluation).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nethack_moe.analysis.metrics_io import load_eval_files, load_run
from nethack_moe.analysis.plots import plot_compare
from nethack_moe.analysis.stats import summarize

log = logging.getLogger(__name__)


@dataclass
class Group:
    """One row of a comparison: a name, where the episodes come from, and their figures."""

    name: str
    source: str
    scores: list[float]
    died: list[bool] | None
    depth: list[float] | None
    length: list[float] | None
    summary: dict[str, Any] | None = None


def _col(eps: list[dict[str, Any]], key: str) -> list[Any] | None:
    vals = [e.get(key) for e in eps]
    return vals if vals and all(v is not None for v in vals) else None


def _played(ckpts: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, entry)`` per played set of episodes: each entry, then its greedy run beside it
    (``greedy_result``, written by ``evaluate --actions both``)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for ck, entry in ckpts.items():
        out.append((ck, entry))
        if isinstance(entry.get("greedy_result"), dict):
            out.append((ck, {**entry["greedy_result"], "greedy": True}))
    return out


def groups_from_eval(data: dict[str, Any], label: str, path: Path) -> list[Group]:
    """One group per checkpoint of an evaluation JSON object."""
    out: list[Group] = []
    ckpts = data.get("checkpoints") or {}
    proto = data.get("protocol", "eval")
    for ck, entry in _played(ckpts):
        eps = entry.get("episodes") or []
        greedy = bool(entry.get("greedy", False))
        name = label if len(ckpts) == 1 else f"{label}:{ck}"
        if greedy:
            name += " (greedy)"
        scores = [float(e["score"]) for e in eps if e.get("score") is not None]
        out.append(
            Group(
                name=name,
                source=f"{proto} {path.name}" + (" greedy" if greedy else ""),
                scores=scores,
                died=_col(eps, "died"),
                depth=_col(eps, "depth"),
                length=_col(eps, "length"),
                summary=None if scores else entry.get("summary"),
            )
        )
    return out


def groups_from_run(run_dir: Path, label: str) -> list[Group]:
    """Groups of a run directory: its evaluations, or else its last training phase."""
    evals = load_eval_files(run_dir)
    if evals:
        latest: dict[tuple[str, bool], tuple[Path, dict[str, Any], str]] = {}
        for p, data in evals:  # oldest first: later files replace earlier ones
            for ck, entry in (data.get("checkpoints") or {}).items():
                latest[(ck, bool(entry.get("greedy", False)))] = (p, data, ck)
        out: list[Group] = []
        for (ck, _g), (p, data, _) in latest.items():
            sub = dict(data)
            sub["checkpoints"] = {ck: data["checkpoints"][ck]}
            g = groups_from_eval(sub, f"{label}:{ck}", p)
            out.extend(g)
        return out
    run = load_run(run_dir)
    eps = run.episodes
    if not eps:
        return [Group(label, "no episodes", [], None, None, None)]
    last = str(eps[-1].get("phase"))
    sel = [e for e in eps if str(e.get("phase")) == last]
    a, b = sel[0].get("episode"), sel[-1].get("episode")
    return [
        Group(
            name=label,
            source=f"training, phase {last} (episodes {a}–{b})",
            scores=[float(e["score"]) for e in sel if e.get("score") is not None],
            died=_col(sel, "died"),
            depth=_col(sel, "depth"),
            length=_col(sel, "length"),
        )
    ]


def load_groups(inputs: Sequence[str | Path], names: Sequence[str] | None = None) -> list[Group]:
    """Groups of every input (run directory or evaluation JSON file)."""
    out: list[Group] = []
    for i, inp in enumerate(inputs):
        p = Path(inp)
        label = names[i] if names is not None and i < len(names) else (p.stem or p.name)
        if p.is_dir():
            out.extend(groups_from_run(p, label if names else p.name))
        elif p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "checkpoints" not in data:
                raise ValueError(f"{p}: not an evaluation file (no 'checkpoints')")
            out.extend(groups_from_eval(data, label, p))
        else:
            raise FileNotFoundError(p)
    # unique names
    seen: dict[str, int] = {}
    for g in out:
        if g.name in seen:
            seen[g.name] += 1
            g.name = f"{g.name} #{seen[g.name]}"
        else:
            seen[g.name] = 1
    return out


def _f(v: Any, nd: int = 2) -> str:
    return "–" if v is None else f"{float(v):.{nd}f}"


def _ci(v: Any, nd: int = 2) -> str:
    return "" if not v else f" [{float(v[0]):.{nd}f}, {float(v[1]):.{nd}f}]"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


def summary_table(groups: Sequence[Group], *, n_resamples: int = 2000, seed: int = 0) -> str:
    """Markdown table: n, mean [CI], IQM [CI], median, max, death rate, depth, length per group."""
    lines = [
        "| run | source | n | mean [95 % CI] | IQM [95 % CI] | median | max | died | depth | length |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        if g.scores:
            s = summarize(
                g.scores,
                died=g.died,
                depth=g.depth,
                length=g.length,
                n_resamples=n_resamples,
                seed=seed,
            )
            g.summary = s
        else:
            s = g.summary or {"n": 0}
        lines.append(
            f"| {g.name} | {g.source} | {s.get('n', 0)} | {_f(s.get('mean'))}{_ci(s.get('ci_mean'))}"
            f" | {_f(s.get('iqm'))}{_ci(s.get('ci_iqm'))} | {_f(s.get('median'), 1)}"
            f" | {_f(s.get('max'), 0)} | {_pct(s.get('died'))} | {_f(s.get('depth'))}"
            f" | {_f(s.get('length'), 0)} |"
        )
    return "\n".join(lines)


def compare(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[str, Path]:
    """Compare inputs; returns ``(markdown table, overlay plot path)``.

    Also writes ``compare.md`` (the table) and ``compare.png`` in ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = load_groups(inputs, names)
    table = summary_table(groups, n_resamples=n_resamples, seed=seed)
    plot_in: dict[str, Any] = {}
    for g in groups:
        plot_in[g.name] = g.scores if g.scores else (g.summary or {})
    plot_path = plot_compare(plot_in, out / "compare.png", title="Score per run")
    ci_method = next((g.summary.get("ci_method") for g in groups if g.summary), "BCa")
    note = (
        f"Bootstrap {int(100 * 0.95)} % CIs ({ci_method}, {n_resamples} resamples, seed {seed}); "
        "rows marked *training* are training averages, not held-out E200 evaluations."
    )
    (out / "compare.md").write_text(
        f"# Comparison\n\n{table}\n\n{note}\n\n![comparison]({plot_path.name})\n", encoding="utf-8"
    )
    return table, plot_path
