"""Specialization figures that a regulariser cannot fake (PROTOCOL.md, "Specialization figures,
each next to its baseline").

Routing MI and effective experts measure usage balance and per-state sharpness: the load-balance
and alpha-entropy terms produce them for any router. The figures here say what the router routes
*on*, each next to the baseline it must beat, measured on the same states:

* :class:`ScenarioInformation`: I(argmax expert; scenario label) in nats and as a share of
  H(scenario), next to the same figure after permuting the expert assignments across states
  (and, with episode ids, after shifting them circularly within each episode, which keeps the
  autocorrelation of both sequences: a stricter null for states read along trajectories);
* :class:`RelianceFigure`: the share of states whose argmax expert changes and the mean policy KL
  when ``h_graph`` (or ``h_state``) is replaced by its mean over the states, or by zeros; the
  score change when the policy plays with the replacement is filled in by the probes
  (:mod:`nethack_moe.analysis.probes`);
* :class:`PlayerResult` / :class:`ScenarioOutcomes`: score, depth, died and the scenario outcomes
  of one player (the router forced to one expert, the learned router, a baseline);
* :class:`HintReliance`: the share of steps that take the hinted move, the score with the hint
  inputs zeroed, and the hint-follower baseline on the same seeds;
* :func:`specialization_verdict`: what the router routes on, in one paragraph.

Scenario outcomes use what NLE's env buffer exposes (blstats and the feature memory); NLE's
messages are not there:

* survival: **HP lost per step** in survival states, ``max(hp_t - hp_{t+1}, 0)``; the last step of
  an episode that ended in death loses all remaining HP;
* combat: **kills per combat state**, the share of combat states after which the experience
  points (``NLE_BL_EXP``) rose (a kill; rarely something else), and **experience gained per combat
  state**, which grows with the level of what was killed: the proxy for damage dealt, which NLE
  does not expose;
* exploration: **new cells per step** in exploration states: cells of the level the hero stands
  on for the first time (the feature memory; a new level counts its first cell), a proxy for the
  cells seen, which the buffer does not hold.

The last step of an episode has no successor: it counts only for the HP lost at death.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from nethack_moe.analysis import metric_names as mn
from nethack_moe.analysis.formatting import num, pct
from nethack_moe.analysis.scenarios import COMBAT, EXPLORATION, SCENARIOS, SURVIVAL

if TYPE_CHECKING:
    from nethack_moe.evaluation import StateLog
    from nethack_moe.models.policy import ActorCritic, Encoded
    from nethack_moe.ppo.acting import Obs

#: Permutations of the scenario-information baseline (PROTOCOL.md: at least 100).
DEFAULT_PERMUTATIONS = 200
#: Share of H(scenario) that the scenario information must reach to count as routing by scenario.
MIN_SCENARIO_SHARE = 0.05
#: Share of states whose argmax expert must change without an input for the router to use it.
MIN_RELIANCE = 0.05
#: States the reliance figures are computed on (a seeded sample of the logged states).
DEFAULT_RELIANCE_STATES = 4096


# ------------------------------------------------------------------------------ scenario information
def entropy_of_labels(labels: np.ndarray, n: int) -> float:
    """Entropy (nats) of the empirical distribution of ``labels`` in ``0 .. n-1``."""
    c = np.bincount(np.asarray(labels, np.int64), minlength=n).astype(np.float64)
    p = c[c > 0] / max(c.sum(), 1.0)
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> float:
    """I(a; b) in nats of two label sequences (``a`` in ``0..na-1``, ``b`` in ``0..nb-1``)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    n = a.size
    if n == 0:
        return 0.0
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / n
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum(), 0.0))


def _episode_shift_index(episode_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row index that rotates every episode's rows by a random offset.

    The rows of each episode must be contiguous: otherwise every run of rows would be rotated on
    its own, the shift would leave runs of length 1 in place, and the null would silently become
    the figure itself. Raises ``ValueError`` when an episode id appears in two separate runs."""
    e = np.asarray(episode_ids)
    starts = np.flatnonzero(np.r_[True, e[1:] != e[:-1]])
    run_ids = e[starts]
    if np.unique(run_ids).size != run_ids.size:
        _, first = np.unique(run_ids, return_index=True)
        dup = run_ids[np.setdiff1d(np.arange(run_ids.size), first)[0]]
        raise ValueError(
            f"episode ids are not contiguous per episode (episode {dup} appears in two separate "
            "runs of rows): sort the state log by episode before the within-episode shifts"
        )
    lengths = np.diff(np.r_[starts, e.size])
    offsets = rng.integers(0, np.maximum(lengths, 1))
    start_of = np.repeat(starts, lengths)
    len_of = np.repeat(lengths, lengths)
    pos = np.arange(e.size) - start_of
    return start_of + (pos + np.repeat(offsets, lengths)) % len_of


@dataclass(frozen=True)
class ScenarioInformation:
    """I(argmax expert; scenario label) next to its permutation baselines."""

    mi: float
    """Nats."""
    scenario_entropy: float
    """H(scenario) of the same states, nats."""
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
    def baseline_p95(self) -> float:
        """The stricter of the two p95 baselines."""
        return max(self.shuffled_p95, self.shifted_p95 or 0.0)

    @property
    def above_baseline(self) -> bool:
        """Above the p95 of every baseline that was computed."""
        return self.mi > self.baseline_p95

    def to_json(self) -> dict[str, Any]:
        """The ``specialization`` block of ``analysis.json``."""
        return {
            mn.SCENARIO_MI: self.mi,
            mn.SCENARIO_MI_NORMALIZED: self.normalized,
            "scenario_entropy": self.scenario_entropy,
            "scenario_mi_shuffled_mean": self.shuffled_mean,
            mn.SCENARIO_MI_SHUFFLED_P95: self.shuffled_p95,
            mn.SCENARIO_MI_P_VALUE: self.p_value,
            mn.SCENARIO_MI_SHIFTED_P95: self.shifted_p95,
            "scenario_mi_shifted_p_value": self.shifted_p_value,
            "permutations": self.permutations,
            "n_states": self.n_states,
            "above_baseline": self.above_baseline,
        }


def scenario_information(
    argmax: np.ndarray,
    labels: np.ndarray,
    n_experts: int,
    n_scenarios: int = len(SCENARIOS),
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    episode_ids: np.ndarray | None = None,
) -> ScenarioInformation:
    """I(argmax expert; scenario) and its baselines over ``permutations`` seeded draws."""
    am, lab = np.asarray(argmax, np.int64), np.asarray(labels, np.int64)
    if am.shape != lab.shape:
        raise ValueError(f"argmax {am.shape} and labels {lab.shape} differ in shape")
    if permutations < 1:
        raise ValueError(f"permutations={permutations} must be >= 1")
    mi = mutual_information(am, lab, n_experts, n_scenarios)
    rng = np.random.default_rng(seed)
    shuffled = np.array(
        [mutual_information(rng.permutation(am), lab, n_experts, n_scenarios)
         for _ in range(permutations)]
    )  # fmt: skip
    shifted_p95 = shifted_p = None
    if episode_ids is not None and am.size:
        ep = np.asarray(episode_ids)
        shifted = np.array(
            [mutual_information(am[_episode_shift_index(ep, rng)], lab, n_experts, n_scenarios)
             for _ in range(permutations)]
        )  # fmt: skip
        shifted_p95 = float(np.quantile(shifted, 0.95))
        shifted_p = float((1 + (shifted >= mi - 1e-12).sum()) / (1 + permutations))
    return ScenarioInformation(
        mi=mi,
        scenario_entropy=entropy_of_labels(lab, n_scenarios),
        shuffled_mean=float(shuffled.mean()),
        shuffled_p95=float(np.quantile(shuffled, 0.95)),
        p_value=float((1 + (shuffled >= mi - 1e-12).sum()) / (1 + permutations)),
        permutations=int(permutations),
        n_states=int(am.size),
        shifted_p95=shifted_p95,
        shifted_p_value=shifted_p,
    )


# ------------------------------------------------------------------------------ reliance
@dataclass(frozen=True)
class Replacement:
    """One edit of the encoding: ``field`` (``h_graph`` / ``h_state``) replaced by its mean over
    the states or by zeros."""

    name: str
    field: str
    kind: str

    def apply(self, enc: Encoded, means: dict[str, Tensor]) -> Encoded:
        """``enc`` with the field replaced (``means[field]``: ``[D]``, for ``kind="mean"``)."""
        h = getattr(enc, self.field)
        if h is None:
            return enc
        new = torch.zeros_like(h) if self.kind == "zero" else means[self.field].to(h).expand_as(h)
        return enc._replace(**{self.field: new})

    def edit(self, means: dict[str, Tensor]) -> Callable[[Encoded], Encoded]:
        """The replacement as an encoding edit for :class:`nethack_moe.players.ModelPlayer`."""
        return lambda enc: self.apply(enc, means)


#: The four replacements of PROTOCOL.md, keyed like ``analysis.json``'s ``reliance`` block.
REPLACEMENTS: tuple[Replacement, ...] = (
    Replacement(mn.GRAPH_MEAN, "h_graph", "mean"),
    Replacement("graph_zero", "h_graph", "zero"),
    Replacement(mn.STATE_MEAN, "h_state", "mean"),
    Replacement("state_zero", "h_state", "zero"),
)


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

    @property
    def score_change(self) -> float | None:
        """``mean_score - baseline_mean_score`` (``None`` until played)."""
        if self.mean_score is None or self.baseline_mean_score is None:
            return None
        return self.mean_score - self.baseline_mean_score

    def to_json(self) -> dict[str, Any]:
        """One entry of the ``reliance`` block."""
        return {
            mn.ARGMAX_CHANGE: self.argmax_change,
            "policy_kl": self.policy_kl,
            "alpha_change": self.alpha_change,
            "n_states": self.n_states,
            "mean_score": self.mean_score,
            "baseline_mean_score": self.baseline_mean_score,
            "score_change": self.score_change,
            "episodes": self.episodes,
        }


@dataclass
class RelianceResult:
    """The reliance figures on the states (``None`` for a replacement whose field the model lacks)
    and the means used, for playing with the same replacement."""

    figures: dict[str, RelianceFigure | None]
    means: dict[str, Tensor] = field(default_factory=dict)


def sample_rows(n: int, max_rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded sample of ``min(n, max_rows)`` of ``n`` rows."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _rows(obs: Obs, idx: Tensor | slice) -> Obs:
    """Rows ``idx`` of every field of ``obs``."""
    return obs._replace(**{f: getattr(obs, f)[idx] for f in obs._fields})


def _cat(parts: list[Tensor | None]) -> Tensor | None:
    return None if parts[0] is None else torch.cat([p for p in parts if p is not None])


def encode_all(model: ActorCritic, obs: Obs, batch: int = 512) -> Encoded:
    """:meth:`ActorCritic.encode` of ``obs`` in batches (no autograd), on the model's device."""
    from nethack_moe.models.policy import Encoded

    dev = next(model.parameters()).device
    parts = []
    with torch.no_grad():
        for i in range(0, int(obs.state.shape[0]), batch):
            o = _rows(obs, slice(i, i + batch)).to(dev)
            parts.append(model.encode(*o))
    h_state = torch.cat([p.h_state for p in parts])
    return Encoded(
        h_state, _cat([p.h_graph for p in parts]), _cat([p.operator_scores for p in parts])
    )


def reliance_on_states(
    model: ActorCritic,
    obs: Obs,
    routing: str | None = None,
    temperature: float | None = None,
    *,
    max_states: int = DEFAULT_RELIANCE_STATES,
    seed: int = 0,
    batch: int = 512,
) -> RelianceResult:
    """The reliance figures of the four :data:`REPLACEMENTS` on (a seeded sample of) ``obs``.

    The mean is taken over the sampled states; the same mean replaces the field when the policy
    plays with the replacement, so both figures measure one and the same edit.
    """
    n = int(obs.state.shape[0])
    if n == 0:
        return RelianceResult({r.name: None for r in REPLACEMENTS})
    obs = _rows(obs, torch.from_numpy(sample_rows(n, max_states, seed)))
    enc = encode_all(model, obs, batch)
    means = {
        f: getattr(enc, f).mean(0) for f in ("h_state", "h_graph") if getattr(enc, f) is not None
    }
    with torch.no_grad():
        base = model.head(enc, routing, temperature)
        logp = torch.log_softmax(base.logits.float(), -1)
        am = base.alpha.argmax(-1)
        figs: dict[str, RelianceFigure | None] = {}
        for rep in REPLACEMENTS:
            if getattr(enc, rep.field) is None:
                figs[rep.name] = None
                continue
            out = model.head(rep.apply(enc, means), routing, temperature)
            logq = torch.log_softmax(out.logits.float(), -1)
            kl = (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0)
            tv = 0.5 * (out.alpha.float() - base.alpha.float()).abs().sum(-1)
            figs[rep.name] = RelianceFigure(
                rep.name,
                float((out.alpha.argmax(-1) != am).float().mean()),
                float(kl.mean()),
                int(am.shape[0]),
                alpha_change=float(tv.mean()),
            )
    return RelianceResult(figs, {k: v.detach().cpu() for k, v in means.items()})


# ------------------------------------------------------------------------------ scenario outcomes
def hint_follow_share(st: StateLog) -> float | None:
    """Share of the steps with a navigation hint on which the hinted move was taken (``None``
    without such steps)."""
    has = st.hint >= 0
    n = int(has.sum())
    return float((st.action[has] == st.hint[has]).mean()) if n else None


@dataclass(frozen=True)
class ScenarioOutcomes:
    """The scenario outcomes of PROTOCOL.md over one player's states (module docstring)."""

    survival_states: int
    hp_lost_per_step: float | None
    combat_states: int
    kills_per_combat_state: float | None
    exp_per_combat_state: float | None
    exploration_states: int
    new_cells_per_step: float | None

    def to_json(self) -> dict[str, Any]:
        """Flat keys, as in ``interventions.<expert>``."""
        return {
            "survival_states": self.survival_states,
            "hp_lost_per_step": self.hp_lost_per_step,
            "combat_states": self.combat_states,
            "kills_per_combat_state": self.kills_per_combat_state,
            "exp_per_combat_state": self.exp_per_combat_state,
            "exploration_states": self.exploration_states,
            "new_cells_per_step": self.new_cells_per_step,
        }


def _nanmean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def scenario_outcomes(st: StateLog, labels: np.ndarray, died_seeds: set[int]) -> ScenarioOutcomes:
    """:class:`ScenarioOutcomes` of the logged states ``st`` with scenario ``labels``;
    ``died_seeds``: the episodes that ended in death."""
    n = st.n
    nxt = np.zeros(n, bool)
    if n > 1:
        nxt[:-1] = st.episode[1:] == st.episode[:-1]
    j = np.minimum(np.arange(n) + 1, max(n - 1, 0))
    hp_lost = np.where(nxt, np.maximum(st.hp - st.hp[j], 0), np.nan).astype(np.float64)
    died_last = ~nxt & np.isin(st.episode, list(died_seeds))
    hp_lost[died_last] = st.hp[died_last]
    gain = np.where(nxt, np.maximum(st.exp[j] - st.exp, 0), np.nan).astype(np.float64)
    same_level = st.depth[j] == st.depth
    new = np.where(same_level, np.maximum(st.visited[j] - st.visited, 0), st.visited[j])
    new_cells = np.where(nxt, new, np.nan).astype(np.float64)
    s, c, x = labels == SURVIVAL, labels == COMBAT, labels == EXPLORATION
    return ScenarioOutcomes(
        survival_states=int(s.sum()),
        hp_lost_per_step=_nanmean(hp_lost[s]),
        combat_states=int(c.sum()),
        kills_per_combat_state=_nanmean(np.where(np.isfinite(gain), gain > 0, np.nan)[c]),
        exp_per_combat_state=_nanmean(gain[c]),
        exploration_states=int(x.sum()),
        new_cells_per_step=_nanmean(new_cells[x]),
    )


@dataclass(frozen=True)
class PlayerResult:
    """Score, depth, died and scenario outcomes of one player on the probe seeds."""

    name: str
    episodes: int
    mean_score: float | None
    depth: float | None
    died: float | None
    outcomes: ScenarioOutcomes | None = None

    def to_json(self) -> dict[str, Any]:
        """One entry of the ``interventions`` block."""
        out: dict[str, Any] = {
            "episodes": self.episodes,
            "mean_score": self.mean_score,
            "depth": self.depth,
            "died": self.died,
        }
        if self.outcomes is not None:
            out.update(self.outcomes.to_json())
        return out


def player_result(
    name: str,
    records: Sequence[dict[str, Any]],
    st: StateLog | None = None,
    labels: np.ndarray | None = None,
) -> PlayerResult:
    """:class:`PlayerResult` of per-episode records (and their logged states and labels)."""

    def mean(key: str) -> float | None:
        return float(np.mean([float(r[key]) for r in records])) if records else None

    outcomes = None
    if st is not None and labels is not None:
        died = {int(r["seed"]) for r in records if r["died"]}
        outcomes = scenario_outcomes(st, labels, died)
    return PlayerResult(name, len(records), mean("score"), mean("depth"), mean("died"), outcomes)


#: How each scenario's outcome ranks players: (attribute of ScenarioOutcomes / PlayerResult,
#: higher is better). ``general`` has no scenario outcome of its own: the mean score stands in.
SCENARIO_OUTCOME: dict[str, tuple[str, bool]] = {
    "survival": ("hp_lost_per_step", False),
    "combat": ("kills_per_combat_state", True),
    "exploration": ("new_cells_per_step", True),
    "general": ("mean_score", True),
}


def _outcome(p: PlayerResult, key: str) -> float | None:
    if key == "mean_score":
        return p.mean_score
    return None if p.outcomes is None else getattr(p.outcomes, key)


@dataclass(frozen=True)
class InterventionReading:
    """Which forced expert is best in each scenario, and which experts are specialised (best in
    their own scenario and in no other)."""

    best: dict[str, str | None]
    specialised: list[str]
    not_specialised: list[str]

    def to_json(self) -> dict[str, Any]:
        """The ``interventions_reading`` block."""
        return {
            "best_expert": self.best,
            "specialised": self.specialised,
            "not_specialised": self.not_specialised,
        }


def read_interventions(
    results: dict[str, PlayerResult], expert_names: Sequence[str]
) -> InterventionReading:
    """Rank the forced experts (not the learned router) per scenario by
    :data:`SCENARIO_OUTCOME`; an expert named after a scenario is specialised when it is the best
    there and nowhere else (ties: none is best)."""
    best: dict[str, str | None] = {}
    for scen, (key, higher) in SCENARIO_OUTCOME.items():
        vals: dict[str, float] = {}
        for e in expert_names:
            v = _outcome(results[e], key) if e in results else None
            if v is not None:
                vals[e] = v
        if not vals:
            best[scen] = None
            continue
        top = max(vals.values()) if higher else min(vals.values())
        winners = [e for e, v in vals.items() if math.isclose(v, top, rel_tol=1e-9, abs_tol=1e-12)]
        best[scen] = winners[0] if len(winners) == 1 else None
    own = [e for e in expert_names if e in SCENARIO_OUTCOME]
    spec = [e for e in own if best.get(e) == e and sum(b == e for b in best.values()) == 1]
    return InterventionReading(best, spec, [e for e in own if e not in spec])


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

    def to_json(self) -> dict[str, Any]:
        """The ``hint`` block."""
        return {
            mn.FOLLOW_SHARE: self.follow_share,
            "hinted_steps": self.hinted_steps,
            "policy_mean_score": self.policy_mean_score,
            "zeroed_mean_score": self.zeroed_mean_score,
            "follower_mean_score": self.follower_mean_score,
            "follower_follow_share": self.follower_follow_share,
            "random_mean_score": self.random_mean_score,
            "episodes": self.episodes,
        }


# ------------------------------------------------------------------------------ the report
@dataclass
class SpecializationReport:
    """Every specialization figure of one policy, and the verdict read from them."""

    scenario: ScenarioInformation | None
    reliance: dict[str, RelianceFigure | None]
    hint: HintReliance | None
    usage_balance: float | None
    """Routing MI H(ᾱ) − mean H(α_s), nats: usage balance, not evidence of specialization."""
    per_state_sharpness: float | None
    """Mean alpha entropy H(α_s), nats: per-state sharpness, not evidence of specialization."""
    effective_experts: float | None
    n_experts: int
    interventions: dict[str, PlayerResult] = field(default_factory=dict)
    reading: InterventionReading | None = None

    def verdict(self) -> str:
        """:func:`specialization_verdict` of this report."""
        return specialization_verdict(self)

    def to_json(self) -> dict[str, Any]:
        """The blocks of ``analysis.json``: ``specialization``, ``reliance``, ``interventions``,
        ``interventions_reading``, ``hint``, ``routing_balance`` and ``verdict``."""
        return {
            mn.SPECIALIZATION: self.scenario.to_json() if self.scenario else None,
            mn.RELIANCE: {k: (v.to_json() if v else None) for k, v in self.reliance.items()},
            "interventions": {k: v.to_json() for k, v in self.interventions.items()},
            "interventions_reading": self.reading.to_json() if self.reading else None,
            mn.HINT: self.hint.to_json() if self.hint else None,
            "routing_balance": {
                "usage_balance_routing_mi": self.usage_balance,
                "per_state_sharpness_alpha_entropy": self.per_state_sharpness,
                "effective_experts": self.effective_experts,
                "note": "produced by the load-balance and alpha-entropy terms for any router; "
                "not evidence of specialization",
            },
            mn.VERDICT: self.verdict(),
        }


def _scenario_sentence(s: ScenarioInformation) -> str:
    share = s.normalized
    head = (
        f"scenario information {s.mi:.4f} nats ({pct(share)} of H(scenario)) against a "
        f"permutation p95 of {s.shuffled_p95:.4f} (p = {s.p_value:.3f}"
        + (f"; within-episode shifts p95 {s.shifted_p95:.4f}" if s.shifted_p95 is not None else "")
        + ")"
    )
    if not s.above_baseline:
        return head + ": the expert choice carries no more scenario information than chance"
    if share is None or share < MIN_SCENARIO_SHARE:
        return head + (
            f": above chance but below {100 * MIN_SCENARIO_SHARE:.0f} % of H(scenario), "
            "the experts are not split by scenario"
        )
    return head + ": the expert choice depends on the scenario"


def _reliance_sentence(rel: dict[str, RelianceFigure | None]) -> tuple[str, list[str]]:
    used, parts = [], []
    for name, label in (("state_mean", "h_state"), ("graph_mean", "h_graph")):
        f = rel.get(name)
        if f is None:
            if name == "graph_mean":
                parts.append("there is no h_graph")
            continue
        score = "" if f.score_change is None else f", score {f.score_change:+.1f}"
        verb = "uses" if f.argmax_change >= MIN_RELIANCE else "ignores"
        if f.argmax_change >= MIN_RELIANCE:
            used.append(label)
        parts.append(
            f"it {verb} {label} (replaced by its mean: argmax expert changes in "
            f"{pct(f.argmax_change)} of states, α moves by {f.alpha_change:.3f}, policy KL "
            f"{f.policy_kl:.3f}{score})"
        )
    return "; ".join(parts), used


def specialization_verdict(r: SpecializationReport) -> str:
    """A plain paragraph: what the router routes on, whether its experts split by scenario,
    how much of the policy is the hint; routing MI / alpha entropy named for what they are."""
    rel_text, used = _reliance_sentence(r.reliance)
    if r.n_experts <= 1:
        return "A single expert: there is no routing to read." + (
            f" Policy reliance: {rel_text}." if rel_text else ""
        )
    on = " and ".join(used) if used else "neither h_state nor h_graph (it gives about the same α)"
    out = [f"The router routes on {on}: {rel_text}."] if rel_text else []
    if not any(v is not None for v in r.reliance.values()):
        out = ["What the router routes on was not measured on these states (no reliance figures)."]
    h_max = math.log(r.n_experts)
    if r.per_state_sharpness is not None and r.per_state_sharpness > 0.95 * h_max:
        out.append(
            f"α is nearly uniform in every state (alpha entropy {r.per_state_sharpness:.3f} of "
            f"ln {r.n_experts} = {h_max:.3f}): the argmax expert is decided by near-ties, so the "
            "argmax-based figures below say little."
        )
    if r.scenario is not None:
        out.append(
            _scenario_sentence(r.scenario)[:1].upper() + _scenario_sentence(r.scenario)[1:] + "."
        )
    if r.reading is not None:
        if r.reading.specialised:
            out.append(
                "Forced to one expert, "
                + ", ".join(r.reading.specialised)
                + " is the best choice in its own scenario and in no other (specialised)"
                + (
                    f"; {', '.join(r.reading.not_specialised)} not"
                    if r.reading.not_specialised
                    else ""
                )
                + "."
            )
        else:
            best = ", ".join(f"{k}: {v or 'tie'}" for k, v in r.reading.best.items())
            out.append(
                f"Forced to one expert, no expert is the best choice in its own scenario ({best})."
            )
    h = r.hint
    if h is not None and h.follow_share is not None:
        txt = f"The policy takes the hinted move in {pct(h.follow_share)} of the steps with a hint"
        if h.zeroed_mean_score is not None and h.policy_mean_score is not None:
            txt += (
                f"; with the hint inputs zeroed it scores {h.zeroed_mean_score:.1f} against "
                f"{h.policy_mean_score:.1f}"
            )
        if h.follower_mean_score is not None:
            txt += f"; the hint follower scores {h.follower_mean_score:.1f} on the same seeds"
        out.append(txt + ".")
    out.append(
        f"Usage balance (routing MI {num(r.usage_balance, 3)} nats, {num(r.effective_experts, 2)} "
        f"effective experts) and per-state sharpness (alpha entropy {num(r.per_state_sharpness, 3)}) "
        "come from the load-balance and alpha-entropy terms for any router: they are not evidence "
        "of specialization."
    )
    return " ".join(out)


# ------------------------------------------------------------------------------ from logged states
def state_report(
    model: ActorCritic | None,
    st: StateLog,
    labels: np.ndarray,
    routing: str | None = None,
    temperature: float | None = None,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    reliance_states: int = DEFAULT_RELIANCE_STATES,
    seed: int = 0,
) -> tuple[SpecializationReport, dict[str, Tensor]]:
    """The figures that need only the logged states: scenario information, reliance on the
    states (when the rollout kept the observations and ``model`` is given), hint follow share,
    usage balance and sharpness. Returns the report and the means of ``h_state`` / ``h_graph``
    (for playing with the same replacements)."""
    from nethack_moe.analysis.routing import routing_figures

    E = int(st.alpha.shape[1])
    scen = None
    if E > 1 and st.n:
        scen = scenario_information(
            st.alpha.argmax(1), labels, E, permutations=permutations, seed=seed,
            episode_ids=st.episode,
        )  # fmt: skip
    rel = RelianceResult({})
    if model is not None and E and st.state is not None:
        rel = reliance_on_states(model, st.obs(), routing, temperature, max_states=reliance_states,
                                 seed=seed)  # fmt: skip
    fig = routing_figures(st.alpha) if E else {}
    hint = HintReliance(hint_follow_share(st), int((st.hint >= 0).sum()))
    report = SpecializationReport(
        scenario=scen,
        reliance=rel.figures,
        hint=hint,
        usage_balance=fig.get(mn.MI),
        per_state_sharpness=fig.get(mn.ALPHA_ENTROPY),
        effective_experts=fig.get(mn.EFFECTIVE_EXPERTS),
        n_experts=E,
    )
    return report, rel.means
