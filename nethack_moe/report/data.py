"""What the report reads from a run directory, loaded once: the run's records
(:class:`~nethack_moe.runs.metrics_io.RunData`) with their statistics
(:mod:`nethack_moe.report.training_stats`), the experts, the evaluation files (:class:`EvalFile`)
with their rows (:class:`Group`), and the named figures expectations refer to
(:func:`report_metrics`).

:func:`load_report_data` builds a :class:`ReportData`; the sections
(:mod:`nethack_moe.report.sections`) only format it (the figures section also draws the plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.routing import _expert_names as _default_expert_names
from nethack_moe.metrics.stats import Summary, best_window, summarize_scores
from nethack_moe.report.compare import Group, groups_of_file, summarize_groups
from nethack_moe.report.training_stats import (
    PhaseStats,
    ReportOptions,
    SegmentStats,
    StabilityCounts,
    finite,
    phase_stats,
    segment_stats,
    stability_counts,
)
from nethack_moe.runs.metrics_io import (
    EvalFile,
    EvalRun,
    RunData,
    load_evaluations,
    load_run,
)
from nethack_moe.runs.rundir import RunDir


# ------------------------------------------------------------------------------------ experts
def _model_config(run: RunData) -> dict[str, Any]:
    cfg = run.config or {}
    model = cfg.get("model") if isinstance(cfg, dict) else None
    return model if isinstance(model, dict) else {}


def n_experts(run: RunData, stats: Sequence[PhaseStats]) -> int | None:
    """Experts of the model: from the routing usage logged last, else from the config."""
    for st in reversed(stats):
        if st.routing.usage:
            return len(st.routing.usage)
    model = _model_config(run)
    for k in ("n_experts", "num_experts", "experts"):
        v = model.get(k)
        if isinstance(v, int):
            return v
        if isinstance(v, list):
            return len(v)
    return None


def expert_names(run: RunData, n: int | None) -> list[str] | None:
    """The experts' names from the config, else the defaults for ``n`` experts."""
    model = _model_config(run)
    for k in ("expert_names", "experts"):
        v = model.get(k)
        if isinstance(v, list) and all(isinstance(x, str) for x in v) and len(v) == n:
            return list(v)
    return _default_expert_names(n, None) if n else None


# ------------------------------------------------------------------------------------ evaluations
def eval_summary(r: EvalRun, opts: ReportOptions | None = None, *, ci: bool = True) -> Summary:
    """E200 figures of an evaluated run: from its episodes, else the file's summary."""
    sc = finite([e.get("score") for e in r.episodes])
    if not sc.size:
        return Summary.from_json(r.summary)
    o = opts or ReportOptions()
    return summarize_scores(
        sc,
        died=finite([e.get("died") for e in r.episodes]),
        depth=finite([e.get("depth") for e in r.episodes]),
        n_resamples=o.n_resamples,
        seed=o.seed,
        ci=ci,
    )


def headline_entry(ev: EvalFile) -> EvalRun | None:
    """The entry the ``eval_*`` metrics describe: ``final``, else the first checkpoint's, else
    the first entry."""
    entries = ev.entries
    for r in entries:
        if r.checkpoint == "final":
            return r
    return next((r for r in entries if not r.is_baseline), entries[0] if entries else None)


# ------------------------------------------------------------------------------------ everything
@dataclass
class ReportData:
    """Everything the report shows, loaded and computed once."""

    run_dir: Path
    out_path: Path
    plot_dir: Path
    options: ReportOptions
    run: RunData
    evals: list[EvalFile]
    phases: list[PhaseStats]
    segments: list[SegmentStats]
    stability: StabilityCounts
    total_episodes: int | None
    n_experts: int | None
    expert_names: list[str] | None
    groups: list[Group] = field(default_factory=list)
    """Rows of the evaluation table: every played set of every evaluation file."""
    group_summaries: list[Summary] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config (empty when there is none)."""
        return self.run.config if isinstance(self.run.config, dict) else {}

    @property
    def with_episodes(self) -> list[PhaseStats]:
        """The phases that have episodes."""
        return [s for s in self.phases if s.n]

    @property
    def routed(self) -> list[PhaseStats]:
        """The phases whose updates carry routing figures."""
        return [s for s in self.phases if s.routing.alpha_entropy is not None]

    @property
    def all_scores(self) -> np.ndarray:
        """The scores of every training episode, in order."""
        return finite([e.score for e in self.run.episodes])

    @property
    def latest_eval(self) -> EvalFile | None:
        """The newest evaluation file."""
        return self.evals[-1] if self.evals else None

    @property
    def plot_rel(self) -> str:
        """The plot directory relative to the report (for the image links)."""
        return self.plot_dir.relative_to(self.out_path.parent).as_posix()


def report_metrics(d: ReportData) -> dict[str, float | None]:
    """The named figures expectations can refer to: ``<phase>_<figure>`` for every phase, and
    ``first_phase`` / ``final_phase``; run-level figures; ``eval_*`` of the latest evaluation."""
    m: dict[str, float | None] = {}
    for st in d.phases:
        if st.n or st.n_updates:
            m.update(_phase_metrics(st.name, st))
    with_eps = d.with_episodes
    if with_eps:
        m.update(_phase_metrics("first_phase", with_eps[0]))
        m.update(_phase_metrics("final_phase", with_eps[-1]))
        a, b = with_eps[0].score.mean, with_eps[-1].score.mean
        change = b - a if len(with_eps) > 1 and a is not None and b is not None else None
        m["score_change"] = change
        m["score_change_pct"] = 100 * change / abs(a) if change is not None and a else None
    scores = d.all_scores
    m["episodes"] = float(len(d.run.episodes))
    m["max_score"] = float(scores.max()) if scores.size else None
    m["mean_score"] = float(scores.mean()) if scores.size else None
    bw = best_window(scores, d.options.window)
    m["best_window_mean_score"] = bw[1] if bw else None
    sc = d.stability
    m["worker_restarts"] = float(sc.worker_restarts)
    m["dropped_episodes"] = float(sc.dropped_episodes)
    m["nonfinite_skips"] = float(max(sc.nonfinite_skip_events, sc.skipped_updates))
    entry = headline_entry(d.latest_eval) if d.latest_eval else None
    if entry is not None:
        s = eval_summary(entry, ci=False)
        m["eval_mean_score"] = s.mean
        m["eval_iqm_score"] = s.iqm
        m["eval_median_score"] = s.median
        m["eval_max_score"] = s.max
        m["eval_died"] = s.died
        m["eval_depth"] = s.depth
    return m


def _phase_metrics(prefix: str, st: PhaseStats) -> dict[str, float | None]:
    """The ``<prefix>_<figure>`` metrics of one phase."""
    m: dict[str, float | None] = {
        f"{prefix}_mean_score": st.score.mean,
        f"{prefix}_median_score": st.score.median,
        f"{prefix}_iqm_score": st.score.iqm,
        f"{prefix}_score_std": st.score.std,
        f"{prefix}_max_score": st.score.max,
        f"{prefix}_mean_reward": st.reward_mean,
        f"{prefix}_died": st.score.died,
        f"{prefix}_depth": st.score.depth,
        f"{prefix}_episodes": float(st.n),
    }
    for name, label in mn.EXPECTATION_NAMES.items():
        m[f"{prefix}_{label}"] = st.routing.value(name)
    return m


def load_report_data(
    run_dir: str | Path, out: str | Path | None = None, options: ReportOptions | None = None
) -> ReportData:
    """Read ``run_dir`` (``metrics.jsonl``, config, ``eval/*.json``) and compute every figure of
    the report written to ``out`` (default ``run_dir/report.md``)."""
    run_dir = Path(run_dir)
    opts = options or ReportOptions()
    out_path = Path(out) if out is not None else RunDir(run_dir).report
    run = load_run(run_dir)
    evals = load_evaluations(run_dir)
    stats = phase_stats(run, opts)
    cfg = run.config if isinstance(run.config, dict) else {}
    cur = cfg.get("curriculum") if isinstance(cfg.get("curriculum"), dict) else {}
    total = cur.get("total_episodes") if isinstance(cur, dict) else None
    E = n_experts(run, stats)
    groups = [g for ev in evals for g in groups_of_file(ev, ev.path.stem)]
    d = ReportData(
        run_dir=run_dir,
        out_path=out_path,
        plot_dir=out_path.parent / "report_plots",
        options=opts,
        run=run,
        evals=evals,
        phases=stats,
        segments=segment_stats(run, opts.segment_size),
        stability=stability_counts(run),
        total_episodes=int(total) if isinstance(total, (int, float)) else None,
        n_experts=E,
        expert_names=expert_names(run, E),
        groups=groups,
        group_summaries=summarize_groups(groups, n_resamples=opts.n_resamples, seed=opts.seed),
    )
    d.metrics = report_metrics(d)
    return d
