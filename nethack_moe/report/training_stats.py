"""The statistics of a run's training records, as typed records: :class:`PhaseStats` per
curriculum phase, :class:`SegmentStats` per block of episodes (each with its
:class:`RoutingStats`), :class:`StabilityCounts`; the small number helpers the report's sections
share, and :class:`ReportOptions` (how the report cuts and resamples).

They read the :class:`~nethack_moe.runs.metrics_io.RunData` of :func:`~nethack_moe.runs.metrics_io.
load_run` (its episode, update and event records); :mod:`nethack_moe.report.data` puts them
together with the evaluations into the report's data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.stats import Summary, summarize_scores
from nethack_moe.runs.metrics_io import PhaseSpan, RunData
from nethack_moe.runs.records import EpisodeLine, EventLine, UpdateLine


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


def temperature_range(values: Sequence[Any]) -> tuple[float, float] | None:
    """Lowest and highest of the temperatures ``values`` (``None`` without any)."""
    t = finite(values)
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
    def from_updates(cls, ups: Sequence[UpdateLine]) -> RoutingStats:
        """The figures of ``ups`` (read by :meth:`UpdateLine.routing_value`)."""

        def mean(name: str) -> float | None:
            return mean_of([u.routing_value(name) for u in ups])

        return cls(
            alpha_entropy=mean(mn.ALPHA_ENTROPY),
            alpha_entropy_sd=sd_of([u.routing_value(mn.ALPHA_ENTROPY) for u in ups]),
            alpha_entropy_std=mean(mn.ALPHA_ENTROPY_STD),
            usage_entropy=mean(mn.USAGE_ENTROPY),
            mi=mean(mn.MI),
            effective_experts=mean(mn.EFFECTIVE_EXPERTS),
            sparsity=mean(mn.SPARSITY),
            usage=mean_vectors([u.routing_value(mn.USAGE) for u in ups]),
            argmax_share=mean_vectors([u.routing_value(mn.ARGMAX_SHARE) for u in ups]),
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
    episodes: list[EpisodeLine]
    updates: list[UpdateLine]
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
        return self.episodes[0].episode if self.episodes else None

    @property
    def last(self) -> Any:
        """Last episode number (``None`` without episodes)."""
        return self.episodes[-1].episode if self.episodes else None


def _phase_stats(ph: PhaseSpan, run: RunData, opts: ReportOptions) -> PhaseStats:
    """:class:`PhaseStats` of one phase."""
    eps = [e for e in run.episodes if str(e.phase) == ph.name]
    ups = [u for u in run.updates if str(u.phase) == ph.name]
    scores = finite([e.score for e in eps])
    score = summarize_scores(
        scores,
        died=finite([e.died for e in eps if e.died is not None]) if eps else None,
        depth=finite([e.depth for e in eps]) if eps else None,
        length=finite([e.length for e in eps]) if eps else None,
        n_resamples=opts.n_resamples,
        seed=opts.seed,
        ci=len(eps) > 1,
    )
    best = None
    if eps:
        i = int(np.argmax([score_key(e.score) for e in eps]))
        best = (eps[i].score, eps[i].episode)
    return PhaseStats(
        phase=ph,
        episodes=eps,
        updates=ups,
        score=score,
        scores=scores,
        reward_mean=mean_of([e.reward for e in eps]),
        reward_std=sd_of([e.reward for e in eps]),
        max_score=best,
        routing=RoutingStats.from_updates(ups),
        temperature=temperature_range([u.temperature for u in ups])
        or temperature_range([e.temperature for e in eps]),
        routing_kind=most_common([u.routing for u in ups] + [e.routing for e in eps]),
        lr=most_common([u.lr for u in ups]),
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
    last = max(int(e.episode or 0) for e in run.episodes)
    out = []
    for k in range(max(1, math.ceil(last / segment))):
        lo, hi = k * segment, (k + 1) * segment
        eps = [e for e in run.episodes if lo < int(e.episode or 0) <= hi]
        ups = [u for u in run.updates if lo < int(u.episode or 0) <= hi]
        if not eps and not ups:
            continue
        scores = finite([e.score for e in eps])
        temps = [u.temperature for u in ups] if ups else [e.temperature for e in eps]
        out.append(
            SegmentStats(
                lo=lo,
                hi=hi,
                phases=list(dict.fromkeys(str(e.phase) for e in eps)),
                n=len(eps),
                mean=float(scores.mean()) if scores.size else None,
                std=sd_of(scores.tolist()),
                max=float(scores.max()) if scores.size else None,
                reward=mean_of([e.reward for e in eps]),
                died=mean_of([e.died for e in eps]),
                depth=mean_of([e.depth for e in eps]),
                routing=RoutingStats.from_updates(ups),
                temperature=temperature_range(temps),
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


def stability_counts(run: RunData) -> StabilityCounts:
    """:class:`StabilityCounts` of the run's event and update records."""
    by: dict[str, list[EventLine]] = {}
    for e in run.events:
        by.setdefault(str(e.kind), []).append(e)
    dropped_events = sum(e.count for e in by.get("dropped_episode", []))
    totals = [e.dropped_total for e in run.events]
    dropped_total = max((t for t in totals if t is not None), default=0)
    return StabilityCounts(
        worker_restarts=sum(e.count for e in by.get("worker_restart", [])),
        dropped_episodes=max(dropped_events, dropped_total),
        nonfinite_skip_events=len(by.get("nonfinite_skip", [])),
        skipped_updates=sum(1 for u in run.updates if u.skipped),
        interrupted=len(by.get("interrupted", [])),
        resumed=len(by.get("resumed", [])),
    )
