"""The specialization verdict, built from stored numbers whenever it is read.

Evaluation entries and ``analysis.json`` store figures, never sentences. Every reader (``evaluate``
and ``analyze`` as they print, ``analysis.md``, the report, ``compare``) reads the figures back into
a :class:`VerdictFigures` (:meth:`VerdictFigures.from_json`) and calls
:func:`specialization_verdict`, the one function that writes the text. A file written before this
module that still carries a ``verdict`` sentence is read the same way: the sentence is ignored.

The decisions, each from its numbers:

* **scenario information** counts only above the p95 of the stricter of its two nulls
  (:func:`stricter_null`: permutations across states, and circular shifts within episodes when the
  state log had episode ids); the sentence names that null and prints *its* p-value;
* **reliance**: the router *uses* an input when replacing it by its mean changes the argmax expert
  in at least :data:`MIN_RELIANCE` of the states, and *ignores* it otherwise; with no reliance
  figures (``reliance_measured`` false, e.g. a greedy run beside a sampled one) nothing is said
  about what the router routes on ("not measured");
* **a score change** (an input replaced while playing, the hint zeroed, a forced expert against
  another) is a paired difference over the same seeds with its bootstrap CI
  (:class:`PairedDiff`); it is a finding only when the CI excludes 0;
* **interventions**: in each scenario the forced expert with the best outcome is *the* best only
  when its paired CI against every other expert excludes 0 (:class:`ScenarioRanking`); an expert
  is specialised when it is the best in its own scenario and in no other. Its own scenario is the
  one the learned router gives it the most weight in (the heatmap's column maximum) unless the
  routing prior was on, which binds names to scenarios (PROTOCOL.md, "Specialization figures").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nethack_moe.core.formatting import MISSING, num, pct
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.stats import paired_diff_ci

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


def _float(v: Any) -> float | None:
    """``v`` as a finite float; ``None`` when missing, not a number or not finite."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ------------------------------------------------------------------------------ paired differences
@dataclass(frozen=True)
class PairedDiff:
    """``mean(b - a)`` over the seeds both sides played, with its bootstrap CI
    (:func:`nethack_moe.metrics.stats.paired_diff_ci`)."""

    diff: float | None
    ci: tuple[float, float] | None
    """``None``: no interval (fewer than 2 pairs, or the bootstrap failed)."""
    n: int
    """Seeds in the pairs."""

    @classmethod
    def of(
        cls,
        a: Mapping[int, float | None],
        b: Mapping[int, float | None],
        *,
        n_resamples: int = 2000,
        seed: int = 0,
    ) -> PairedDiff:
        """The difference of per-seed values ``b[s] - a[s]`` over the seeds where both have a
        finite value (in seed order)."""

        common = sorted(
            s for s in set(a) & set(b) if _float(a[s]) is not None and _float(b[s]) is not None
        )
        if not common:
            return cls(None, None, 0)
        x = [float(a[s]) for s in common]  # type: ignore[arg-type]
        y = [float(b[s]) for s in common]  # type: ignore[arg-type]
        d, ci = paired_diff_ci(x, y, n_resamples=n_resamples, seed=seed)
        return cls(_float(d), _interval(ci) if len(common) >= 2 else None, len(common))

    @property
    def sign(self) -> int:
        """+1 when the CI lies above 0, -1 below, 0 when it contains 0 or there is none."""
        if self.ci is None:
            return 0
        lo, hi = self.ci
        return 1 if lo > 0 else (-1 if hi < 0 else 0)

    def text(self, nd: int = 1) -> str:
        """``+3.0 [1.0, 5.0]``, ``+3.0 (no CI)``, or ``–``."""
        if self.diff is None:
            return MISSING
        d = f"{self.diff:+.{nd}f}"
        if self.ci is None:
            return f"{d} (no CI)"
        return f"{d} [{self.ci[0]:+.{nd}f}, {self.ci[1]:+.{nd}f}]"

    def to_json(self) -> dict[str, Any]:
        return {"diff": self.diff, "ci": list(self.ci) if self.ci else None, "n": self.n}

    @classmethod
    def from_json(cls, d: Any) -> PairedDiff | None:
        if not isinstance(d, Mapping):
            return None
        return cls(_float(d.get("diff")), _interval(d.get("ci")), int(d.get("n") or 0))


def _interval(ci: Any) -> tuple[float, float] | None:
    """``[lo, hi]`` as a tuple of finite floats; ``None`` for a missing or failed interval."""
    if ci is None or isinstance(ci, (str, bytes)):
        return None
    try:
        lo, hi = ci
    except (TypeError, ValueError):
        return None
    flo, fhi = _float(lo), _float(hi)
    return None if flo is None or fhi is None else (flo, fhi)


def _by_seed(seeds: Sequence[int], values: Sequence[float | None]) -> dict[int, float | None]:
    return {int(s): (None if v is None else float(v)) for s, v in zip(seeds, values, strict=True)}


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else ()


def _floats(v: Any) -> tuple[float | None, ...]:
    return tuple(_float(x) for x in v) if isinstance(v, (list, tuple)) else ()


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


# ------------------------------------------------------------------------------ teacher's branches
#: Outcome name of the per-branch rankings: π(the teacher's action) on the branch's states.
TEACHER_PROB = "teacher_action_prob"
#: Key of the overall agreement in the ``agreement`` block (the others are branch names).
ALL_STATES = "all"
#: A forced expert is *the* best in a branch when its paired CI against every other expert lies
#: above 0 (as for the scenario rankings) and every margin is at least this much π(teacher's
#: action), one percentage point: smaller gaps are ties in practice (an untrained policy's
#: experts differ by 1e-5, consistently enough for a CI to exclude 0).
MIN_TEACHER_MARGIN = 0.01


@dataclass(frozen=True)
class Agreement:
    """How often the student's action is the teacher's on a set of states."""

    n_states: int
    taken: float | None
    """Share of the states whose action taken in the run (sampled or greedy, as played) is the
    teacher's (``None``: no state)."""
    argmax: float | None = None
    """Share of the sampled states (:attr:`argmax_states`) whose argmax of π is the teacher's
    action: greedy choice on the states the run visited (``None``: not measured)."""
    argmax_states: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"n_states": self.n_states, "taken": self.taken, "argmax": self.argmax,
                "argmax_states": self.argmax_states}  # fmt: skip

    @classmethod
    def from_json(cls, d: Any) -> Agreement | None:
        if not isinstance(d, Mapping):
            return None
        return cls(int(d.get("n_states") or 0), _float(d.get("taken")), _float(d.get("argmax")),
                   int(d.get("argmax_states") or 0))  # fmt: skip


@dataclass(frozen=True)
class BranchIntervention:
    """On the states of one teacher branch: π(teacher's action) with the learned router and with
    the router forced to each expert (one-hot α), each a mean over seeds of per-seed means."""

    branch: str
    n_states: int
    router_prob: float | None
    expert_prob: dict[str, float | None]
    gain: dict[str, PairedDiff]
    """Expert -> forced minus learned router, paired over the seeds, with its CI."""
    ranking: ScenarioRanking
    """The expert with the highest π(teacher's action) and its paired margin over each other; it
    is *the* best only when every margin's CI lies above 0 (:attr:`ScenarioRanking.best`)."""

    @property
    def best(self) -> str | None:
        """The point best when its CIs against every other expert lie above 0 and every margin
        is at least :data:`MIN_TEACHER_MARGIN`; else ``None`` (undetermined)."""
        b = self.ranking.best
        if b is None or not self.wide:
            return None
        return b

    @property
    def wide(self) -> bool:
        """Every margin of the point best is at least :data:`MIN_TEACHER_MARGIN`."""
        return all(
            m.diff is not None and m.diff >= MIN_TEACHER_MARGIN
            for m in self.ranking.margins.values()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "n_states": self.n_states,
            "router_prob": self.router_prob,
            "expert_prob": dict(self.expert_prob),
            "gain": {e: g.to_json() for e, g in self.gain.items()},
            "point_best": self.ranking.point_best,
            "margins": {e: m.to_json() for e, m in self.ranking.margins.items()},
            "best": self.best,
        }

    @classmethod
    def from_json(cls, branch: str, d: Any) -> BranchIntervention | None:
        """A stored entry; ``best`` is recomputed from the margins."""
        if not isinstance(d, Mapping):
            return None
        rk = ScenarioRanking.from_json(
            branch, {"outcome": TEACHER_PROB, "higher_is_better": True,
                     "point_best": d.get("point_best"), "margins": d.get("margins")},
        )  # fmt: skip
        assert rk is not None
        gain = {
            str(e): g for e, v in (d.get("gain") or {}).items()
            if (g := PairedDiff.from_json(v)) is not None
        }  # fmt: skip
        probs = {str(e): _float(v) for e, v in (d.get("expert_prob") or {}).items()}
        return cls(branch, int(d.get("n_states") or 0), _float(d.get("router_prob")), probs, gain,
                   rk)  # fmt: skip


@dataclass(frozen=True)
class TeacherFigures:
    """The figures against the scripted teacher's branches (issue 18; PROTOCOL.md, "branch
    information"), on the states of one run played with ``env.teacher``: the ``teacher`` block."""

    n_states: int
    """States with the teacher's advice."""
    actions: str
    """``sampled`` or ``greedy``: how the run chose the actions that :class:`Agreement` reads."""
    branch_counts: dict[str, int]
    agreement: dict[str, Agreement]
    """:data:`ALL_STATES` and each branch with states."""
    information: ScenarioInformation | None = None
    """I(argmax expert; branch) with its nulls (``None``: no routing, or not measured)."""
    interventions: dict[str, BranchIntervention] | None = None
    """Branch -> the forced experts on its states (``None``: not measured)."""
    intervention_states: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {mn.BRANCH_MI: None, mn.BRANCH_MI_SHUFFLED_P95: None}
        if self.information is not None:
            out.update(self.information.to_json("branch"))
        out.update({
            "n_states": self.n_states,
            "actions": self.actions,
            "branch_counts": dict(self.branch_counts),
            mn.AGREEMENT: {k: a.to_json() for k, a in self.agreement.items()},
            mn.BRANCH_INTERVENTIONS: (
                None if self.interventions is None
                else {b: v.to_json() for b, v in self.interventions.items()}
            ),
            "intervention_states": self.intervention_states,
        })  # fmt: skip
        return out

    @classmethod
    def from_json(cls, d: Any) -> TeacherFigures | None:
        if not isinstance(d, Mapping):
            return None
        agree = {
            str(k): a for k, v in (d.get(mn.AGREEMENT) or {}).items()
            if (a := Agreement.from_json(v)) is not None
        }  # fmt: skip
        raw = d.get(mn.BRANCH_INTERVENTIONS)
        iv = None
        if isinstance(raw, Mapping):
            iv = {
                str(b): x for b, v in raw.items()
                if (x := BranchIntervention.from_json(str(b), v)) is not None
            }  # fmt: skip
        return cls(
            n_states=int(d.get("n_states") or 0),
            actions=str(d.get("actions") or "sampled"),
            branch_counts={str(k): int(v) for k, v in (d.get("branch_counts") or {}).items()},
            agreement=agree,
            information=ScenarioInformation.from_json(d, "branch"),
            interventions=iv,
            intervention_states=int(d.get("intervention_states") or 0),
        )


# ------------------------------------------------------------------------------ the figures
@dataclass(frozen=True)
class VerdictFigures:
    """Everything :func:`specialization_verdict` reads, from one evaluation summary or
    ``analysis.json``."""

    n_experts: int
    scenario: ScenarioInformation | None = None
    reliance: dict[str, RelianceFigure | None] | None = None
    """``None``: not measured. Otherwise every replacement measured, ``None`` for an input the
    model lacks (no ``h_graph`` in an MLP-MoE)."""
    hint: HintReliance | None = None
    reading: InterventionReading | None = None
    usage_balance: float | None = None
    per_state_sharpness: float | None = None
    effective_experts: float | None = None
    teacher: TeacherFigures | None = None
    """``None``: the run had no teacher (not measured)."""

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> VerdictFigures:
        """The figures of an evaluation entry's ``summary`` or of an ``analysis.json`` object.

        ``reliance_measured`` says whether reliance was measured; without it (older files) an
        empty ``reliance`` block means "not measured". A stored ``verdict`` sentence is ignored.
        """
        rel_block = block.get(mn.RELIANCE)
        measured = block.get(mn.RELIANCE_MEASURED)
        if measured is None:
            measured = isinstance(rel_block, Mapping) and bool(rel_block)
        reliance = None
        if measured and isinstance(rel_block, Mapping):
            reliance = {str(k): RelianceFigure.from_json(str(k), v) for k, v in rel_block.items()}
        figs = block.get("figures") if isinstance(block.get("figures"), Mapping) else None
        routing = block.get(mn.ROUTING) if isinstance(block.get(mn.ROUTING), Mapping) else None
        rfig: Mapping[str, Any] = figs or routing or {}
        raw_bal = block.get("routing_balance")
        bal: Mapping[str, Any] = raw_bal if isinstance(raw_bal, Mapping) else {}
        n = block.get(mn.N_EXPERTS)
        if n is None:
            names = rfig.get("expert_names") or rfig.get(mn.USAGE) or []
            n = len(names)
        return cls(
            n_experts=int(n),
            scenario=ScenarioInformation.from_json(block.get(mn.SPECIALIZATION)),
            reliance=reliance,
            hint=HintReliance.from_json(block.get(mn.HINT)),
            reading=InterventionReading.from_json(block.get("interventions_reading")),
            usage_balance=_float(
                bal.get("usage_balance_routing_mi", mn.routing_value(rfig, mn.MI))
            ),
            per_state_sharpness=_float(
                bal.get("per_state_sharpness_alpha_entropy", rfig.get(mn.ALPHA_ENTROPY))
            ),
            effective_experts=_float(bal.get("effective_experts", rfig.get(mn.EFFECTIVE_EXPERTS))),
            teacher=TeacherFigures.from_json(block.get(mn.TEACHER)),
        )


# ------------------------------------------------------------------------------ the text
def scenario_sentence(s: ScenarioInformation) -> str:
    """The scenario information against the stricter null, with that null's p-value."""
    share = s.normalized
    null = s.null
    other = (
        f"; within-episode-shift p95 {s.shifted_p95:.4f}"
        if null.name == PERMUTATION_NULL and s.shifted_p95 is not None
        else (f"; permutation p95 {s.shuffled_p95:.4f}" if null.name == SHIFT_NULL else "")
    )
    head = (
        f"scenario information {s.mi:.4f} nats ({pct(share)} of H(scenario)) against its "
        f"{null.name} null (p95 {null.p95:.4f}, p = {num(null.p_value, 3)}{other})"
    )
    level = information_level(s)
    if level == "chance":
        return head + ": the expert choice carries no more scenario information than chance"
    if level == "small":
        return head + (
            f": above chance but below {100 * MIN_SCENARIO_SHARE:.0f} % of H(scenario), "
            "the experts are not split by scenario"
        )
    return head + ": the expert choice depends on the scenario"


def information_level(info: ScenarioInformation) -> str:
    """How an information figure reads against its stricter null: ``chance`` (not above its
    p95), ``small`` (above, but below :data:`MIN_SCENARIO_SHARE` of the label's entropy) or
    ``depends``. One decision for the scenario and the teacher-branch figures."""
    if not info.above_baseline:
        return "chance"
    if info.normalized is None or info.normalized < MIN_SCENARIO_SHARE:
        return "small"
    return "depends"


def reliance_verb(f: RelianceFigure) -> str:
    """``uses`` when the argmax expert changes in at least :data:`MIN_RELIANCE` of the states
    without the input, else ``ignores``."""
    return "uses" if f.argmax_change >= MIN_RELIANCE else "ignores"


def _score_text(f: RelianceFigure) -> str:
    sd = f.score_diff
    if sd is not None and sd.diff is not None:
        tail = "" if sd.sign else ", CI includes 0: undetermined"
        return f", score {sd.text()} over {sd.n} seeds{tail}"
    if f.score_change is not None:
        return f", score {f.score_change:+.1f} (no per-seed figures: no CI, not a finding)"
    return ""


def reliance_sentence(rel: Mapping[str, RelianceFigure | None]) -> tuple[str, list[str]]:
    """What replacing ``h_state`` and ``h_graph`` by their means does, and the inputs used."""
    used, parts = [], []
    for name, label in ((mn.STATE_MEAN, "h_state"), (mn.GRAPH_MEAN, "h_graph")):
        f = rel.get(name)
        if f is None:
            parts.append(f"there is no {label}")
            continue
        verb = reliance_verb(f)
        if verb == "uses":
            used.append(label)
        parts.append(
            f"it {verb} {label} (replaced by its mean: argmax expert changes in "
            f"{pct(f.argmax_change)} of states, α moves by {f.alpha_change:.3f}, policy KL "
            f"{f.policy_kl:.3f}{_score_text(f)})"
        )
    return "; ".join(parts), used


def interventions_sentence(r: InterventionReading) -> str:
    """Forced experts: the best per scenario (or undetermined), each expert's own scenario and
    status."""
    if not r.rankings:
        return (
            "Forced to one expert: no per-seed figures, so which expert is best in each "
            "scenario is undetermined."
        )
    src = (
        "where the learned router gives it the most weight (the routing prior is off: names are "
        "labels)"
        if r.own_source == OWN_FROM_ROUTER
        else "its name's (the routing prior binds names to scenarios)"
    )
    own = ", ".join(f"{e} → {s or MISSING}" for e, s in r.own_scenario.items())
    best = []
    for s, rk in r.rankings.items():
        if rk.determined:
            best.append(f"{s}: {rk.best}")
        elif rk.point_best is None:
            best.append(f"{s}: {MISSING}")
        else:
            best.append(f"{s}: undetermined (point best {rk.point_best}, CIs overlap)")
    status = {st: r.experts_with(st) for st in (SPECIALISED, NOT_SPECIALISED, UNDETERMINED)}
    verdicts = "; ".join(f"{st}: {', '.join(es)}" for st, es in status.items() if es)
    return (
        f"Forced to one expert (paired CIs over the probe seeds), the best per scenario is "
        f"{'; '.join(best)}. Each expert's own scenario is {src}: {own}. {verdicts[:1].upper()}"
        f"{verdicts[1:]}."
    )


def hint_sentence(h: HintReliance) -> str | None:
    if h.follow_share is None:
        return None
    txt = f"The policy takes the hinted move in {pct(h.follow_share)} of the steps with a hint"
    zd, fd = h.zeroed_diff, h.follower_diff
    if h.zeroed_mean_score is not None and h.policy_mean_score is not None:
        txt += (
            f"; with the hint inputs zeroed it scores {h.zeroed_mean_score:.1f} against "
            f"{h.policy_mean_score:.1f}"
        )
        txt += f" (paired difference {zd.text()} over {zd.n} seeds)" if zd else " (no CI)"
    if h.follower_mean_score is not None:
        txt += f"; the hint follower scores {h.follower_mean_score:.1f} on the same seeds"
        txt += f" (paired difference {fd.text()})" if fd else ""
    return txt + "."


def branch_information_sentence(info: ScenarioInformation | None) -> str:
    """I(argmax expert; teacher branch) against the stricter of its nulls."""
    if info is None:
        return "The expert choice's information about the teacher's branch: not measured."
    null = info.null
    share = info.normalized
    head = (
        f"The expert choice carries {info.mi:.4f} nats of information about the teacher's branch "
        f"({pct(share)} of H(branch)), {'above' if info.above_baseline else 'not above'} its "
        f"stricter null's p95 {null.p95:.4f} ({null.name}, p = {num(null.p_value, 3)})"
    )
    level = information_level(info)
    if level == "chance":
        return head + ": the experts do not split by the teacher's branch."
    if level == "small":
        return head + (
            f": above chance but below {100 * MIN_SCENARIO_SHARE:.0f} % of H(branch), the experts "
            "do not split by the teacher's branch."
        )
    return head + ": the expert choice depends on the teacher's branch."


def branch_interventions_sentence(iv: Mapping[str, BranchIntervention] | None) -> str:
    """Per branch, the forced expert that most raises π(teacher's action), when determined."""
    if iv is None:
        return "Per branch, forcing one expert on the teacher's action: not measured."
    if not iv:
        return "Per branch, forcing one expert on the teacher's action: no states."
    parts = []
    for b, x in iv.items():
        pb = x.ranking.point_best
        g = x.gain.get(pb) if pb is not None else None
        gain = f", {g.text(3)} over the router" if g is not None else ""
        if x.best is not None:
            parts.append(f"{b}: {x.best}{gain}")
        elif pb is not None:
            why = "CIs overlap" if x.ranking.best is None else (
                f"ahead by less than {100 * MIN_TEACHER_MARGIN:.0f} pp")  # fmt: skip
            parts.append(f"{b}: undetermined (point best {pb}{gain}; {why})")
        else:
            parts.append(f"{b}: {MISSING}")
    bests = {x.best for x in iv.values() if x.best is not None}
    n_det = sum(x.best is not None for x in iv.values())
    if len(bests) > 1:
        where = {e: [b for b, x in iv.items() if x.best == e] for e in bests}
        order = sorted(where, key=lambda e: (-len(where[e]), e))
        tail = (
            "different experts are the best in different branches ("
            + "; ".join(f"{e} in {', '.join(where[e])}" for e in order)
            + ")"
        )
    elif len(bests) == 1 and n_det > 1:
        tail = (
            f"one expert ({next(iter(bests))}) is the best in every branch where a best is "
            "determined: a stronger imitator of the teacher, not a branch specialist"
        )
    elif n_det == 1:
        tail = "a best is determined in one branch only"
    else:
        tail = "no expert is determined the best in any branch"
    return (
        "Forced to one expert on the same states, the expert that most raises the probability of "
        f"the teacher's action (paired CIs over seeds) is {'; '.join(parts)}: {tail}."
    )


def agreement_sentence(t: TeacherFigures) -> str:
    """How often the student takes the teacher's action, overall and per branch."""
    a = t.agreement.get(ALL_STATES)
    if a is None or a.taken is None:
        return "Agreement with the teacher: not measured."
    txt = f"The student takes the teacher's action in {pct(a.taken)} of its states ({t.actions})"
    if a.argmax is not None:
        txt += f", π's argmax on the same states in {pct(a.argmax)}"
    per = [f"{b} {pct(x.taken)}" for b, x in t.agreement.items() if b != ALL_STATES]
    return txt + (f"; per branch: {', '.join(per)}" if per else "") + "."


def teacher_sentences(t: TeacherFigures | None, with_routing: bool = True) -> str:
    """The verdict's lines about the teacher's branches (``not measured`` without a teacher)."""
    if t is None:
        return "Against the scripted teacher's branches: not measured (the run had no teacher)."
    out = []
    if with_routing:
        out += [branch_information_sentence(t.information),
                branch_interventions_sentence(t.interventions)]  # fmt: skip
    out.append(agreement_sentence(t))
    return " ".join(out)


def specialization_verdict(f: VerdictFigures) -> str:
    """A plain paragraph built from the figures: what the router routes on, whether its experts
    split by scenario and are specialised, how much of the policy is the hint; routing MI and
    alpha entropy named for what they are."""
    if f.reliance is not None:
        rel_text, used = reliance_sentence(f.reliance)
    else:
        rel_text, used = "", []
    if f.n_experts <= 1:
        return (
            "A single expert: there is no routing to read."
            + (f" Policy reliance: {rel_text}." if rel_text else "")
            + (f" {teacher_sentences(f.teacher, with_routing=False)}" if f.teacher else "")
        )
    if f.reliance is None:
        out = ["What the router routes on was not measured on these states (no reliance figures)."]
    else:
        on = (
            " and ".join(used)
            if used
            else "neither h_state nor h_graph (it gives about the same α)"
        )
        out = [f"The router routes on {on}: {rel_text}."]
    h_max = math.log(f.n_experts)
    if f.per_state_sharpness is not None and f.per_state_sharpness > 0.95 * h_max:
        out.append(
            f"α is nearly uniform in every state (alpha entropy {f.per_state_sharpness:.3f} of "
            f"ln {f.n_experts} = {h_max:.3f}): the argmax expert is decided by near-ties, so the "
            "argmax-based figures below say little."
        )
    if f.scenario is not None:
        s = scenario_sentence(f.scenario)
        out.append(s[:1].upper() + s[1:] + ".")
    if f.reading is not None:
        out.append(interventions_sentence(f.reading))
    if f.hint is not None:
        hs = hint_sentence(f.hint)
        if hs:
            out.append(hs)
    out.append(teacher_sentences(f.teacher))
    out.append(
        f"Usage balance (routing MI {num(f.usage_balance, 3)} nats, {num(f.effective_experts, 2)} "
        f"effective experts) and per-state sharpness (alpha entropy {num(f.per_state_sharpness, 3)}) "
        "come from the load-balance and alpha-entropy terms for any router: they are not evidence "
        "of specialization."
    )
    return " ".join(out)


def verdict_of(block: Mapping[str, Any]) -> str:
    """:func:`specialization_verdict` of an evaluation summary or ``analysis.json`` object."""
    return specialization_verdict(VerdictFigures.from_json(block))
