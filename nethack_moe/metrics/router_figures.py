"""The router's verdict figures: scenario information, reliance, the hint and the interventions.

Each is a frozen record of the numbers one decision of the verdict is made from
(:mod:`nethack_moe.metrics.verdict`), with its ``to_json``/``from_json``: the scenario information
against the stricter of its two nulls (:func:`stricter_null`), the router's reliance on each input,
the score change with the hint zeroed, the per-scenario rankings of the forced experts and their
reading (:class:`InterventionReading`, with each expert's own scenario from :func:`own_scenarios`),
and the thresholds those decisions use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.paired import PairedDiff, _by_seed, _float, _floats, _ints

#: Share of H(scenario) that the scenario information must reach to count as routing by scenario.
MIN_SCENARIO_SHARE = 0.05


#: Share of states whose argmax expert must change without an input for the router to use it.
MIN_RELIANCE = 0.05


#: Names of the two nulls of the scenario information.
PERMUTATION_NULL = "permutation"


SHIFT_NULL = "within-episode shift"


#: Own-scenario sources of :class:`InterventionReading`.
OWN_FROM_ROUTER = "router"


OWN_FROM_NAMES = "names"


#: Expert statuses of :meth:`InterventionReading.status`.
SPECIALISED = "specialised"


NOT_SPECIALISED = "not specialised"


UNDETERMINED = "undetermined"


# ------------------------------------------------------------------------------ scenario information
@dataclass(frozen=True)
class NullChoice:
    """The null a scenario-information decision is made against."""

    name: str
    """:data:`PERMUTATION_NULL` or :data:`SHIFT_NULL`."""
    p95: float
    p_value: float | None


def stricter_null(
    shuffled_p95: float,
    p_value: float | None,
    shifted_p95: float | None,
    shifted_p_value: float | None,
) -> NullChoice:
    """The null with the higher p95 (the within-episode shifts on a tie), with its own p-value."""
    if shifted_p95 is not None and shifted_p95 >= shuffled_p95:
        return NullChoice(SHIFT_NULL, shifted_p95, shifted_p_value)
    return NullChoice(PERMUTATION_NULL, shuffled_p95, p_value)


@dataclass(frozen=True)
class ScenarioInformation:
    """I(argmax expert; a state label) next to its permutation baselines: the scenario label, or
    the teacher's branch (:class:`TeacherFigures`)."""

    mi: float
    """Nats."""
    scenario_entropy: float
    """H(label) of the same states, nats."""
    shuffled_mean: float
    shuffled_p95: float
    p_value: float
    """``(1 + #{permuted >= mi}) / (1 + permutations)``."""
    permutations: int
    n_states: int
    shifted_p95: float | None = None
    """p95 under circular shifts of the argmax sequence within each episode (``None`` without
    episode ids)."""
    shifted_p_value: float | None = None

    @property
    def normalized(self) -> float | None:
        """``mi / H(scenario)`` (``None`` when every state has the same scenario)."""
        return self.mi / self.scenario_entropy if self.scenario_entropy > 0 else None

    @property
    def null(self) -> NullChoice:
        """The stricter of the two nulls (:func:`stricter_null`)."""
        return stricter_null(self.shuffled_p95, self.p_value, self.shifted_p95,
                             self.shifted_p_value)  # fmt: skip

    @property
    def baseline_p95(self) -> float:
        """The p95 of the stricter null."""
        return self.null.p95

    @property
    def above_baseline(self) -> bool:
        """Above the p95 of every baseline that was computed."""
        return self.mi > self.baseline_p95

    def to_json(self, label: str = "scenario") -> dict[str, Any]:
        """The ``specialization`` block of ``analysis.json`` (and of an evaluation summary), keyed
        ``scenario_mi``, ``scenario_mi_shuffled_p95`` ...; with ``label="branch"`` the same figures
        of the ``teacher`` block (``branch_mi``, ``branch_mi_shuffled_p95`` ...)."""
        null = self.null
        mi = f"{label}_mi"
        return {
            mi: self.mi,
            f"{mi}_normalized": self.normalized,
            f"{label}_entropy": self.scenario_entropy,
            f"{mi}_shuffled_mean": self.shuffled_mean,
            f"{mi}_shuffled_p95": self.shuffled_p95,
            f"{mi}_p_value": self.p_value,
            f"{mi}_shifted_p95": self.shifted_p95,
            f"{mi}_shifted_p_value": self.shifted_p_value,
            f"{mi}_null": null.name,
            f"{mi}_null_p95": null.p95,
            f"{mi}_null_p_value": null.p_value,
            "permutations": self.permutations,
            "n_states": self.n_states,
            "above_baseline": self.above_baseline,
        }

    @classmethod
    def from_json(cls, d: Any, label: str = "scenario") -> ScenarioInformation | None:
        """The figures of a ``specialization`` block (or, ``label="branch"``, of a ``teacher``
        block); ``None`` without the figure and its permutation baseline. The stored decision keys
        (``above_baseline``, ``*_mi_null*``) are not read: they are recomputed."""
        if not isinstance(d, Mapping):
            return None
        k = f"{label}_mi"
        mi, p95 = _float(d.get(k)), _float(d.get(f"{k}_shuffled_p95"))
        if mi is None or p95 is None:
            return None
        h = _float(d.get(f"{label}_entropy"))
        share = _float(d.get(f"{k}_normalized"))
        if h is None:
            h = mi / share if share else 0.0
        p = _float(d.get(f"{k}_p_value"))
        return cls(
            mi=mi,
            scenario_entropy=h,
            shuffled_mean=_float(d.get(f"{k}_shuffled_mean")) or 0.0,
            shuffled_p95=p95,
            p_value=math.nan if p is None else p,
            permutations=int(d.get("permutations") or 0),
            n_states=int(d.get("n_states") or 0),
            shifted_p95=_float(d.get(f"{k}_shifted_p95")),
            shifted_p_value=_float(d.get(f"{k}_shifted_p_value")),
        )


# ------------------------------------------------------------------------------ reliance
@dataclass(frozen=True)
class RelianceFigure:
    """What changes when one input of the heads is replaced (PROTOCOL.md, graph reliance)."""

    replacement: str
    argmax_change: float
    """Share of states whose argmax expert changes (0 for a single-expert model)."""
    policy_kl: float
    """Mean KL(π || π_replaced) over the states, nats."""
    n_states: int
    alpha_change: float = 0.0
    """Mean total variation ½|α − α_replaced|₁ over the states: how much the weights move, also
    where the argmax flips on a near-tie."""
    mean_score: float | None = None
    """Mean score of the policy playing with the replacement (probes)."""
    baseline_mean_score: float | None = None
    """Mean score of the unedited policy on the same seeds."""
    episodes: int = 0
    seeds: tuple[int, ...] = ()
    """The probe seeds, in order."""
    scores: tuple[float | None, ...] = ()
    """Per seed: the score with the replacement."""
    baseline_scores: tuple[float | None, ...] = ()
    """Per seed: the score of the unedited policy."""

    @property
    def score_diff(self) -> PairedDiff | None:
        """Score with the replacement minus without, paired over the seeds, with its CI (``None``
        until played)."""
        if not self.seeds or len(self.scores) != len(self.seeds):
            return None
        if len(self.baseline_scores) != len(self.seeds):
            return None
        return PairedDiff.of(
            _by_seed(self.seeds, self.baseline_scores), _by_seed(self.seeds, self.scores)
        )

    @property
    def score_change(self) -> float | None:
        """``mean_score - baseline_mean_score`` (``None`` until played)."""
        if self.mean_score is None or self.baseline_mean_score is None:
            return None
        return self.mean_score - self.baseline_mean_score

    def to_json(self) -> dict[str, Any]:
        """One entry of the ``reliance`` block."""
        sd = self.score_diff
        return {
            mn.ARGMAX_CHANGE: self.argmax_change,
            "policy_kl": self.policy_kl,
            "alpha_change": self.alpha_change,
            "n_states": self.n_states,
            "mean_score": self.mean_score,
            "baseline_mean_score": self.baseline_mean_score,
            "score_change": self.score_change,
            mn.SCORE_CHANGE_CI: list(sd.ci) if sd and sd.ci else None,
            "episodes": self.episodes,
            "seeds": list(self.seeds),
            "scores": list(self.scores),
            "baseline_scores": list(self.baseline_scores),
        }

    @classmethod
    def from_json(cls, name: str, d: Any) -> RelianceFigure | None:
        """An entry of a ``reliance`` block (``None`` for the entry of an input the model lacks)."""
        if not isinstance(d, Mapping) or _float(d.get(mn.ARGMAX_CHANGE)) is None:
            return None
        return cls(
            replacement=name,
            argmax_change=float(d[mn.ARGMAX_CHANGE]),
            policy_kl=_float(d.get("policy_kl")) or 0.0,
            n_states=int(d.get("n_states") or 0),
            alpha_change=_float(d.get("alpha_change")) or 0.0,
            mean_score=_float(d.get("mean_score")),
            baseline_mean_score=_float(d.get("baseline_mean_score")),
            episodes=int(d.get("episodes") or 0),
            seeds=_ints(d.get("seeds")),
            scores=_floats(d.get("scores")),
            baseline_scores=_floats(d.get("baseline_scores")),
        )


# ------------------------------------------------------------------------------ hint reliance
@dataclass(frozen=True)
class HintReliance:
    """How much of the policy is the navigation hint (PROTOCOL.md, hint reliance)."""

    follow_share: float | None
    """Share of the steps with a hint on which the policy took the hinted move."""
    hinted_steps: int
    policy_mean_score: float | None = None
    """The policy on the probe seeds (the baseline of the two figures below)."""
    zeroed_mean_score: float | None = None
    """The policy with the hint inputs (``nav_*``) zeroed, same seeds."""
    follower_mean_score: float | None = None
    follower_follow_share: float | None = None
    random_mean_score: float | None = None
    episodes: int = 0
    seeds: tuple[int, ...] = ()
    """The probe seeds, in order; the per-seed scores below follow them."""
    policy_scores: tuple[float | None, ...] = ()
    zeroed_scores: tuple[float | None, ...] = ()
    follower_scores: tuple[float | None, ...] = ()
    random_scores: tuple[float | None, ...] = ()

    def _diff(self, other: tuple[float | None, ...]) -> PairedDiff | None:
        n = len(self.seeds)
        if not n or len(self.policy_scores) != n or len(other) != n:
            return None
        return PairedDiff.of(_by_seed(self.seeds, self.policy_scores), _by_seed(self.seeds, other))

    @property
    def zeroed_diff(self) -> PairedDiff | None:
        """Score with the hint zeroed minus the policy's, paired over the seeds."""
        return self._diff(self.zeroed_scores)

    @property
    def follower_diff(self) -> PairedDiff | None:
        """The hint follower's score minus the policy's, paired over the seeds."""
        return self._diff(self.follower_scores)

    def to_json(self) -> dict[str, Any]:
        """The ``hint`` block."""
        zd, fd = self.zeroed_diff, self.follower_diff
        return {
            mn.FOLLOW_SHARE: self.follow_share,
            "hinted_steps": self.hinted_steps,
            "policy_mean_score": self.policy_mean_score,
            "zeroed_mean_score": self.zeroed_mean_score,
            "follower_mean_score": self.follower_mean_score,
            "follower_follow_share": self.follower_follow_share,
            "random_mean_score": self.random_mean_score,
            "episodes": self.episodes,
            "zeroed_score_change": zd.to_json() if zd else None,
            "follower_score_change": fd.to_json() if fd else None,
            "seeds": list(self.seeds),
            "policy_scores": list(self.policy_scores),
            "zeroed_scores": list(self.zeroed_scores),
            "follower_scores": list(self.follower_scores),
            "random_scores": list(self.random_scores),
        }

    @classmethod
    def from_json(cls, d: Any) -> HintReliance | None:
        if not isinstance(d, Mapping):
            return None
        return cls(
            follow_share=_float(d.get(mn.FOLLOW_SHARE)),
            hinted_steps=int(d.get("hinted_steps") or 0),
            policy_mean_score=_float(d.get("policy_mean_score")),
            zeroed_mean_score=_float(d.get("zeroed_mean_score")),
            follower_mean_score=_float(d.get("follower_mean_score")),
            follower_follow_share=_float(d.get("follower_follow_share")),
            random_mean_score=_float(d.get("random_mean_score")),
            episodes=int(d.get("episodes") or 0),
            seeds=_ints(d.get("seeds")),
            policy_scores=_floats(d.get("policy_scores")),
            zeroed_scores=_floats(d.get("zeroed_scores")),
            follower_scores=_floats(d.get("follower_scores")),
            random_scores=_floats(d.get("random_scores")),
        )


# ------------------------------------------------------------------------------ interventions
@dataclass(frozen=True)
class ScenarioRanking:
    """The forced experts ranked by one scenario's outcome."""

    scenario: str
    outcome: str
    """The outcome's key (``hp_lost_per_step``, ``kills_per_combat_state``, ...)."""
    higher_is_better: bool
    point_best: str | None
    """The expert with the best outcome (``None``: no values, or a tie)."""
    margins: dict[str, PairedDiff] = field(default_factory=dict)
    """For every other expert: how much better the point best is, paired over the seeds both
    played (positive = the point best is better, whatever the outcome's direction)."""

    @property
    def determined(self) -> bool:
        """The point best's CI against every other expert lies above 0."""
        return (
            self.point_best is not None
            and bool(self.margins)
            and all(m.sign > 0 for m in self.margins.values())
        )

    @property
    def best(self) -> str | None:
        """The best expert when determined, else ``None``."""
        return self.point_best if self.determined else None

    def beaten(self, expert: str) -> bool:
        """Another expert (the point best) is better than ``expert`` with a CI above 0."""
        m = self.margins.get(expert)
        return self.point_best not in (None, expert) and m is not None and m.sign > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "higher_is_better": self.higher_is_better,
            "point_best": self.point_best,
            "margins": {e: m.to_json() for e, m in self.margins.items()},
        }

    @classmethod
    def from_json(cls, scenario: str, d: Any) -> ScenarioRanking | None:
        if not isinstance(d, Mapping):
            return None
        margins = {
            str(e): m
            for e, v in (d.get("margins") or {}).items()
            if (m := PairedDiff.from_json(v)) is not None
        }
        pb = d.get("point_best")
        return cls(scenario, str(d.get("outcome")), bool(d.get("higher_is_better", True)),
                   None if pb is None else str(pb), margins)  # fmt: skip


@dataclass(frozen=True)
class InterventionReading:
    """The forced experts ranked per scenario (with paired CIs), and each expert's own scenario."""

    rankings: dict[str, ScenarioRanking]
    own_scenario: dict[str, str | None]
    """Expert -> its own scenario (``None``: the router gives it weight nowhere)."""
    own_source: str
    """:data:`OWN_FROM_ROUTER` (the heatmap's column maximum; the routing prior was off) or
    :data:`OWN_FROM_NAMES` (the routing prior was on: names bind experts to scenarios)."""

    @property
    def best(self) -> dict[str, str | None]:
        """Scenario -> the determined best expert (``None``: undetermined)."""
        return {s: r.best for s, r in self.rankings.items()}

    def status(self, expert: str) -> str:
        """:data:`SPECIALISED` (the determined best in its own scenario and the point best in no
        other), :data:`NOT_SPECIALISED` (another expert is better in its own scenario, or it is the
        determined best elsewhere), else :data:`UNDETERMINED`."""
        own = self.own_scenario.get(expert)
        mine = self.rankings.get(own) if own is not None else None
        if mine is None:
            return UNDETERMINED
        others = [r for s, r in self.rankings.items() if s != own]
        if any(r.best == expert for r in others) or mine.beaten(expert):
            return NOT_SPECIALISED
        if mine.best == expert and not any(r.point_best == expert for r in others):
            return SPECIALISED
        return UNDETERMINED

    def experts_with(self, status: str) -> list[str]:
        return [e for e in self.own_scenario if self.status(e) == status]

    def to_json(self) -> dict[str, Any]:
        """The ``interventions_reading`` block. ``best_expert`` and the status lists are derived
        from the rankings; readers recompute them."""
        return {
            "own_scenario": dict(self.own_scenario),
            "own_scenario_source": self.own_source,
            "rankings": {s: r.to_json() for s, r in self.rankings.items()},
            "best_expert": self.best,
            SPECIALISED: self.experts_with(SPECIALISED),
            "not_specialised": self.experts_with(NOT_SPECIALISED),
            UNDETERMINED: self.experts_with(UNDETERMINED),
        }

    @classmethod
    def from_json(cls, d: Any) -> InterventionReading | None:
        """The reading of a stored block. A block written before the rankings were stored (no
        per-seed figures) reads with no rankings: every expert undetermined."""
        if not isinstance(d, Mapping):
            return None
        rankings = {
            str(s): r
            for s, v in (d.get("rankings") or {}).items()
            if (r := ScenarioRanking.from_json(str(s), v)) is not None
        }
        own = {
            str(e): (None if s is None else str(s))
            for e, s in (d.get("own_scenario") or {}).items()
        }
        return cls(rankings, own, str(d.get("own_scenario_source") or OWN_FROM_ROUTER))


def own_scenarios(
    table: Mapping[str, Any], expert_names: Sequence[str], prior_on: bool
) -> tuple[dict[str, str | None], str]:
    """Each expert's own scenario and where it comes from.

    With the routing prior on, an expert named after a scenario owns it (the prior binds names);
    otherwise (and for the other names) its own scenario is the heatmap's column maximum: the
    scenario in which the learned router gives it the highest mean α (``table``: a
    :func:`nethack_moe.metrics.routing.scenario_table`).
    """
    scen = [str(s) for s in table.get("scenarios") or []]
    rows = table.get("mean_alpha") or []
    experts = [str(e) for e in table.get("experts") or expert_names]
    out: dict[str, str | None] = {}
    for name in expert_names:
        if prior_on and name in scen:
            out[name] = name
            continue
        j = experts.index(name) if name in experts else None
        col = [
            (float(r[j]), s)
            for s, r in zip(scen, rows, strict=False)
            if r is not None and j is not None and j < len(r)
        ]
        out[name] = max(col)[1] if col and max(col)[0] > 0 else None
    return out, (OWN_FROM_NAMES if prior_on else OWN_FROM_ROUTER)
