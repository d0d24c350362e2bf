"""The table of a sweep: for each row, for each training seed, every figure; then per row the
figures over seeds (mean over seeds, IQM over (seed, episode) with stratified-bootstrap CIs,
probability of improvement over the first row), and the baselines on the same game seeds.

Inputs are the files the sweep writes per run (``OUT/ROW_sSEED/eval_E200.json``,
``analysis.json``, ``metrics.jsonl.gz``); the table is ``OUT/table.json`` (machine-readable) and
``OUT/table.md``.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.analysis import over_runs
from nethack_moe.runs.records import UpdateLine


@dataclass
class SeedFigures:
    """Every figure of one training run (one row, one seed); None where not measured."""

    seed: int
    run: str
    sampled_mean: float | None = None
    sampled_ci: list[float] | None = None
    greedy_mean: float | None = None
    greedy_ci: list[float] | None = None
    died: float | None = None
    depth: float | None = None
    scenario_mi: float | None = None
    scenario_mi_p95: float | None = None
    """The stricter of the permutation and within-episode-shift nulls' p95."""
    graph_reliance: float | None = None
    """Share of states whose argmax expert changes when ``h_graph`` is replaced by its mean."""
    hint_share: float | None = None
    train_sps: float | None = None
    episodes: int = 0


@dataclass
class RowTable:
    """One row: its seeds' figures and the figures over seeds."""

    name: str
    note: str
    seeds: list[SeedFigures] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)
    sampled: dict[str, Any] | None = None
    greedy: dict[str, Any] | None = None
    poi_vs_first: dict[str, Any] | None = None
    means_over_seeds: dict[str, float | None] = field(default_factory=dict)


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def final_entry(eval_json: dict[str, Any]) -> dict[str, Any]:
    """The final checkpoint's entry of a run's evaluation file (or its only entry)."""
    entries = eval_json.get("checkpoints") or {}
    if "final" in entries:
        return dict(entries["final"])
    if len(entries) != 1:
        raise ValueError(f"expected the final checkpoint or one entry, found {sorted(entries)}")
    return dict(next(iter(entries.values())))


def seed_figures(run_dir: Path, seed: int) -> tuple[SeedFigures, list[dict], list[dict]]:
    """A run's figures and its sampled and greedy episode records."""
    ev = final_entry(json.loads((run_dir / "eval_E200.json").read_text()))
    s, g = ev["summary"], _get(ev, "greedy_result", "summary") or {}
    fig = SeedFigures(seed=seed, run=run_dir.name, episodes=int(s.get("n", 0)))
    fig.sampled_mean, fig.sampled_ci = s.get("mean"), s.get("ci_mean")
    fig.greedy_mean, fig.greedy_ci = g.get("mean"), g.get("ci_mean")
    fig.died, fig.depth = s.get("died"), s.get("depth")
    spec = s.get("specialization") or {}
    analysis = run_dir / "analysis.json"
    if analysis.is_file():  # the full analysis, where it exists, over the summary's
        a = json.loads(analysis.read_text())
        spec = a.get("specialization") or spec
        rel = a.get("reliance") or s.get("reliance")
    else:
        rel = s.get("reliance")
    fig.scenario_mi = spec.get("scenario_mi")
    nulls = [float(v) for k in ("scenario_mi_shuffled_p95", "scenario_mi_shifted_p95")
             if (v := spec.get(k)) is not None]  # fmt: skip
    decided = spec.get("scenario_mi_null_p95")  # the null the verdict used (the stricter one)
    fig.scenario_mi_p95 = float(decided) if decided is not None else (max(nulls) if nulls else None)
    fig.graph_reliance = _get(rel, "graph_mean", "argmax_change")
    fig.hint_share = _get(s, "hint", "follow_share")
    fig.train_sps = _train_sps(run_dir / "metrics.jsonl.gz")
    return fig, ev.get("episodes") or [], _get(ev, "greedy_result", "episodes") or []


def _train_sps(path: Path) -> float | None:
    """The run's train SPS: the last ``sps`` of an update record."""
    if not path.is_file():
        return None
    sps = None
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if '"type":"update"' in line or '"type": "update"' in line:
                rec = UpdateLine.from_json(json.loads(line))
                sps = sps if rec.sps is None else rec.sps
    return None if sps is None else float(sps)


def _over_seeds(
    episodes: list[list[dict]], n_resamples: int
) -> tuple[dict[str, Any], np.ndarray] | None:
    if not episodes or not all(episodes):
        return None
    scores, seeds = over_runs.aligned_scores(episodes)
    f = over_runs.row_figures(scores, n_resamples=n_resamples)
    return {**f.to_dict(), "game_seeds": [seeds[0], seeds[-1]]}, scores


def build_table(out: Path, rows: list[tuple[str, str]], seeds: list[int],
                n_resamples: int = over_runs.N_RESAMPLES) -> dict[str, Any]:  # fmt: skip
    """The table over every finished run under ``out`` (``rows``: (name, note) in order)."""
    tables: list[RowTable] = []
    sampled_scores: list[np.ndarray | None] = []
    for name, note in rows:
        t = RowTable(name, note)
        eps_s, eps_g = [], []
        for seed in seeds:
            d = out / f"{name}_s{seed}"
            if not (d / "eval_E200.json").is_file():
                t.missing_seeds.append(seed)
                continue
            fig, es, eg = seed_figures(d, seed)
            t.seeds.append(fig)
            eps_s.append(es)
            eps_g.append(eg)
        s = _over_seeds(eps_s, n_resamples)
        g = _over_seeds(eps_g, n_resamples)
        t.sampled, t.greedy = (s[0] if s else None), (g[0] if g else None)
        sampled_scores.append(s[1] if s else None)
        for key in ("died", "depth", "scenario_mi", "graph_reliance", "hint_share", "train_sps"):
            vals = [getattr(f, key) for f in t.seeds if getattr(f, key) is not None]
            t.means_over_seeds[key] = float(np.mean(vals)) if vals else None
        tables.append(t)
    first = sampled_scores[0] if sampled_scores else None
    for t, sc in zip(tables[1:], sampled_scores[1:], strict=True):
        if first is not None and sc is not None and sc.shape[1] == first.shape[1]:
            several = min(sc.shape[0], first.shape[0]) > 1
            ci = over_runs.poi_ci(sc, first, n_resamples=n_resamples) if several else None
            t.poi_vs_first = {
                "vs": tables[0].name,
                "p": over_runs.probability_of_improvement(sc, first),
                "ci": None if ci is None else list(ci),
                "runs": [int(sc.shape[0]), int(first.shape[0])],
            }
    baselines = _baselines(out / "baselines_E200.json")
    return {
        "seeds": seeds,
        "rows": [asdict(t) for t in tables],
        "baselines": baselines,
        "method": "IQM over (seed, episode) with stratified-bootstrap percentile CIs "
        f"({n_resamples} resamples), probability of improvement over the first row "
        "(Agarwal et al. 2021); per-seed CIs are each evaluation's own",
    }


def _baselines(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    out = {}
    for name, e in (data.get("checkpoints") or {}).items():
        s = e.get("summary") or {}
        out[name] = {"mean": s.get("mean"), "ci": s.get("ci_mean"), "died": s.get("died"),
                     "depth": s.get("depth"), "hint_share": _get(s, "hint", "follow_share")}  # fmt: skip
    return out


# ------------------------------------------------------------------ markdown
def _n(v: Any, d: int = 1) -> str:
    return "–" if v is None else f"{v:,.{d}f}"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _ci(c: Any, d: int = 1, single: str = "") -> str:
    return single if not c or c[0] is None else f" [{c[0]:,.{d}f}, {c[1]:,.{d}f}]"


def table_markdown(table: dict[str, Any]) -> str:
    """The table as markdown: rows over seeds, then one line per (row, seed), then baselines."""
    lines = [
        "| row | seeds | E200 sampled: mean over seeds | IQM [95 % CI] | per-seed means | greedy: mean over seeds | P(row > first) [95 % CI] | died | depth | scenario information / null p95 | `h_graph` reliance | hinted move | train SPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        s, g, m = r["sampled"] or {}, r["greedy"] or {}, r["means_over_seeds"]
        per_seed = ", ".join(f"s{f['seed']}: {_n(f['sampled_mean'])}" for f in r["seeds"]) or "–"
        poi = r["poi_vs_first"]
        poi_s = "–" if not poi else f"{poi['p']:.2f}{_ci(poi['ci'], 2, ' (1 seed: no CI)')}"
        mi = ", ".join(f"{_n(f['scenario_mi'], 3)} / {_n(f['scenario_mi_p95'], 3)}"
                       for f in r["seeds"]) or "–"  # fmt: skip
        rel = ", ".join(_pct(f["graph_reliance"]) for f in r["seeds"]) or "–"
        lines.append(
            f"| `{r['name']}` | {len(r['seeds'])}"
            f"{' (missing ' + ', '.join(map(str, r['missing_seeds'])) + ')' if r['missing_seeds'] else ''}"
            f" | {_n(s.get('mean_over_runs'))} | {_n(s.get('iqm'))}{_ci(s.get('iqm_ci'), 1, ' (1 seed: no CI)' if s.get('n_runs') == 1 else '')} | {per_seed}"
            f" | {_n(g.get('mean_over_runs'))} | {poi_s} | {_pct(m.get('died'))} | {_n(m.get('depth'), 2)}"
            f" | {mi} | {rel} | {_pct(m.get('hint_share'))} | {_n(m.get('train_sps'), 0)} |"
        )
    lines += ["", "Per run:", "",
              "| run | E200 sampled mean [95 % CI] | greedy mean [95 % CI] | died | depth | hinted move | train SPS |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in table["rows"]:
        for f in r["seeds"]:
            lines.append(
                f"| `{f['run']}` | {_n(f['sampled_mean'])}{_ci(f['sampled_ci'])} | "
                f"{_n(f['greedy_mean'])}{_ci(f['greedy_ci'])} | {_pct(f['died'])} | "
                f"{_n(f['depth'], 2)} | {_pct(f['hint_share'])} | {_n(f['train_sps'], 0)} |"
            )
    if table["baselines"]:
        lines += ["", "Baselines on the same game seeds:", "",
                  "| player | E200 mean [95 % CI] | died | depth | hinted move |", "|---|---|---|---|---|"]  # fmt: skip
        for name, b in table["baselines"].items():
            lines.append(f"| {name} | {_n(b['mean'])}{_ci(b['ci'])} | {_pct(b['died'])} | "
                         f"{_n(b['depth'], 2)} | {_pct(b['hint_share'])} |")  # fmt: skip
    lines += ["", f"Method: {table['method']}."]
    return "\n".join(lines) + "\n"


def write_table(out: Path, rows: list[tuple[str, str]], seeds: list[int]) -> dict[str, Any]:
    """Build the table and write ``out/table.json`` and ``out/table.md``."""
    table = build_table(out, rows, seeds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "table.md").write_text(table_markdown(table))
    return table
