"""What the report reads from a run directory, loaded once, and the statistics computed from it as
typed records: :class:`PhaseStats` per curriculum phase, :class:`SegmentStats` per block of
episodes, :class:`StabilityCounts`, the evaluation files (:class:`EvalFile`) with their rows
(:class:`Group`), and the named figures expectations refer to (:func:`report_metrics`).

:func:`load_report_data` builds a :class:`ReportData`; the sections
(:mod:`nethack_moe.report.sections`) only format it (the figures section also draws the plots).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.routing import _expert_names as _default_expert_names
from nethack_moe.metrics.stats import Summary, best_window, summarize_scores
from nethack_moe.report.compare import Group, groups_of_file, summarize_groups
from nethack_moe.runs.metrics_io import (
    EvalFile,
    EvalRun,
    PhaseSpan,
    RunData,
    load_evaluations,
    load_run,
)
from nethack_moe.runs.rundir import RunDir


@dataclass(frozen=True)
class ReportOptions:
    """How the report cuts and resamples the data."""

    segment_size: int = 500
    """Episodes per row of the per-segment table."""
    window: int = 100
    """Episodes of the best-window figure and the training-curve smoothing."""
    n_resamples: int = 2000
    """Bootstrap resamples of every confidence interval."""
    seed: int = 0
    """Seed of the bootstrap."""


# ------------------------------------------------------------------------------------ numbers
def finite(values: Sequence[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (booleans as 0/1; ``None`` and non-numbers dropped)."""
    out = []
    for v in values:
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=np.float64)


def mean_of(values: Sequence[Any]) -> float | None:
    """Mean of the finite values (``None`` without any)."""
    a = finite(values)
    return float(a.mean()) if a.size else None


def sd_of(values: Sequence[Any]) -> float | None:
    """Sample std (ddof=1) of the finite values; 0 for one value, ``None`` without any."""
    a = finite(values)
    if a.size == 0:
        return None
    return float(a.std(ddof=1)) if a.size > 1 else 0.0


def score_key(v: Any) -> float:
    """``v`` as a float for ranking (``-inf`` for what is missing or not finite)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("-inf")
    return f if math.isfinite(f) else float("-inf")


def most_common(values: Sequence[Any]) -> Any:
    """The most frequent value that is not ``None`` (``None`` without any)."""
    c = Counter(v for v in values if v is not None)
    return c.most_common(1)[0][0] if c else None


def mean_vectors(vecs: Sequence[Any]) -> list[float] | None:
    """Element-wise mean of the lists of the most common length (rows with a non-finite value
    dropped); ``None`` without any."""
    rows = [v for v in vecs if isinstance(v, list) and v]
    if not rows:
        return None
    E = Counter(len(v) for v in rows).most_common(1)[0][0]
    mat = np.array([v for v in rows if len(v) == E], dtype=np.float64)
    mat = mat[np.isfinite(mat).all(axis=1)]
    return [float(x) for x in mat.mean(axis=0)] if mat.size else None


def temperature_range(records: Sequence[dict[str, Any]]) -> tuple[float, float] | None:
    """Lowest and highest ``temperature`` of the records (``None`` without any)."""
    t = finite([r.get("temperature") for r in records])
    return (float(t.min()), float(t.max())) if t.size else None


# ------------------------------------------------------------------------------------ routing
@dataclass(frozen=True)
class RoutingStats:
    """Routing figures of a set of update records: the mean over the records (and, for the alpha
    entropy, the sample std over them)."""

    alpha_entropy: float | None = None
    alpha_entropy_sd: float | None = None
    """Sample std (ddof=1) of the per-update alpha entropy over the updates."""
    alpha_entropy_std: float | None = None
    """Mean of the within-batch std of the per-state alpha entropy."""
    usage_entropy: float | None = None
    mi: float | None = None
    effective_experts: float | None = None
    sparsity: float | None = None
    usage: list[float] | None = None
    argmax_share: list[float] | None = None

    @classmethod
    def from_updates(cls, ups: Sequence[dict[str, Any]]) -> RoutingStats:
        """The figures of ``ups`` (read by :func:`metric_names.routing_value`)."""

        def mean(name: str) -> float | None:
            return mean_of([mn.routing_value(u, name) for u in ups])

        return cls(
            alpha_entropy=mean(mn.ALPHA_ENTROPY),
            alpha_entropy_sd=sd_of([mn.routing_value(u, mn.ALPHA_ENTROPY) for u in ups]),
            alpha_entropy_std=mean(mn.ALPHA_ENTROPY_STD),
            usage_entropy=mean(mn.USAGE_ENTROPY),
            mi=mean(mn.MI),
            effective_experts=mean(mn.EFFECTIVE_EXPERTS),
            sparsity=mean(mn.SPARSITY),
            usage=mean_vectors([mn.routing_value(u, mn.USAGE) for u in ups]),
            argmax_share=mean_vectors([mn.routing_value(u, mn.ARGMAX_SHARE) for u in ups]),
        )

    def figures(self, expert_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The figures keyed by their names (what :func:`routing.verdict` and the usage plot
        read)."""
        return {
            mn.ALPHA_ENTROPY: self.alpha_entropy,
            mn.ALPHA_ENTROPY_STD: self.alpha_entropy_std,
            mn.USAGE_ENTROPY: self.usage_entropy,
            mn.MI: self.mi,
            mn.EFFECTIVE_EXPERTS: self.effective_experts,
            mn.SPARSITY: self.sparsity,
            mn.USAGE: self.usage,
            mn.ARGMAX_SHARE: self.argmax_share,
            "expert_names": None if expert_names is None else list(expert_names),
        }

    def value(self, name: str) -> float | None:
        """The mean of the scalar routing figure ``name`` (:data:`metric_names.ROUTING_SCALARS`;
        the fields are named like the figures)."""
        v = getattr(self, name, None)
        return v if isinstance(v, float) else None


# ------------------------------------------------------------------------------------ phases
@dataclass
class PhaseStats:
    """Figures of one curriculum phase: its episodes by their ``phase`` field, its routing from
    the phase's update records."""

    phase: PhaseSpan
    episodes: list[dict[str, Any]]
    updates: list[dict[str, Any]]
    score: Summary
    scores: np.ndarray
    reward_mean: float | None
    reward_std: float | None
    max_score: tuple[Any, Any] | None
    """``(score, episode)`` of the highest-scoring episode."""
    routing: RoutingStats
    temperature: tuple[float, float] | None
    routing_kind: Any
    lr: Any

    @property
    def name(self) -> str:
        """The phase name."""
        return self.phase.name

    @property
    def n(self) -> int:
        """Episodes of the phase."""
        return len(self.episodes)

    @property
    def n_updates(self) -> int:
        """Updates of the phase."""
        return len(self.updates)

    @property
    def first(self) -> Any:
        """First episode number (``None`` without episodes)."""
        return self.episodes[0].get("episode") if self.episodes else None

    @property
    def last(self) -> Any:
        """Last episode number (``None`` without episodes)."""
        return self.episodes[-1].get("episode") if self.episodes else None


def _phase_stats(ph: PhaseSpan, run: RunData, opts: ReportOptions) -> PhaseStats:
    """:class:`PhaseStats` of one phase."""
    eps = [e for e in run.episodes if str(e.get("phase")) == ph.name]
    ups = [u for u in run.updates if str(u.get("phase")) == ph.name]
    scores = finite([e.get("score") for e in eps])
    score = summarize_scores(
        scores,
        died=finite([e.get("died") for e in eps if e.get("died") is not None]) if eps else None,
        depth=finite([e.get("depth") for e in eps]) if eps else None,
        length=finite([e.get("length") for e in eps]) if eps else None,
        n_resamples=opts.n_resamples,
        seed=opts.seed,
        ci=len(eps) > 1,
    )
    best = None
    if eps:
        i = int(np.argmax([score_key(e.get("score")) for e in eps]))
        best = (eps[i].get("score"), eps[i].get("episode"))
    return PhaseStats(
        phase=ph,
        episodes=eps,
        updates=ups,
        score=score,
        scores=scores,
        reward_mean=mean_of([e.get("reward") for e in eps]),
        reward_std=sd_of([e.get("reward") for e in eps]),
        max_score=best,
        routing=RoutingStats.from_updates(ups),
        temperature=temperature_range(ups) or temperature_range(eps),
        routing_kind=most_common([u.get("routing") for u in ups + eps]),
        lr=most_common([u.get("lr") for u in ups]),
    )


def phase_stats(run: RunData, opts: ReportOptions | None = None) -> list[PhaseStats]:
    """Per-phase figures, in phase order. Score std is the sample std (ddof=1) over the phase's
    episodes; the alpha entropy ``mean ± std`` is over its update records (std ddof=1)."""
    return [_phase_stats(ph, run, opts or ReportOptions()) for ph in run.phases]


# ------------------------------------------------------------------------------------ segments
@dataclass(frozen=True)
class SegmentStats:
    """Figures of the episodes ``(lo, hi]`` by episode number and the updates logged then."""

    lo: int
    hi: int
    phases: list[str]
    n: int
    mean: float | None
    std: float | None
    max: float | None
    reward: float | None
    died: float | None
    depth: float | None
    routing: RoutingStats
    temperature: tuple[float, float] | None


def segment_stats(run: RunData, segment: int = 500) -> list[SegmentStats]:
    """Figures per block of ``segment`` episodes ``(k·seg, (k+1)·seg]`` by episode number."""
    if not run.episodes or segment <= 0:
        return []
    last = max(int(e.get("episode", 0) or 0) for e in run.episodes)
    out = []
    for k in range(max(1, math.ceil(last / segment))):
        lo, hi = k * segment, (k + 1) * segment
        eps = [e for e in run.episodes if lo < int(e.get("episode", 0) or 0) <= hi]
        ups = [u for u in run.updates if lo < int(u.get("episode", 0) or 0) <= hi]
        if not eps and not ups:
            continue
        scores = finite([e.get("score") for e in eps])
        out.append(
            SegmentStats(
                lo=lo,
                hi=hi,
                phases=list(dict.fromkeys(str(e.get("phase")) for e in eps)),
                n=len(eps),
                mean=float(scores.mean()) if scores.size else None,
                std=sd_of(scores.tolist()),
                max=float(scores.max()) if scores.size else None,
                reward=mean_of([e.get("reward") for e in eps]),
                died=mean_of([e.get("died") for e in eps]),
                depth=mean_of([e.get("depth") for e in eps]),
                routing=RoutingStats.from_updates(ups),
                temperature=temperature_range(ups if ups else eps),
            )
        )
    return out


# ------------------------------------------------------------------------------------ stability
@dataclass(frozen=True)
class StabilityCounts:
    """Counts of the stability events of a run."""

    worker_restarts: int
    """The ``count`` of ``worker_restart`` events (1 each without it)."""
    dropped_episodes: int
    """The larger of the ``dropped_episode`` events (with their ``count``) and the largest
    ``dropped_total`` carried by any event."""
    nonfinite_skip_events: int
    skipped_updates: int
    """Update records with ``skipped``."""
    interrupted: int
    resumed: int


def _count(e: dict[str, Any]) -> int:
    c = e.get("count", 1)
    return int(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else 1


def stability_counts(run: RunData) -> StabilityCounts:
    """:class:`StabilityCounts` of the run's event and update records."""
    by: dict[str, list[dict[str, Any]]] = {}
    for e in run.events:
        by.setdefault(str(e.get("kind")), []).append(e)
    dropped_events = sum(_count(e) for e in by.get("dropped_episode", []))
    totals = [e.get("dropped_total") for e in run.events]
    dropped_total = max((int(t) for t in totals if isinstance(t, (int, float))), default=0)
    return StabilityCounts(
        worker_restarts=sum(_count(e) for e in by.get("worker_restart", [])),
        dropped_episodes=max(dropped_events, dropped_total),
        nonfinite_skip_events=len(by.get("nonfinite_skip", [])),
        skipped_updates=sum(1 for u in run.updates if u.get("skipped")),
        interrupted=len(by.get("interrupted", [])),
        resumed=len(by.get("resumed", [])),
    )


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
        return finite([e.get("score") for e in self.run.episodes])

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
