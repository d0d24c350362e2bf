"""Exact values of the specialization figures and of the verdict's decisions.

Written from the survivors of a mutation run (``docs/testing.md``) on the functions that compute
figures (``analysis/specialization.py``: MI, entropy, the permutation and within-episode-shift
nulls, the forced-expert ranking) and the decisions built from them (``analysis/verdict.py``: the
stricter null, paired differences, the reliance verb, beaten / specialised, an expert's own
scenario, the scenario sentence). Every expected value is derived by hand in a comment or taken
from :func:`nethack_moe.metrics.stats.paired_diff_ci` called directly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nethack_moe import features as F
from nethack_moe.metrics.information import (
    _episode_shift_index,
    entropy_of_labels,
    mutual_information,
    scenario_information,
)
from nethack_moe.metrics.paired import PairedDiff
from nethack_moe.metrics.reliance import reliance_on_states, sample_rows
from nethack_moe.metrics.router_figures import (
    MIN_RELIANCE,
    NOT_SPECIALISED,
    OWN_FROM_NAMES,
    OWN_FROM_ROUTER,
    PERMUTATION_NULL,
    SHIFT_NULL,
    SPECIALISED,
    UNDETERMINED,
    InterventionReading,
    NullChoice,
    RelianceFigure,
    ScenarioInformation,
    ScenarioRanking,
    own_scenarios,
    stricter_null,
)
from nethack_moe.metrics.specialization import PlayerResult, ScenarioOutcomes, rank_scenario
from nethack_moe.metrics.stats import paired_diff_ci
from nethack_moe.metrics.verdict import reliance_verb, scenario_sentence
from nethack_moe.models.acting import Obs
from nethack_moe.models.policy import Encoded, PolicyOutput

LN2 = math.log(2)


# ------------------------------------------------------------------------------ entropy, MI
def test_entropy_of_labels_by_hand():
    # 0, 0, 1, 2 of 4 labels: p = 1/2, 1/4, 1/4 (label 3 empty): H = 1/2 ln 2 + 2 * 1/4 ln 4
    assert entropy_of_labels(np.array([0, 0, 1, 2]), 4) == pytest.approx(1.5 * LN2)
    assert entropy_of_labels(np.array([3, 3, 3]), 4) == 0.0
    assert entropy_of_labels(np.array([], np.int64), 4) == 0.0
    assert entropy_of_labels(np.array([2]), 4) == 0.0  # one label: p = 1
    # labels as floats are the same labels
    assert entropy_of_labels(np.array([0.0, 0.0, 1.0, 2.0]), 4) == pytest.approx(1.5 * LN2)


def test_mutual_information_by_hand():
    # a = 0 0 1 1, b = 0 1 1 1: joint (0,0) = (0,1) = 1/4, (1,1) = 1/2; p(a) = 1/2, 1/2,
    # p(b) = 1/4, 3/4: I = 1/4 ln(1/4 / 1/8) + 1/4 ln(1/4 / 3/8) + 1/2 ln(1/2 / 3/8)
    want = 0.25 * math.log(2) + 0.25 * math.log(2 / 3) + 0.5 * math.log(4 / 3)
    assert mutual_information(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2, 2) == (
        pytest.approx(want)
    )
    # 3 experts x 2 scenarios (not square): a = 0 1 2 2, b = 0 0 1 1 -> b is a function of a,
    # I = H(b) = ln 2
    assert mutual_information(np.array([0, 1, 2, 2]), np.array([0, 0, 1, 1]), 3, 2) == (
        pytest.approx(LN2)
    )
    # 2 experts x 3 scenarios: a = 0 0 1 1, b = 0 1 2 2 -> a is a function of b, I = H(a) = ln 2
    assert mutual_information(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 2]), 2, 3) == (
        pytest.approx(LN2)
    )
    assert mutual_information(np.array([], np.int64), np.array([], np.int64), 2, 2) == 0.0
    # labels as floats are the same labels
    fa, fb = np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0])
    assert mutual_information(fa, np.array([0, 1, 1, 1]), 2, 2) == pytest.approx(want)
    assert mutual_information(np.array([0, 0, 1, 1]), fb, 2, 2) == pytest.approx(want)


# ------------------------------------------------------------------------------ the nulls
def test_the_permutation_null_of_four_states_by_hand():
    # a = b = 0 0 1 1: I = ln 2. A permutation of a puts its two 0s on positions {0,1} or {2,3}
    # (I = ln 2, 2 of the 6 arrangements) or straddles them (I = 0). So every permuted figure is
    # ln 2 or 0: with k draws at ln 2 of P, mean = k ln 2 / P and p = (1 + k) / (1 + P), the
    # draws at ln 2 counted as at least the figure (equal up to rounding)
    P = 60
    info = scenario_information([0, 0, 1, 1], [0, 0, 1, 1], 2, 2, permutations=P, seed=3)
    assert info.mi == pytest.approx(LN2) and info.scenario_entropy == pytest.approx(LN2)
    assert info.permutations == P and info.n_states == 4
    k = info.shuffled_mean * P / LN2
    assert k == pytest.approx(round(k)) and 5 < k < 40  # about a third of 60
    assert info.p_value == pytest.approx((1 + round(k)) / (1 + P))
    assert info.shuffled_p95 == pytest.approx(LN2)  # a third of the draws are at ln 2
    assert info.shifted_p95 is None and info.shifted_p_value is None  # no episode ids
    # the seed is the seed: the same draws again, other draws with another seed
    again = scenario_information([0, 0, 1, 1], [0, 0, 1, 1], 2, 2, permutations=P, seed=3)
    assert again == info
    other = [
        scenario_information([0, 0, 1, 1], [0, 0, 1, 1], 2, 2, permutations=P, seed=s).p_value
        for s in range(4, 10)
    ]
    assert any(p != info.p_value for p in other)


def test_the_permutation_p95_of_a_rare_match_is_far_below_the_figure():
    # one state of 30 is expert 1 and scenario 1: I = H(1/30). A permutation puts the 1 back
    # on that state with chance 1/30 (I again) and otherwise gives I = 1/30 * ln(...) < figure:
    # with 1 of 30 below 5 %, the 95th percentile is a mismatch value, below the figure
    a = np.zeros(30, np.int64)
    a[7] = 1
    info = scenario_information(a, a, 2, 2, permutations=400, seed=0)
    h = -(1 / 30) * math.log(1 / 30) - (29 / 30) * math.log(29 / 30)
    assert info.mi == pytest.approx(h) and info.scenario_entropy == pytest.approx(h)
    assert info.shuffled_p95 < info.mi / 10
    assert info.p_value < 0.1


def test_the_within_episode_shift_null_by_hand():
    # episodes {0,1} and {2,3}, in each expert = scenario = 0 then 1: I = ln 2. A shift rotates
    # each episode by 0 or 1: both the same way keeps I = ln 2 (a swap is a relabelling); one
    # each way gives a = 0 1 1 0 against b = 0 1 0 1, I = 0. Half the draws are ln 2.
    P = 200
    info = scenario_information(
        [0, 1, 0, 1], [0, 1, 0, 1], 2, 2, permutations=P, seed=3, episode_ids=[4, 4, 6, 6]
    )
    assert info.shifted_p95 == pytest.approx(LN2)
    k = (info.shifted_p_value or 0) * (1 + P) - 1
    assert k == pytest.approx(round(k)) and 60 < k < 140
    # one state per episode: every shift is the identity, the null is the figure itself
    ident = scenario_information(
        [0, 1, 0, 1], [0, 1, 0, 1], 2, 2, permutations=20, episode_ids=[1, 2, 3, 4]
    )
    assert ident.shifted_p95 == pytest.approx(LN2) and ident.shifted_p_value == 1.0
    empty = scenario_information([], [], 2, 2, permutations=5, episode_ids=[])
    assert empty.shifted_p95 is None and empty.shifted_p_value is None
    assert empty.mi == 0.0 and empty.p_value == 1.0 and empty.n_states == 0


def test_scenario_information_refuses_bad_input():
    with pytest.raises(ValueError, match=r"argmax \(3,\) and labels \(2,\) differ in shape"):
        scenario_information([0, 1, 0], [0, 1], 2, 2)
    with pytest.raises(ValueError, match="permutations=0 must be >= 1"):
        scenario_information([0, 1], [0, 1], 2, 2, permutations=0)
    one = scenario_information([0, 1], [0, 1], 2, 2, permutations=1)
    assert one.permutations == 1 and one.p_value in (0.5, 1.0)


def test_episode_shift_index_rotates_each_episode_on_its_own():
    e = np.array([5, 5, 5, 7, 7, 9])
    seen = set()
    for s in range(40):
        idx = _episode_shift_index(e, np.random.default_rng(s))
        first = tuple(idx[:3])
        assert first in {(0, 1, 2), (1, 2, 0), (2, 0, 1)}
        assert tuple(idx[3:5]) in {(3, 4), (4, 3)} and idx[5] == 5
        seen.add(first)
    assert len(seen) == 3  # every rotation of the 3-row episode is drawn


@pytest.mark.parametrize(("ids", "dup"), [([5, 7, 5], 5), ([5, 7, 7, 9, 7], 7)])
def test_episode_shift_index_names_the_episode_that_is_split(ids, dup):
    with pytest.raises(ValueError) as exc:
        _episode_shift_index(np.array(ids), np.random.default_rng(0))
    assert str(exc.value) == (
        f"episode ids are not contiguous per episode (episode {dup} appears in two separate "
        "runs of rows): sort the state log by episode before the within-episode shifts"
    )


# ------------------------------------------------------------------------------ rank_scenario
SEEDS = (1, 2, 3)


def _player(name: str, *, hp=None, kills=None, scores=(0.0, 0.0, 0.0)) -> PlayerResult:
    per = {}
    if hp is not None:
        per["hp_lost_per_step"] = tuple(hp)
    if kills is not None:
        per["kills_per_combat_state"] = tuple(kills)
    mean = lambda v: None if v is None else float(np.mean(v))  # noqa: E731
    o = ScenarioOutcomes(3, mean(hp), 3, mean(kills), None, 0, None)
    return PlayerResult(name, 3, float(np.mean(scores)), 1.0, 0.0, o, SEEDS, tuple(scores), per)


def test_rank_scenario_lower_is_better_and_its_margins():
    # HP lost (lower is better): a 1 2 3 (mean 2), b 4 5 6 (5), c 2 2 9 (13/3): a is the point
    # best; its margin over b is b - a = 3 on every seed (constant: [3, 3]), over c the
    # differences 1, 0, 6 (mean 7/3) with paired_diff_ci's interval
    res = {
        "a": _player("a", hp=(1, 2, 3)),
        "b": _player("b", hp=(4, 5, 6)),
        "c": _player("c", hp=(2, 2, 9)),
    }
    r = rank_scenario("survival", res, ["c", "b", "a", "absent"], n_resamples=300, seed=7)
    assert (r.scenario, r.outcome, r.higher_is_better, r.point_best) == (
        "survival",
        "hp_lost_per_step",
        False,
        "a",
    )
    assert set(r.margins) == {"b", "c"}
    assert r.margins["b"] == PairedDiff(3.0, (3.0, 3.0), 3)
    d, ci = paired_diff_ci([1, 2, 3], [2, 2, 9], n_resamples=300, seed=7)
    assert r.margins["c"].diff == pytest.approx(7 / 3) and r.margins["c"].n == 3
    assert r.margins["c"].ci == pytest.approx(tuple(ci))
    # both intervals lie above 0 (c's, from three differences 1, 0, 6, is about [0.27, 6]):
    # a is the determined best
    assert r.margins["c"].ci[0] > 0 and r.margins["b"].sign == 1 and r.best == "a"


def test_rank_scenario_higher_is_better_and_the_score():
    # kills (higher is better): a 1 2 3, b 4 5 6: b is the point best, its margin over a is
    # b - a = 3 (positive = the best is better, whatever the direction)
    res = {"a": _player("a", kills=(1, 2, 3)), "b": _player("b", kills=(4, 5, 6))}
    r = rank_scenario("combat", res, ["a", "b"], n_resamples=200)
    assert r.point_best == "b" and r.higher_is_better is True
    assert r.margins == {"a": PairedDiff(3.0, (3.0, 3.0), 3)} and r.best == "b"
    # general: the mean score and the per-seed scores
    res = {
        "a": _player("a", scores=(10, 20, 30)),
        "b": _player("b", scores=(11, 22, 33)),
    }
    r = rank_scenario("general", res, ["a", "b"], n_resamples=200)
    assert r.outcome == "mean_score" and r.point_best == "b"
    # differences 1, 2, 3: mean 2
    assert r.margins["a"].diff == pytest.approx(2.0) and r.margins["a"].n == 3


def test_rank_scenario_ties_and_missing_values_have_no_best():
    tie = {
        "a": _player("a", kills=(1, 2, 3)),
        "b": _player("b", kills=(3, 2, 1 + 1e-13)),  # equal means up to rounding
    }
    r = rank_scenario("combat", tie, ["a", "b"])
    assert r.point_best is None and r.margins == {}
    near = {"a": _player("a", kills=(1, 2, 3)), "b": _player("b", kills=(1, 2, 3.00001))}
    assert rank_scenario("combat", near, ["a", "b"], n_resamples=100).point_best == "b"
    # no values: an expert with no outcome of that scenario, or not played at all
    none = {"a": _player("a")}
    r = rank_scenario("survival", none, ["a", "b"])
    assert r == ScenarioRanking("survival", "hp_lost_per_step", False, None)
    bare = {"a": PlayerResult("a", 0, None, None, None)}
    assert rank_scenario("combat", bare, ["a"]).point_best is None


# ------------------------------------------------------------------------------ verdict decisions
def test_stricter_null_by_hand():
    assert stricter_null(0.1, 0.2, 0.1, 0.3) == NullChoice(SHIFT_NULL, 0.1, 0.3)  # tie: shifts
    assert stricter_null(0.1, 0.2, 0.5, None) == NullChoice(SHIFT_NULL, 0.5, None)
    assert stricter_null(0.1, 0.2, 0.09, 0.3) == NullChoice(PERMUTATION_NULL, 0.1, 0.2)
    assert stricter_null(0.1, None, None, 0.3) == NullChoice(PERMUTATION_NULL, 0.1, None)


def test_paired_diff_of_pairs_the_seeds_both_sides_have():
    # common seeds with a finite value on both sides: 1, 2, 5, 8 (3: None, 4: NaN, 7 and 9 on
    # one side only), taken in seed order: a = 1 2 0 3, b = 2 4 4 3, differences 1 2 4 0
    a = {8: 3.0, 1: 1.0, 2: 2.0, 3: None, 4: 5.0, 7: 1.0, 5: 0.0}
    b = {5: 4.0, 2: 4.0, 1: 2.0, 3: 1.0, 4: float("nan"), 9: 3.0, 8: 3.0}
    pd = PairedDiff.of(a, b, n_resamples=300, seed=5)
    d, ci = paired_diff_ci([1, 2, 0, 3], [2, 4, 4, 3], n_resamples=300, seed=5)
    assert pd.diff == pytest.approx(7 / 4) and pd.n == 4 and d == pytest.approx(7 / 4)
    assert pd.ci == pytest.approx(tuple(ci))
    dflt = PairedDiff.of(a, b)  # defaults: 2000 resamples, seed 0
    assert dflt.ci == pytest.approx(tuple(paired_diff_ci([1, 2, 0, 3], [2, 4, 4, 3])[1]))
    # one pair: the difference, no interval (one pair is not a CI); none: nothing
    assert PairedDiff.of({1: 1.0}, {1: 4.0}) == PairedDiff(3.0, None, 1)
    assert PairedDiff.of({1: 1.0}, {2: 4.0}) == PairedDiff(None, None, 0)
    assert PairedDiff.of({1: None}, {1: 4.0}) == PairedDiff(None, None, 0)


def test_reliance_verb_at_the_threshold():
    assert MIN_RELIANCE == 0.05
    fig = lambda x: RelianceFigure("graph_mean", x, 0.0, 10)  # noqa: E731
    assert reliance_verb(fig(0.05)) == "uses" and reliance_verb(fig(0.0499)) == "ignores"
    assert reliance_verb(fig(1.0)) == "uses" and reliance_verb(fig(0.0)) == "ignores"


ABOVE = PairedDiff(2.0, (0.5, 3.5), 8)
ACROSS = PairedDiff(1.0, (-0.5, 2.5), 8)


def test_beaten_needs_another_point_best_and_an_interval_above_zero():
    r = ScenarioRanking("combat", "k", True, "best", {"x": ABOVE, "y": ACROSS})
    assert r.beaten("x") is True
    assert r.beaten("y") is False  # the interval reaches 0
    assert r.beaten("best") is False and r.beaten("z") is False
    assert ScenarioRanking("combat", "k", True, None, {"x": ABOVE}).beaten("x") is False
    assert ScenarioRanking("combat", "k", True, "x", {"x": ABOVE}).beaten("x") is False


def _ranking(s: str, best: str | None, margins: dict[str, PairedDiff]) -> ScenarioRanking:
    return ScenarioRanking(s, "k", True, best, margins)


def test_status_of_each_branch():
    rk = {
        # survival: a is the determined best
        "survival": _ranking("survival", "a", {"b": ABOVE, "c": ABOVE}),
        # combat: b is the point best, undetermined (its interval over c reaches 0)
        "combat": _ranking("combat", "b", {"a": ABOVE, "c": ACROSS}),
        # exploration: c is the determined best
        "exploration": _ranking("exploration", "c", {"a": ABOVE, "b": ABOVE}),
    }
    own = {"a": "survival", "b": "combat", "c": "combat", "d": None, "e": "general"}
    r = InterventionReading(rk, own, OWN_FROM_ROUTER)
    assert r.status("a") == SPECIALISED  # best in its own, point best nowhere else
    assert r.status("b") == UNDETERMINED  # point best in its own, not determined
    assert r.status("c") == NOT_SPECIALISED  # the determined best elsewhere
    assert r.status("d") == UNDETERMINED and r.status("e") == UNDETERMINED  # no own ranking
    assert r.status("nobody") == UNDETERMINED
    # a beaten in its own scenario: not specialised
    r2 = InterventionReading(rk, {"b": "survival"}, OWN_FROM_ROUTER)
    assert r2.status("b") == NOT_SPECIALISED
    # determined best in its own, but the point best (undetermined) in another: undetermined
    rk3 = dict(rk, combat=_ranking("combat", "a", {"b": ACROSS}))
    assert InterventionReading(rk3, {"a": "survival"}, OWN_FROM_ROUTER).status("a") == (
        UNDETERMINED
    )
    assert r.experts_with(SPECIALISED) == ["a"]


def test_own_scenarios_from_the_column_maximum_or_the_names():
    table = {
        "scenarios": ["survival", "combat", "exploration"],
        "experts": ["survival", "combat", "x", "y"],
        "mean_alpha": [
            [0.1, 0.7, 0.0, 0.2],  # survival
            [0.6, 0.2, 0.0, 0.2],  # combat
            [0.3, 0.1, 0.0, 0.6],  # exploration
        ],
    }
    names = ["survival", "combat", "x", "y", "z"]
    # prior off: the column maximum (survival -> combat, combat -> survival); x is never
    # weighted (no scenario), z is not in the table
    own, src = own_scenarios(table, names, prior_on=False)
    assert src == OWN_FROM_ROUTER
    assert own == {
        "survival": "combat",
        "combat": "survival",
        "x": None,
        "y": "exploration",
        "z": None,
    }
    # prior on: a name that is a scenario owns it; the others still from the router
    own, src = own_scenarios(table, names, prior_on=True)
    assert src == OWN_FROM_NAMES
    assert own == {"survival": "survival", "combat": "combat", "x": None, "y": "exploration",
                   "z": None}  # fmt: skip
    # no expert list in the table: the names given, in order; rows that are missing or short
    # are skipped
    t2 = {"scenarios": ["survival", "combat", "exploration"],
          "mean_alpha": [None, [0.5, 0.9], [0.7]]}  # fmt: skip
    own, _ = own_scenarios(t2, ["p", "q"], prior_on=False)
    assert own == {"p": "exploration", "q": "combat"}
    assert own_scenarios({}, ["p"], prior_on=False) == ({"p": None}, OWN_FROM_ROUTER)


def _info(mi, shuffled_p95, p, shifted_p95=None, shifted_p=None, h=1.0):
    return ScenarioInformation(mi, h, 0.0, shuffled_p95, p, 200, 1000, shifted_p95, shifted_p)


def test_scenario_sentence_each_branch_in_full():
    assert scenario_sentence(_info(0.3, 0.08, 0.004, 0.05, 0.02)) == (
        "scenario information 0.3000 nats (30.0 % of H(scenario)) against its permutation null "
        "(p95 0.0800, p = 0.004; within-episode-shift p95 0.0500): the expert choice depends on "
        "the scenario"
    )
    assert scenario_sentence(_info(0.05, 0.01, 0.005, 0.10, 0.30)) == (
        "scenario information 0.0500 nats (5.0 % of H(scenario)) against its within-episode "
        "shift null (p95 0.1000, p = 0.300; permutation p95 0.0100): the expert choice carries "
        "no more scenario information than chance"
    )
    # no shifts: nothing about them; 4.9 % of H is below the 5 % share
    assert scenario_sentence(_info(0.049, 0.01, 0.005)) == (
        "scenario information 0.0490 nats (4.9 % of H(scenario)) against its permutation null "
        "(p95 0.0100, p = 0.005): above chance but below 5 % of H(scenario), the experts are "
        "not split by scenario"
    )
    # exactly 5 % counts; MI equal to the p95 is not above it
    assert scenario_sentence(_info(0.05, 0.01, 0.005)).endswith("depends on the scenario")
    assert scenario_sentence(_info(0.01, 0.01, 0.5)).endswith(
        "no more scenario information than chance"
    )
    # every state in one scenario: no share, not a split
    assert scenario_sentence(_info(0.02, 0.01, 0.005, h=0.0)).endswith(
        "the experts are not split by scenario"
    )


# ------------------------------------------------------------------------------ reliance by hand
class _HandModel(torch.nn.Module):
    """Two experts, two actions, every figure computable by hand.

    ``h_state = [s, 10 s]``; the router reads only ``s``: α = [p, 1 - p] with
    ``p = clamp(0.5 + s / 4, 0, 1)``. ``h_graph = [g]``; the policy reads only ``g``:
    logits ``[g, 0]``. It records the batch sizes it encodes and the routing arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))  # a device for encode_all
        self.encoded: list[int] = []
        self.head_args: list[tuple] = []

    def encode(self, state, crop, atoms):
        self.encoded.append(int(state.shape[0]))
        s, g = state[:, :1], state[:, 1:2]
        return Encoded(torch.cat([s, 10 * s], 1), g.clone(), None)

    def head(self, enc, routing=None, temperature=None, alpha_override=None):
        self.head_args.append((routing, temperature))
        p = (0.5 + enc.h_state[:, 0] / 4).clamp(0.0, 1.0)
        alpha = torch.stack([p, 1 - p], 1)
        logits = torch.cat([enc.h_graph, torch.zeros_like(enc.h_graph)], 1)
        return PolicyOutput(logits, logits[:, 0], alpha, alpha, logits[:, None], None)


def _hand_obs(s: list[float], g: list[float]) -> Obs:
    n = len(s)
    state = torch.zeros(n, F.STATE_DIM)
    state[:, 0], state[:, 1] = torch.tensor(s), torch.tensor(g)
    return Obs(
        state, torch.zeros(n, 9, 9, dtype=torch.int16), torch.zeros(n, F.N_ATOMS, dtype=torch.bool)
    )


def _kl2(p: float, q: float) -> float:
    """KL of two-action policies [p, 1 - p] || [q, 1 - q]."""
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


S4 = [1.0, -1.0, 1.0, 3.0]
G4 = [math.log(3), 0.0, 0.0, math.log(3)]


def test_reliance_figures_by_hand():
    # s = 1 -1 1 3 (mean 1): p = .75 .25 .75 1, argmax expert 0 1 0 0.
    #   state_mean (s -> 1, p -> .75): argmax 0 0 0 0, changes on 1 of 4 states; the weights
    #   move by |Δp| = 0 .5 0 .25, mean .1875; the policy does not read s: KL 0
    #   state_zero (s -> 0, p -> .5): argmax of a tie is expert 0, again 1 of 4; |Δp| = .25 .25
    #   .25 .5, mean .3125
    # g = ln3 0 0 ln3 (mean ln3 / 2): π(action 0) = 3/4 1/2 1/2 3/4; the router does not read g.
    #   graph_mean: π -> √3 / (√3 + 1) on every state; graph_zero: π -> 1/2
    model = _HandModel()
    res = reliance_on_states(model, _hand_obs(S4, G4), "sparsemax", 0.7, batch=3)  # type: ignore[arg-type]
    assert model.encoded == [3, 1]  # in batches of 3
    assert set(model.head_args) == {("sparsemax", 0.7)} and len(model.head_args) == 5
    f = res.figures
    assert {k: v.replacement for k, v in f.items() if v} == {k: k for k in f}
    sm, sz, gm, gz = f["state_mean"], f["state_zero"], f["graph_mean"], f["graph_zero"]
    assert sm is not None and sz is not None and gm is not None and gz is not None
    assert (sm.argmax_change, sm.alpha_change, sm.policy_kl, sm.n_states) == (
        0.25, pytest.approx(0.1875), pytest.approx(0.0, abs=1e-7), 4)  # fmt: skip
    assert (sz.argmax_change, sz.alpha_change) == (0.25, pytest.approx(0.3125))
    assert sz.policy_kl == pytest.approx(0.0, abs=1e-7)
    q = math.sqrt(3) / (math.sqrt(3) + 1)
    assert gm.argmax_change == 0.0 and gm.alpha_change == 0.0
    assert gm.policy_kl == pytest.approx((2 * _kl2(0.75, q) + 2 * _kl2(0.5, q)) / 4, rel=1e-5)
    assert gz.argmax_change == 0.0
    assert gz.policy_kl == pytest.approx(2 * _kl2(0.75, 0.5) / 4, rel=1e-5)
    assert torch.allclose(res.means["h_state"], torch.tensor([1.0, 10.0]))
    assert torch.allclose(res.means["h_graph"], torch.tensor([math.log(3) / 2]))


def test_reliance_samples_its_states_with_the_seed():
    # 2 of the 4 states: the mean replaces s by the mean of the two sampled s
    for seed in (0, 1):  # rows 2, 3 (mean s 2) and rows 1, 2 (mean s 0)
        rows = sample_rows(4, 2, seed)
        res = reliance_on_states(_HandModel(), _hand_obs(S4, G4), max_states=2, seed=seed)  # type: ignore[arg-type]
        want = float(np.mean([S4[i] for i in rows]))
        assert res.means["h_state"][0].item() == pytest.approx(want)
        assert res.figures["state_mean"].n_states == 2  # type: ignore[union-attr]
    assert list(sample_rows(4, 2, 0)) != list(sample_rows(4, 2, 1))
    dflt = reliance_on_states(_HandModel(), _hand_obs(S4, G4), max_states=2)  # type: ignore[arg-type]
    assert dflt.means["h_state"][0].item() == pytest.approx(
        np.mean([S4[i] for i in sample_rows(4, 2, 0)])
    )
    # default batch 512: 600 states in two batches
    model = _HandModel()
    reliance_on_states(model, _hand_obs(S4 * 150, G4 * 150))  # type: ignore[arg-type]
    assert model.encoded == [512, 88]


def test_reliance_of_one_state_and_of_none():
    res = reliance_on_states(_HandModel(), _hand_obs([1.0], [0.0]))  # type: ignore[arg-type]
    f = res.figures["state_zero"]
    # one state s = 1: p = .75 -> .5 under zeros, argmax stays 0 (the tie goes to expert 0)
    assert f is not None and f.n_states == 1 and f.alpha_change == pytest.approx(0.25)
    empty = reliance_on_states(_HandModel(), _hand_obs([], []))  # type: ignore[arg-type]
    assert empty.figures == dict.fromkeys(["graph_mean", "graph_zero", "state_mean", "state_zero"])
    assert empty.means == {}


# ------------------------------------------------------------------------------ defaults, edges
# 20 per-seed differences with few ties: their bootstrap interval moves with the seed and the
# number of resamples
D20 = [1.068, 3.719, 3.449, -0.021, 0.404, -0.055, 2.139, 0.888, 2.494, -2.695,
       4.133, 0.807, 2.361, 0.727, 0.242, 1.926, 2.649, 0.595, 0.694, 2.371]  # fmt: skip
SEEDS20 = tuple(range(100, 120))


def _player20(name: str, key: str, values: list[float]) -> PlayerResult:
    m = float(np.mean(values))
    o = ScenarioOutcomes(20, m if key == "hp_lost_per_step" else None, 20,
                         m if key == "kills_per_combat_state" else None, None, 0, None)  # fmt: skip
    return PlayerResult(name, 20, 0.0, 1.0, 0.0, o, SEEDS20, (0.0,) * 20, {key: tuple(values)})


@pytest.mark.parametrize(("scenario", "key"), [("combat", "kills_per_combat_state"),
                                               ("survival", "hp_lost_per_step")])  # fmt: skip
def test_rank_scenario_passes_resamples_and_seed_to_every_margin(scenario, key):
    # the best is 10 + D20 (higher is better) or 10 - D20 (lower is better) against 10: the
    # margin is D20 either way, with paired_diff_ci's interval of D20
    sign = 1.0 if scenario == "combat" else -1.0
    res = {
        "best": _player20("best", key, [10.0 + sign * d for d in D20]),
        "flat": _player20("flat", key, [10.0] * 20),
    }
    zeros = [0.0] * 20
    r = rank_scenario(scenario, res, ["flat", "best"])
    assert r.point_best == "best" and r.margins["flat"].diff == pytest.approx(np.mean(D20))
    assert r.margins["flat"].ci == pytest.approx(tuple(paired_diff_ci(zeros, D20)[1]), abs=1e-9)
    r = rank_scenario(scenario, res, ["flat", "best"], n_resamples=300, seed=4)
    want = paired_diff_ci(zeros, D20, n_resamples=300, seed=4)[1]
    assert r.margins["flat"].ci == pytest.approx(tuple(want), abs=1e-9)


def test_rank_scenario_a_tie_at_zero_and_the_full_record_of_a_tie():
    # 0 and 1e-13 tie (within 1e-12 of each other; a relative tolerance alone would not tie 0)
    res = {"a": _player("a", kills=(0.0, 0.0, 0.0)), "b": _player("b", kills=(1e-13, 0.0, 0.0))}
    r = rank_scenario("combat", res, ["a", "b"])
    assert r == ScenarioRanking("combat", "kills_per_combat_state", True, None)
    tie = {"a": _player("a", hp=(1, 2, 3)), "b": _player("b", hp=(3, 2, 1))}
    assert rank_scenario("survival", tie, ["a", "b"]) == ScenarioRanking(
        "survival", "hp_lost_per_step", False, None
    )


def test_paired_diff_of_defaults_and_two_pairs():
    a = dict(zip(SEEDS20, [0.0] * 20, strict=True))
    b = dict(zip(SEEDS20, D20, strict=True))
    pd = PairedDiff.of(a, b)  # 2000 resamples, seed 0
    assert pd.ci == pytest.approx(tuple(paired_diff_ci([0.0] * 20, D20)[1]), abs=1e-12)
    # two pairs are enough for an interval: differences 1 and 3
    two = PairedDiff.of({1: 1.0, 2: 2.0}, {1: 2.0, 2: 5.0}, n_resamples=200)
    want = paired_diff_ci([1.0, 2.0], [2.0, 5.0], n_resamples=200)[1]
    assert two.diff == 2.0 and two.n == 2 and two.ci == pytest.approx(tuple(want))
    assert two.ci is not None and two.ci[0] < two.ci[1]


def test_own_scenarios_reads_the_tables_expert_order_and_short_tables():
    # the table lists the experts in another order than the names asked about
    table = {
        "scenarios": ["survival", "combat"],
        "experts": ["q", "p"],
        "mean_alpha": [[0.9, 0.1], [0.2, 0.8]],  # q: survival; p: combat
    }
    assert own_scenarios(table, ["p", "q"], prior_on=False)[0] == {"p": "combat", "q": "survival"}
    # fewer rows than scenarios: the rows there are read
    short = {"scenarios": ["survival", "combat", "exploration"], "experts": ["p"],
             "mean_alpha": [[0.1], [0.4]]}  # fmt: skip
    assert own_scenarios(short, ["p"], prior_on=False)[0] == {"p": "combat"}


def test_scenario_information_reads_float_labels_and_seeds_with_0_by_default():
    # labels and argmax as floats (e.g. read back from a file) are the same labels
    ints = scenario_information([0, 0, 1, 1], [0, 0, 1, 1], 2, 2, permutations=30, seed=0)
    floats = scenario_information(
        np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 1.0]), 2, 2, permutations=30
    )
    assert floats == ints  # and the default seed is 0
    assert scenario_information([0, 0, 1, 1], [0, 0, 1, 1], 2, 2, permutations=30, seed=1) != ints
