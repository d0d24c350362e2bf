"""Compare runs or evaluation files side by side, with bootstrap confidence intervals.

An input is an evaluation JSON file (``evaluate --out FILE``; every checkpoint in it is one row) or
a run directory: its ``eval/*.json`` files when present (every checkpoint evaluated, the latest file
for each checkpoint and greedy flag), otherwise the training episodes of its last phase, labelled
as such (a training average is not a held-out evaluation).

Every played set of an evaluation file is a row: each checkpoint's sampled run, its greedy run
beside it (``greedy_result``) and the baselines (entries whose ``player`` is ``random`` or
``hint-follower``). Below the summary table, when the inputs have them: the greedy runs and
baselines against the sampled policy on the same seeds (paired bootstrap CI of the difference),
and the specialization figures next to their baselines (``specialization``, ``reliance``,
``hint`` of each entry's summary, and the verdict built from them), read with the same
:class:`~nethack_moe.analysis.metrics_io.EvalFile` records as the report.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nethack_moe.analysis import over_runs
from nethack_moe.analysis.plots import plot_compare
from nethack_moe.core import formatting as fmt
from nethack_moe.metrics.stats import Summary, paired_diff_ci, summarize_scores
from nethack_moe.runs.metrics_io import (
    EvalFile,
    EvalRun,
    SpecializationFigures,
    load_evaluations,
    load_run,
)
from nethack_moe.runs.rundir import RunDir

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
    file_summary: Summary | None = None
    """The file's summary, for an entry whose episodes are not in the file."""
    seeds: list[int] | None = None
    """The seed of each score (evaluation files), for comparisons on the same seeds."""
    player: str = "policy"
    """``policy`` or the baseline's name."""
    greedy: bool = False
    checkpoint: str | None = None
    file: Path | None = None
    specialization: SpecializationFigures | None = None

    def summarize(self, *, n_resamples: int = 2000, seed: int = 0) -> Summary:
        """E200 figures of the episodes (bootstrap CIs), else the file's summary."""
        if self.scores:
            return summarize_scores(
                self.scores,
                died=self.died,
                depth=self.depth,
                length=self.length,
                n_resamples=n_resamples,
                seed=seed,
            )
        return self.file_summary or Summary(n=0)

    def plot_input(self) -> Any:
        """What :func:`plot_compare` draws: the scores, or the file's summary."""
        return (
            self.scores
            if self.scores
            else (self.file_summary.to_json() if self.file_summary else {})
        )


def group_of_run(r: EvalRun, name: str, protocol: str | None) -> Group:
    """The :class:`Group` of one played set of an evaluation file."""
    scores = r.scores
    kind = " baseline" if r.is_baseline else (" greedy" if r.greedy else "")
    seeds = r.column("seed")
    return Group(
        name=name + (" (greedy)" if r.greedy else ""),
        source=f"{protocol or 'eval'} {r.file.name}{kind}",
        scores=scores,
        died=r.column("died"),
        depth=r.column("depth"),
        length=r.column("length"),
        file_summary=None if scores else Summary.from_json(r.summary),
        seeds=[int(x) for x in seeds] if seeds is not None and len(seeds) == len(scores) else None,
        player=r.player,
        greedy=r.greedy,
        checkpoint=r.checkpoint,
        file=r.file,
        specialization=r.specialization,
    )


def groups_of_file(ev: EvalFile, label: str) -> list[Group]:
    """One group per played set of an evaluation file: each entry (checkpoint or baseline), with
    a checkpoint's greedy run beside its sampled one; named ``label`` (one entry) or
    ``label:entry``."""
    one = len(ev.checkpoints) == 1
    return [
        group_of_run(r, label if one else f"{label}:{r.checkpoint}", ev.protocol) for r in ev.runs
    ]


def groups_from_eval(data: dict[str, Any], label: str, path: Path) -> list[Group]:
    """:func:`groups_of_file` of an evaluation JSON object read from ``path``."""
    return groups_of_file(EvalFile.from_json(path, data), label)


def groups_from_run(run_dir: Path, label: str) -> list[Group]:
    """Groups of a run directory: its evaluations (the latest file for each checkpoint and
    greedy flag), or else its last training phase."""
    evals = load_evaluations(run_dir)
    if evals:
        latest: dict[tuple[str, bool], tuple[EvalRun, str | None]] = {}
        for ev in evals:  # oldest first: later files replace earlier ones
            for r in ev.runs:
                latest[(r.checkpoint, r.greedy)] = (r, ev.protocol)
        return [group_of_run(r, f"{label}:{r.checkpoint}", proto) for r, proto in latest.values()]
    run = load_run(run_dir)
    eps = run.episodes
    if not eps:
        return [Group(label, "no episodes", [], None, None, None)]
    last = str(eps[-1].phase)
    sel = [e for e in eps if str(e.phase) == last]
    a, b = sel[0].episode, sel[-1].episode
    return [
        Group(
            name=label,
            source=f"training, phase {last} (episodes {a}–{b})",
            scores=[float(e.score) for e in sel if e.score is not None],
            died=_column([e.died for e in sel]),
            depth=_column([e.depth for e in sel]),
            length=_column([e.length for e in sel]),
        )
    ]


def _column(vals: list[Any]) -> list[Any] | None:
    """``vals`` when every one is there (``None`` otherwise)."""
    return vals if vals and all(v is not None for v in vals) else None


#: The evaluation file of one run of a sweep (``OUT/ROW_sSEED/eval_E200.json``).
SWEEP_EVAL = "eval_E200.json"


def _default_label(p: Path) -> str:
    """A sweep run's directory name (``ROW_sSEED``) for its ``eval_E200.json``, else the stem."""
    if p.name == SWEEP_EVAL and p.parent.name:
        return p.parent.name
    return p.stem or p.name


def load_groups(inputs: Sequence[str | Path], names: Sequence[str] | None = None) -> list[Group]:
    """Groups of every input (run directory or evaluation JSON file)."""
    out: list[Group] = []
    for i, inp in enumerate(inputs):
        p = Path(inp)
        label = names[i] if names is not None and i < len(names) else _default_label(p)
        if p.is_dir() and (p / SWEEP_EVAL).is_file() and not RunDir(p).eval_dir.is_dir():
            out.extend(
                groups_from_eval(json.loads((p / SWEEP_EVAL).read_text()), label, p / SWEEP_EVAL)
            )
        elif p.is_dir():
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


def summarize_groups(
    groups: Sequence[Group], *, n_resamples: int = 2000, seed: int = 0
) -> list[Summary]:
    """:meth:`Group.summarize` of every group."""
    return [g.summarize(n_resamples=n_resamples, seed=seed) for g in groups]


def summary_table(groups: Sequence[Group], summaries: Sequence[Summary]) -> str:
    """Markdown table: n, mean [CI], IQM [CI], median, max, death rate, depth, length per group."""
    rows = [
        [
            g.name,
            g.source,
            str(s.n),
            fmt.with_ci(fmt.num(s.mean), s.ci_mean),
            fmt.with_ci(fmt.num(s.iqm), s.ci_iqm),
            fmt.num(s.median, 1),
            fmt.num(s.max, 0),
            fmt.pct(s.died),
            fmt.num(s.depth),
            fmt.num(s.length, 0),
        ]
        for g, s in zip(groups, summaries, strict=True)
    ]
    return fmt.markdown_table(
        [
            "run",
            "source",
            "n",
            "mean [95 % CI]",
            "IQM [95 % CI]",
            "median",
            "max",
            "died",
            "depth",
            "length",
        ],
        rows,
    )


def _references(g: Group, groups: Sequence[Group]) -> list[Group]:
    """What ``g`` is compared with on the same seeds: for a greedy run, its checkpoint's sampled
    run; for a baseline, every checkpoint's sampled run of the same file."""
    if g.file is None or not (g.greedy or g.player != "policy"):
        return []
    return [
        r
        for r in groups
        if r.file == g.file
        and r.player == "policy"
        and not r.greedy
        and (g.player != "policy" or r.checkpoint == g.checkpoint)
    ]


def _paired(a: Group, b: Group) -> tuple[list[float], list[float]]:
    """The scores of ``a`` and ``b`` on the seeds both played, in seed order."""
    if a.seeds is None or b.seeds is None:
        return [], []
    sa, sb = dict(zip(a.seeds, a.scores, strict=True)), dict(zip(b.seeds, b.scores, strict=True))
    common = sorted(set(sa) & set(sb))
    return [sa[k] for k in common], [sb[k] for k in common]


def same_seeds_table(
    groups: Sequence[Group], *, n_resamples: int = 2000, seed: int = 0
) -> str | None:
    """Greedy runs and baselines next to the sampled policy they were played beside: the mean
    score difference on the seeds both played, with a paired bootstrap CI; ``None`` when there
    is no such pair."""
    rows = []
    for g in groups:
        for ref in _references(g, groups):
            a, b = _paired(ref, g)
            if not a:
                continue
            d, d_ci = paired_diff_ci(a, b, n_resamples=n_resamples, seed=seed)
            rows.append(
                [
                    g.name,
                    ref.name,
                    str(len(a)),
                    fmt.num(float(sum(b) / len(b))),
                    fmt.num(float(sum(a) / len(a))),
                    fmt.with_ci(fmt.signed(d), d_ci),
                ]
            )
    if not rows:
        return None
    return fmt.markdown_table(
        [
            "played by",
            "against (sampled policy)",
            "same seeds",
            "mean score",
            "its mean score",
            "difference [95 % CI]",
        ],
        rows,
    )


def _null_text(sp: SpecializationFigures) -> str:
    """The p-value of the null the scenario-information decision is made against, named."""
    null = sp.null
    return fmt.MISSING if null is None else f"{fmt.num(null.p_value, 3)} ({null.name})"


def specialization_table(groups: Sequence[Group]) -> str | None:
    """The specialization figures of every group that has them, each next to its baseline, and
    the verdicts below; ``None`` when no group has any."""
    have = [
        (g, g.specialization) for g in groups if g.specialization and not g.specialization.empty
    ]
    if not have:
        return None
    rows = []
    for g, sp in have:
        above = {True: "yes", False: "no", None: fmt.MISSING}[sp.above_baseline]
        info = fmt.num(sp.scenario_mi, 4)
        if sp.scenario_mi_normalized is not None:
            info += f" ({fmt.pct(sp.scenario_mi_normalized)} of H)"
        rows.append(
            [
                g.name,
                info,
                fmt.num(sp.shuffled_p95, 4),
                fmt.num(sp.shifted_p95, 4),
                above,
                fmt.pct(sp.graph_argmax_change),
                fmt.pct(sp.state_argmax_change),
                fmt.pct(sp.hint_follow_share),
                _null_text(sp),
            ]
        )
    table = fmt.markdown_table(
        [
            "played by",
            "scenario information (nats)",
            "permuted p95",
            "episode-shift p95",
            "above both",
            "h_graph → mean: argmax changes",
            "h_state → mean: argmax changes",
            "hinted move taken",
            "stricter null: p-value",
        ],
        rows,
    )
    # built from each entry's figures (a sentence stored in an old file is never printed)
    verdicts = [f"- **{g.name}**: {sp.verdict}" for g, sp in have if sp.verdict]
    return table + ("\n\n" + "\n".join(verdicts) if verdicts else "")


def comparison_markdown(
    groups: Sequence[Group],
    summaries: Sequence[Summary],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> str:
    """The summary table, then (when the inputs have them) greedy runs and baselines against the
    sampled policy on the same seeds, and the specialization figures."""
    parts = [summary_table(groups, summaries)]
    same = same_seeds_table(groups, n_resamples=n_resamples, seed=seed)
    if same:
        parts.append(
            "Greedy runs and baselines against the sampled policy, on the same seeds:\n\n" + same
        )
    spec = specialization_table(groups)
    if spec:
        parts.append("Specialization, each figure next to its baseline:\n\n" + spec)
    seeds = over_seeds_table(groups, summaries, n_resamples=n_resamples, seed=seed)
    if seeds:
        parts.append("Over training seeds (rows with more than one run):\n\n" + seeds)
    return "\n\n".join(parts)


# ------------------------------------------------------------------ over training seeds
_SEED_SUFFIX = re.compile(r"^(?P<row>.+)_s(?P<seed>\d+)(?::final)?$")


def runs_by_row(groups: Sequence[Group]) -> dict[str, list[tuple[int, int]]]:
    """Sampled policy groups named ``ROW_sSEED`` (a sweep's runs), by row: (seed, group index)."""
    rows: dict[str, list[tuple[int, int]]] = {}
    for i, g in enumerate(groups):
        m = _SEED_SUFFIX.match(g.name)
        if m and g.player == "policy" and not g.greedy and g.scores and g.seeds:
            rows.setdefault(m["row"], []).append((int(m["seed"]), i))
    return rows


def over_seeds_table(
    groups: Sequence[Group], summaries: Sequence[Summary], *, n_resamples: int = 2000, seed: int = 0
) -> str | None:
    """Per row of several runs: each seed's mean with its CI, the mean over seeds, the IQM over
    (seed, episode) with a stratified-bootstrap CI, and the probability of improvement over the
    first such row (Agarwal et al. 2021; :mod:`nethack_moe.analysis.over_runs`)."""
    rows = {k: sorted(v) for k, v in runs_by_row(groups).items() if len(v) > 1}
    if not rows:
        return None
    mats = {}
    for name, runs in rows.items():
        eps = [[{"seed": s, "score": x} for s, x in zip(groups[i].seeds or [], groups[i].scores, strict=True)]
               for _, i in runs]  # fmt: skip
        mats[name] = over_runs.aligned_scores(eps)[0]
    first = next(iter(mats))
    lines = ["| row | seeds | per-seed mean [95 % CI] | mean over seeds | IQM [95 % CI] | "
             f"P(row > {first}) [95 % CI] |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, runs in rows.items():
        a = mats[name]
        f = over_runs.row_figures(a, n_resamples=n_resamples, seed=seed)
        per = "; ".join(
            fmt.with_ci(f"s{s}: {fmt.num(summaries[i].mean)}", summaries[i].ci_mean)
            for s, i in runs
        )
        poi = "–"
        if name != first and mats[first].shape[1] == a.shape[1]:
            lo, hi = over_runs.poi_ci(a, mats[first], n_resamples=n_resamples, seed=seed)
            poi = f"{over_runs.probability_of_improvement(a, mats[first]):.2f} [{lo:.2f}, {hi:.2f}]"
        iqm = fmt.with_ci(fmt.num(f.iqm), list(f.iqm_ci) if f.iqm_ci else None)
        lines.append(
            f"| {name} | {len(runs)} | {per} | {fmt.num(f.mean_over_runs)} | {iqm} | {poi} |"
        )
    lines.append(
        f"\nIQM over (seed, episode) on the game seeds all runs of a row share; stratified bootstrap "
        f"over runs ({n_resamples} resamples, percentile CIs)."
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
    summaries = summarize_groups(groups, n_resamples=n_resamples, seed=seed)
    table = comparison_markdown(groups, summaries, n_resamples=n_resamples, seed=seed)
    plot_in = {g.name: g.plot_input() for g in groups}
    plot_path = plot_compare(plot_in, out / "compare.png", title="Score per run")
    ci_method = next((s.ci_method for s in summaries if s.n), "BCa")
    note = (
        f"Bootstrap {int(100 * 0.95)} % CIs ({ci_method}, {n_resamples} resamples, seed {seed}); "
        "rows marked *training* are training averages, not held-out E200 evaluations."
    )
    (out / "compare.md").write_text(
        f"# Comparison\n\n{table}\n\n{note}\n\n![comparison]({plot_path.name})\n", encoding="utf-8"
    )
    return table, plot_path
