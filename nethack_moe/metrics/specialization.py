"""Specialization figures that a regulariser cannot fake (PROTOCOL.md, "Specialization figures,
each next to its baseline").

Routing MI and effective experts measure usage balance and per-state sharpness: the load-balance
and alpha-entropy terms produce them for any router. The figures here say what the router routes
*on*, each next to the baseline it must beat, measured on the same states. This module holds the
players' outcomes and the intervention rankings; the other figures have their own modules:

* :class:`ScenarioInformation`: I(argmax expert; scenario label) in nats and as a share of
  H(scenario), next to the same figure after permuting the expert assignments across states
  (and, with episode ids, after shifting them circularly within each episode, which keeps the
  autocorrelation of both sequences: a stricter null for states read along trajectories):
  :mod:`nethack_moe.metrics.information`;
* :class:`RelianceFigure`: the share of states whose argmax expert changes and the mean policy KL
  when ``h_graph`` (or ``h_state``) is replaced by its mean over the states, or by zeros; the
  score change when the policy plays with the replacement is filled in by the probes
  (:mod:`nethack_moe.analysis.probes`): :mod:`nethack_moe.metrics.reliance`;
* :class:`PlayerResult` / :class:`ScenarioOutcomes`: score, depth, died and the scenario outcomes
  of one player (the router forced to one expert, the learned router, a baseline);
* :class:`HintReliance`: the share of steps that take the hinted move, the score with the hint
  inputs zeroed, and the hint-follower baseline on the same seeds;
* the verdict is not here: :mod:`nethack_moe.metrics.verdict` builds it from the stored figures
  (the figure records these modules fill in are in :mod:`nethack_moe.metrics.router_figures`).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nethack_moe.metrics.paired import PairedDiff
from nethack_moe.metrics.router_figures import (
    InterventionReading,
    ScenarioRanking,
)
from nethack_moe.metrics.scenarios import COMBAT, EXPLORATION, SURVIVAL

if TYPE_CHECKING:
    from nethack_moe.metrics.statelog import StateLog


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


@dataclass(frozen=True)
class _StepOutcomes:
    """Per logged state: HP lost, kill (experience rose), experience gained and new cells on the
    step out of it (``nan`` where the state has no successor)."""

    hp_lost: np.ndarray
    kill: np.ndarray
    gain: np.ndarray
    new_cells: np.ndarray


def _step_outcomes(st: StateLog, died_seeds: set[int]) -> _StepOutcomes:
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
    kill = np.where(np.isfinite(gain), gain > 0, np.nan)
    return _StepOutcomes(hp_lost, kill, gain, new_cells)


def scenario_outcomes(st: StateLog, labels: np.ndarray, died_seeds: set[int]) -> ScenarioOutcomes:
    """:class:`ScenarioOutcomes` of the logged states ``st`` with scenario ``labels``;
    ``died_seeds``: the episodes that ended in death."""
    o = _step_outcomes(st, died_seeds)
    s, c, x = labels == SURVIVAL, labels == COMBAT, labels == EXPLORATION
    return ScenarioOutcomes(
        survival_states=int(s.sum()),
        hp_lost_per_step=_nanmean(o.hp_lost[s]),
        combat_states=int(c.sum()),
        kills_per_combat_state=_nanmean(o.kill[c]),
        exp_per_combat_state=_nanmean(o.gain[c]),
        exploration_states=int(x.sum()),
        new_cells_per_step=_nanmean(o.new_cells[x]),
    )


#: How each scenario's outcome ranks players: (attribute of ScenarioOutcomes / PlayerResult,
#: higher is better). ``general`` has no scenario outcome of its own: the mean score stands in.
SCENARIO_OUTCOME: dict[str, tuple[str, bool]] = {
    "survival": ("hp_lost_per_step", False),
    "combat": ("kills_per_combat_state", True),
    "exploration": ("new_cells_per_step", True),
    "general": ("mean_score", True),
}


def per_seed_outcomes(
    st: StateLog, labels: np.ndarray, died_seeds: set[int], seeds: Sequence[int]
) -> dict[str, tuple[float | None, ...]]:
    """Each scenario outcome of :data:`SCENARIO_OUTCOME` (but the score) per episode, in the
    order of ``seeds`` (``None`` for an episode without a state of that scenario)."""
    o = _step_outcomes(st, died_seeds)
    cols = {
        "hp_lost_per_step": (o.hp_lost, labels == SURVIVAL),
        "kills_per_combat_state": (o.kill, labels == COMBAT),
        "new_cells_per_step": (o.new_cells, labels == EXPLORATION),
    }
    out: dict[str, tuple[float | None, ...]] = {}
    for key, (v, m) in cols.items():
        out[key] = tuple(_nanmean(v[m & (st.episode == s)]) for s in seeds)
    return out


@dataclass(frozen=True)
class PlayerResult:
    """Score, depth, died and scenario outcomes of one player on the probe seeds, with the
    per-seed figures the paired comparisons need."""

    name: str
    episodes: int
    mean_score: float | None
    depth: float | None
    died: float | None
    outcomes: ScenarioOutcomes | None = None
    seeds: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    """Per seed (in the order of ``seeds``)."""
    per_seed: dict[str, tuple[float | None, ...]] = field(default_factory=dict)
    """Scenario outcome -> its value per seed (:func:`per_seed_outcomes`)."""

    def by_seed(self, key: str) -> dict[int, float | None]:
        """Outcome ``key`` (or ``mean_score``: the score) per seed."""
        vals: Sequence[float | None] = (
            self.scores if key == "mean_score" else self.per_seed.get(key, ())
        )
        if len(vals) != len(self.seeds):
            return {}
        return dict(zip(self.seeds, vals, strict=True))

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
        out["seeds"] = list(self.seeds)
        out["scores"] = list(self.scores)
        out["per_seed"] = {k: list(v) for k, v in self.per_seed.items()}
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

    recs = sorted(records, key=lambda r: int(r["seed"]))
    seeds = tuple(int(r["seed"]) for r in recs)
    outcomes, per_seed = None, {}
    if st is not None and labels is not None:
        died = {int(r["seed"]) for r in records if r["died"]}
        outcomes = scenario_outcomes(st, labels, died)
        per_seed = per_seed_outcomes(st, labels, died, seeds)
    return PlayerResult(
        name, len(records), mean("score"), mean("depth"), mean("died"), outcomes,
        seeds=seeds, scores=tuple(float(r["score"]) for r in recs), per_seed=per_seed,
    )  # fmt: skip


def _outcome(p: PlayerResult, key: str) -> float | None:
    if key == "mean_score":
        return p.mean_score
    return None if p.outcomes is None else getattr(p.outcomes, key)


def rank_by_seed(
    name: str,
    outcome: str,
    higher: bool,
    point: Mapping[str, float | None],
    by_seed: Mapping[str, Mapping[int, float | None]],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> ScenarioRanking:
    """Rank players by one outcome: the point best by ``point`` (ties: none) and, against every
    other player with a value, how much better it is, paired over the seeds of ``by_seed`` both
    have a value for, with its bootstrap CI (positive = the best is better)."""
    vals = {e: v for e, v in point.items() if v is not None}
    if not vals:
        return ScenarioRanking(name, outcome, higher, None)
    top = max(vals.values()) if higher else min(vals.values())
    winners = [e for e, v in vals.items() if math.isclose(v, top, rel_tol=1e-9, abs_tol=1e-12)]
    if len(winners) != 1:
        return ScenarioRanking(name, outcome, higher, None)
    best = winners[0]
    b = by_seed.get(best, {})
    margins = {}
    for e in vals:
        if e == best:
            continue
        o = by_seed.get(e, {})
        # PairedDiff.of(a, b) is mean(b - a): oriented so that positive = the best is better
        margins[e] = (PairedDiff.of(o, b, n_resamples=n_resamples, seed=seed) if higher
                      else PairedDiff.of(b, o, n_resamples=n_resamples, seed=seed))  # fmt: skip
    return ScenarioRanking(name, outcome, higher, best, margins)


def rank_scenario(
    scenario: str, results: dict[str, PlayerResult], expert_names: Sequence[str], *,
    n_resamples: int = 2000, seed: int = 0,
) -> ScenarioRanking:  # fmt: skip
    """The forced experts ranked by ``scenario``'s outcome (:func:`rank_by_seed`): the point best
    over all its states, its margins paired over the seeds."""
    key, higher = SCENARIO_OUTCOME[scenario]
    present = [e for e in expert_names if e in results]
    return rank_by_seed(
        scenario, key, higher, {e: _outcome(results[e], key) for e in present},
        {e: results[e].by_seed(key) for e in present}, n_resamples=n_resamples, seed=seed,
    )  # fmt: skip


def read_interventions(
    results: dict[str, PlayerResult],
    expert_names: Sequence[str],
    own_scenario: dict[str, str | None] | None = None,
    own_source: str = "names",
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> InterventionReading:
    """Rank the forced experts (not the learned router) in every scenario of
    :data:`SCENARIO_OUTCOME` (:func:`rank_scenario`). ``own_scenario``: each expert's own
    scenario (:func:`nethack_moe.metrics.router_figures.own_scenarios`); without it, an expert named
    after a scenario owns it (only right where the routing prior binds names)."""
    rankings = {
        s: rank_scenario(s, results, expert_names, n_resamples=n_resamples, seed=seed)
        for s in SCENARIO_OUTCOME
    }
    if own_scenario is None:
        own_scenario = {e: (e if e in SCENARIO_OUTCOME else None) for e in expert_names}
    return InterventionReading(rankings, dict(own_scenario), own_source)
