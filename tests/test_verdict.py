"""The specialization verdict is built from its numbers, branch by branch, and never read back.

Each test builds the figures by hand (or from a small synthetic sample), so that a planted bug in
the decision logic changes the text: the reliance verb forced to "uses", the stricter null ignored,
the shifted p-value hard-coded or not the one printed, reliance not measured read as "routes on
neither", expert names read as bindings, a ranking read from point estimates.
"""

from __future__ import annotations

import numpy as np
import pytest

from nethack_moe.metrics import names as mn
from nethack_moe.metrics import stats
from nethack_moe.metrics.information import scenario_information
from nethack_moe.metrics.paired import PairedDiff
from nethack_moe.metrics.router_figures import (
    MIN_RELIANCE,
    NOT_SPECIALISED,
    OWN_FROM_NAMES,
    OWN_FROM_ROUTER,
    PERMUTATION_NULL,
    SHIFT_NULL,
    SPECIALISED,
    UNDETERMINED,
    HintReliance,
    InterventionReading,
    RelianceFigure,
    ScenarioInformation,
    own_scenarios,
)
from nethack_moe.metrics.specialization import PlayerResult, ScenarioOutcomes, read_interventions
from nethack_moe.metrics.state_report import SpecializationReport
from nethack_moe.metrics.verdict import VerdictFigures, specialization_verdict, verdict_of

E = 4
NAMES = ["survival", "combat", "exploration", "general"]


def _info(mi: float, shuffled_p95: float, p: float, shifted_p95: float | None,
          shifted_p: float | None, h: float = 1.0) -> ScenarioInformation:  # fmt: skip
    return ScenarioInformation(mi, h, shuffled_p95 / 2, shuffled_p95, p, 200, 1000,
                               shifted_p95, shifted_p)  # fmt: skip


def _rel(graph: float | None, state: float = 0.5) -> dict[str, RelianceFigure | None]:
    return {
        mn.GRAPH_MEAN: None if graph is None else RelianceFigure(mn.GRAPH_MEAN, graph, 0.1, 100),
        "graph_zero": None if graph is None else RelianceFigure("graph_zero", graph, 0.1, 100),
        mn.STATE_MEAN: RelianceFigure(mn.STATE_MEAN, state, 0.3, 100),
        "state_zero": RelianceFigure("state_zero", state, 0.3, 100),
    }


def _report(scenario=None, reliance=None, reading=None, hint=None, n=E) -> SpecializationReport:
    return SpecializationReport(scenario, reliance or {}, hint, 1.0, 0.3, 3.9, n, reading=reading)


def _verdict(**kw) -> str:
    """The verdict of a report, read back through its JSON (the path every reader takes)."""
    return verdict_of(_report(**kw).to_json())


# ------------------------------------------------------------------------------ scenario information
def test_between_the_two_nulls_reads_no_more_than_chance_with_the_shifted_p_value():
    # shuffled p95 < MI < shifted p95: the shifted null decides, and its p-value is printed
    info = _info(0.05, 0.01, 0.005, 0.10, 0.30)
    assert info.null.name == SHIFT_NULL and info.baseline_p95 == 0.10 and not info.above_baseline
    v = _verdict(scenario=info, reliance=_rel(0.2))
    assert "no more scenario information than chance" in v
    assert "within-episode shift null (p95 0.1000, p = 0.300" in v
    assert "p = 0.005" not in v
    stored = info.to_json()
    assert stored[mn.SCENARIO_MI_NULL] == SHIFT_NULL
    assert stored[mn.SCENARIO_MI_NULL_P95] == 0.10 and stored[mn.SCENARIO_MI_NULL_P_VALUE] == 0.30


def test_above_both_nulls_reads_depends_with_the_p_value_of_the_stricter_one():
    info = _info(0.30, 0.01, 0.005, 0.05, 0.010, h=1.0)
    v = _verdict(scenario=info, reliance=_rel(0.2))
    assert "the expert choice depends on the scenario" in v
    assert "within-episode shift null (p95 0.0500, p = 0.010; permutation p95 0.0100)" in v
    # the permutation null is the stricter one: its own p-value is printed
    info2 = _info(0.30, 0.08, 0.004, 0.05, 0.020)
    assert info2.null.name == PERMUTATION_NULL and info2.baseline_p95 == 0.08
    v2 = _verdict(scenario=info2, reliance=_rel(0.2))
    assert "permutation null (p95 0.0800, p = 0.004; within-episode-shift p95 0.0500)" in v2


def test_above_chance_but_a_small_share_is_not_a_split_by_scenario():
    info = _info(0.02, 0.001, 0.005, 0.002, 0.005, h=1.0)  # 2 % of H(scenario)
    assert "above chance but below 5 % of H(scenario)" in _verdict(
        scenario=info, reliance=_rel(0.2)
    )


def test_the_shifted_p_value_is_computed_from_the_shifts():
    """Autocorrelated independent sequences sit inside their shift null (p > 0.05) though the
    permutation null calls them significant; a router that routes by scenario beats both at the
    smallest p-value the draws allow. A hard-coded shifted p-value cannot give both."""
    rng = np.random.default_rng(3)
    ep = np.repeat(np.arange(20), 100)
    expert = np.repeat(rng.integers(0, E, 20), 100)
    scen = np.repeat(rng.integers(0, 4, 20), 100)
    chance = scenario_information(expert, scen, E, episode_ids=ep)
    assert chance.p_value == pytest.approx(1 / 201)  # the permutations are fooled
    assert chance.shifted_p_value is not None and chance.shifted_p_value > 0.05
    assert chance.null.name == SHIFT_NULL and not chance.above_baseline
    assert "no more scenario information than chance" in _verdict(
        scenario=chance, reliance=_rel(0.2)
    )
    assert f"p = {chance.shifted_p_value:.3f}" in _verdict(scenario=chance, reliance=_rel(0.2))
    labels = rng.integers(0, 4, 2000)
    routed = np.where(rng.random(2000) < 0.1, rng.integers(0, E, 2000), labels)
    strong = scenario_information(routed, labels, E, episode_ids=np.repeat(np.arange(20), 100))
    assert strong.shifted_p_value == pytest.approx(1 / 201) and strong.above_baseline


# ------------------------------------------------------------------------------ reliance
def test_the_reliance_verb_follows_the_numbers():
    below, at = MIN_RELIANCE - 0.001, MIN_RELIANCE
    v = _verdict(reliance=_rel(below))
    assert "it ignores h_graph" in v and "it uses h_state" in v
    assert "The router routes on h_state:" in v
    v = _verdict(reliance=_rel(at))
    assert "it uses h_graph" in v and "routes on h_state and h_graph" in v
    v = _verdict(reliance=_rel(0.0, state=0.0))
    assert "routes on neither h_state nor h_graph" in v and "it uses" not in v


def test_reliance_not_measured_reads_not_measured_never_routes_on_neither():
    v = _verdict(reliance={})
    assert "was not measured" in v and "routes on neither" not in v and "there is no" not in v
    assert _report(reliance={}).to_json()[mn.RELIANCE_MEASURED] is False


def test_a_model_without_a_graph_reads_there_is_no_h_graph():
    v = _verdict(reliance=_rel(None))
    assert "there is no h_graph" in v and "routes on was not measured" not in v


def test_an_old_file_is_rebuilt_from_its_numbers_and_its_sentence_ignored():
    """The shipped greedy entries said "routes on neither ... there is no h_graph" for a GAT-MoE
    whose reliance was not measured: read back, the sentence is rebuilt from the numbers."""
    false = "The router routes on neither h_state nor h_graph (it gives about the same α): there is no h_graph."
    old_greedy = {
        "routing": {"expert_names": NAMES, "mi": 1.0, "alpha_entropy": 0.3, "effective_experts": 4.0},
        "specialization": {"scenario_mi": 0.25, "scenario_mi_normalized": 0.3,
                           "scenario_mi_shuffled_p95": 0.0001, "scenario_mi_p_value": 0.005,
                           "scenario_mi_shifted_p95": 0.2, "scenario_mi_shifted_p_value": 0.02},
        "reliance": {},
        "verdict": false,
    }  # fmt: skip
    v = verdict_of(old_greedy)
    assert false not in v and "routes on neither" not in v and "was not measured" in v
    assert "the expert choice depends on the scenario" in v and "p = 0.020" in v
    # an old sampled entry: reliance measured, no scores played
    old_sampled = {**old_greedy, "reliance": {"graph_mean": {"argmax_change": 0.17, "policy_kl": 0.2},
                                             "state_mean": {"argmax_change": 0.64, "policy_kl": 1.5}}}  # fmt: skip
    assert "routes on h_state and h_graph" in verdict_of(old_sampled)
    # no figures at all: nothing about specialization is claimed
    assert "not measured" in verdict_of({"verdict": false, "routing": {"expert_names": NAMES}})


def test_a_single_expert_has_no_routing_to_read():
    assert _verdict(reliance=_rel(None), n=1).startswith("A single expert")


# ------------------------------------------------------------------------------ score changes
def test_a_replacement_score_change_is_paired_over_seeds_with_a_ci():
    seeds = tuple(range(100000, 100010))
    base = tuple(float(50 + 10 * (i % 3)) for i in range(10))
    hit = RelianceFigure(mn.GRAPH_MEAN, 0.2, 0.1, 100, mean_score=float(np.mean(base)) - 20,
                         baseline_mean_score=float(np.mean(base)), episodes=10, seeds=seeds,
                         scores=tuple(b - 20 + (i % 2) for i, b in enumerate(base)),
                         baseline_scores=base)  # fmt: skip
    sd = hit.score_diff
    assert sd is not None and sd.n == 10 and sd.sign == -1 and sd.diff == pytest.approx(-19.5)
    rel = {**_rel(0.2), mn.GRAPH_MEAN: hit}
    v = _verdict(reliance=rel)
    assert "score -19.5 [" in v and "over 10 seeds" in v and "undetermined" not in v
    # the same means, but the per-seed differences straddle 0: undetermined
    noisy = tuple(b + (40 if i % 2 else -80) for i, b in enumerate(base))
    flat = RelianceFigure(mn.GRAPH_MEAN, 0.2, 0.1, 100, mean_score=30.0, baseline_mean_score=50.0,
                          episodes=10, seeds=seeds, scores=noisy, baseline_scores=base)  # fmt: skip
    assert flat.score_diff is not None and flat.score_diff.sign == 0
    assert "CI includes 0: undetermined" in _verdict(reliance={**_rel(0.2), mn.GRAPH_MEAN: flat})
    # stored and read back: the same figure
    back = RelianceFigure.from_json(mn.GRAPH_MEAN, hit.to_json())
    assert back is not None and back.score_diff == sd
    # an old entry with unpaired means only: no CI, not a finding
    old = RelianceFigure(mn.GRAPH_MEAN, 0.2, 0.1, 100, mean_score=30.0, baseline_mean_score=50.6)
    assert "no per-seed figures: no CI, not a finding" in _verdict(
        reliance={**_rel(0.2), mn.GRAPH_MEAN: old}
    )


def test_a_failed_bootstrap_gives_no_interval_and_decides_nothing(monkeypatch):
    a = {s: float(s % 7) for s in range(20)}
    b = {s: v + 5.0 for s, v in a.items()}
    assert PairedDiff.of(a, b).sign == 1
    for failed in ((5.0, None), (5.0, [None, None]), (None, None)):
        monkeypatch.setattr(stats, "paired_diff_ci", lambda *x, _f=failed, **k: _f)
        d = PairedDiff.of(a, b)
        assert d.ci is None and d.sign == 0
    # one pair is never an interval
    monkeypatch.undo()
    assert PairedDiff.of({1: 0.0}, {1: 3.0}).ci is None


def test_hint_comparisons_are_paired():
    seeds = tuple(range(12))
    pol = tuple(float(60 + 5 * (i % 4)) for i in seeds)
    h = HintReliance(0.36, 500, float(np.mean(pol)), 15.0, 140.0, 0.97, 12.0, 12, seeds, pol,
                     tuple(p - 50 + (i % 3) for i, p in enumerate(pol)),
                     tuple(p + 70 - (i % 5) for i, p in enumerate(pol)), tuple(12.0 for _ in seeds))  # fmt: skip
    back = HintReliance.from_json(h.to_json())
    assert back is not None and back.zeroed_diff is not None and back.zeroed_diff.sign == -1
    assert back.follower_diff is not None and back.follower_diff.sign == 1
    v = _verdict(reliance=_rel(0.2), hint=h)
    assert "with the hint inputs zeroed" in v and "(paired difference -49." in v


# ------------------------------------------------------------------------------ interventions
def _expert(name: str, rng: np.random.Generator, strong: str | None, n: int = 12,
            gap: float = 1.0, noise: float = 0.05) -> PlayerResult:  # fmt: skip
    """An expert forced on ``n`` seeds; its outcome is better by ``gap`` in scenario ``strong``."""
    seeds = tuple(range(100000, 100000 + n))
    base = {"hp_lost_per_step": 1.0, "kills_per_combat_state": 0.2, "new_cells_per_step": 0.5}
    sign = {"hp_lost_per_step": -1.0, "kills_per_combat_state": 1.0, "new_cells_per_step": 1.0}
    scen = {"hp_lost_per_step": "survival", "kills_per_combat_state": "combat",
            "new_cells_per_step": "exploration"}  # fmt: skip
    per = {
        k: tuple(float(v + (sign[k] * gap * 0.2 if scen[k] == strong else 0.0)
                       + rng.normal(0, noise)) for _ in seeds)
        for k, v in base.items()
    }  # fmt: skip
    scores = tuple(float(50 + (30 * gap if strong == "general" else 0) + rng.normal(0, noise * 100))
                   for _ in seeds)  # fmt: skip
    outcomes = ScenarioOutcomes(100, float(np.mean(per["hp_lost_per_step"])), 100,
                                float(np.mean(per["kills_per_combat_state"])), 0.0, 100,
                                float(np.mean(per["new_cells_per_step"])))  # fmt: skip
    return PlayerResult(name, n, float(np.mean(scores)), 1.0, 0.0, outcomes, seeds, scores, per)


#: The router's heatmap of a run without the routing prior: the expert *named* combat gets the
#: most weight in survival states, and so on (names permuted against what they do).
PERMUTED = {"survival": "combat", "combat": "exploration", "exploration": "general",
            "general": "survival"}  # fmt: skip


def _table(owner_of: dict[str, str]) -> dict:
    scen = ["survival", "combat", "exploration", "general"]
    rows = [[0.7 if owner_of[s] == e else 0.1 for e in NAMES] for s in scen]
    return {"scenarios": scen, "experts": NAMES, "mean_alpha": rows}


def test_own_scenario_is_the_heatmaps_column_maximum_without_the_prior():
    table = _table(PERMUTED)
    own, src = own_scenarios(table, NAMES, prior_on=False)
    assert src == OWN_FROM_ROUTER
    assert own == {"combat": "survival", "exploration": "combat", "general": "exploration",
                   "survival": "general"}  # fmt: skip
    own_p, src_p = own_scenarios(table, NAMES, prior_on=True)
    assert src_p == OWN_FROM_NAMES and own_p == {n: n for n in NAMES}


def test_experts_specialised_under_permuted_names_read_as_specialised():
    rng = np.random.default_rng(0)
    results = {e: _expert(e, rng, strong=s) for s, e in PERMUTED.items()}
    results["router"] = _expert("router", rng, strong=None, gap=5)  # never a candidate
    own, src = own_scenarios(_table(PERMUTED), NAMES, prior_on=False)
    reading = read_interventions(results, NAMES, own, src, n_resamples=500)
    assert reading.best == PERMUTED
    assert all(r.determined for r in reading.rankings.values())
    assert {e: reading.status(e) for e in NAMES} == {e: SPECIALISED for e in NAMES}
    v = _verdict(reliance=_rel(0.2), reading=reading)
    assert "Specialised: survival, combat, exploration, general." in v
    assert "the routing prior is off: names are labels" in v
    # read by their names (as if the prior bound them), the same experts are specialists of the
    # wrong scenarios: not specialised
    by_name = read_interventions(results, NAMES, n_resamples=500)
    assert by_name.own_source == OWN_FROM_NAMES
    assert {by_name.status(e) for e in NAMES} == {NOT_SPECIALISED}
    # stored and read back, the decisions are rebuilt from the margins
    back = InterventionReading.from_json(reading.to_json())
    assert back is not None and back.best == PERMUTED and back.experts_with(SPECIALISED) == NAMES


def test_overlapping_intervals_read_undetermined():
    rng = np.random.default_rng(1)
    # each expert a little better in its own scenario, far inside the noise of 12 seeds
    results = {e: _expert(e, rng, strong=s, gap=0.05, noise=0.3) for s, e in PERMUTED.items()}
    own, src = own_scenarios(_table(PERMUTED), NAMES, prior_on=False)
    reading = read_interventions(results, NAMES, own, src, n_resamples=500)
    assert all(r.point_best is not None for r in reading.rankings.values())
    assert not any(r.determined for r in reading.rankings.values())
    assert reading.best == {s: None for s in PERMUTED}
    assert {reading.status(e) for e in NAMES} == {UNDETERMINED}
    v = _verdict(reliance=_rel(0.2), reading=reading)
    assert "undetermined (point best" in v and "Undetermined: survival, combat" in v
    assert "Specialised" not in v


def test_an_expert_best_everywhere_is_stronger_not_specialised():
    rng = np.random.default_rng(2)
    results = {e: _expert(e, rng, strong=None) for e in NAMES}
    strong = _expert("combat", rng, strong=None)
    per = {k: tuple(v + (-0.5 if k == "hp_lost_per_step" else 0.5) for v in vals)
           for k, vals in strong.per_seed.items()}  # fmt: skip
    results["combat"] = PlayerResult(
        "combat", strong.episodes, (strong.mean_score or 0) + 100, 1.0, 0.0,
        ScenarioOutcomes(100, float(np.mean(per["hp_lost_per_step"])), 100,
                         float(np.mean(per["kills_per_combat_state"])), 0.0, 100,
                         float(np.mean(per["new_cells_per_step"]))),
        strong.seeds, tuple(s + 100 for s in strong.scores), per,
    )  # fmt: skip
    own = {"combat": "combat", "survival": "survival", "exploration": "exploration",
           "general": "general"}  # fmt: skip
    reading = read_interventions(results, NAMES, own, OWN_FROM_ROUTER, n_resamples=500)
    assert set(reading.best.values()) == {"combat"}
    assert {e: reading.status(e) for e in NAMES} == {e: NOT_SPECIALISED for e in NAMES}


def test_an_old_reading_without_rankings_is_undetermined():
    old = {"best_expert": {"survival": "survival"}, "specialised": ["survival"],
           "not_specialised": ["combat"]}  # fmt: skip
    r = InterventionReading.from_json(old)
    assert r is not None and r.rankings == {} and r.experts_with(SPECIALISED) == []
    fig = VerdictFigures(E, reliance=_rel(0.2), reading=r)
    assert "no per-seed figures" in specialization_verdict(fig)


def test_evaluate_prints_the_verdict_built_from_the_numbers():
    from nethack_moe.cli.eval_text import _eval_rows

    summary = {
        "n": 2, "mean": 1.0, "std": 0.0, "ci_mean": None, "median": 1.0, "iqm": 1.0,
        "ci_iqm": None, "max": 1.0, "died": 0.0, "depth": 1.0, "length": 10.0,
        "routing": {"expert_names": NAMES, "alpha_entropy": 0.3, "alpha_entropy_std": 0.1,
                    "usage_entropy": 1.38, "mi": 1.08, "effective_experts": 3.98,
                    "usage": [0.25] * 4, "argmax_share": [0.25] * 4, "verdict": "STORED ROUTING"},
        "specialization": _info(0.05, 0.01, 0.005, 0.10, 0.30).to_json(),
        "reliance": {}, "reliance_measured": False,
        "verdict": "The router routes on neither h_state nor h_graph: there is no h_graph.",
    }  # fmt: skip
    rows = dict(_eval_rows({"summary": summary}))
    assert "STORED ROUTING" not in rows["routing figures"]
    assert rows["routing figures"].startswith("state-dependent routing")
    assert "routes on neither" not in rows["verdict"] and "was not measured" in rows["verdict"]
    assert "no more scenario information than chance" in rows["verdict"]
    assert rows["scenario information"].endswith("against the within-episode shift null: p = 0.300")
