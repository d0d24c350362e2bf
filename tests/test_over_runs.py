"""Statistics over training runs against brute-force computations (rliable's definitions)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nethack_moe.analysis import over_runs as orun


def _iqm_by_hand(a: np.ndarray) -> float:
    v = np.sort(a.ravel())
    cut = int(0.25 * v.size)  # scipy.stats.trim_mean: int(proportion * n) from each end
    return float(v[cut : v.size - cut].mean())


def test_iqm_is_the_mean_of_the_middle_half_of_all_scores():
    rng = np.random.default_rng(3)
    for shape in [(3, 200), (1, 7), (5, 1), (2, 9)]:
        a = rng.integers(0, 400, size=shape).astype(float)
        assert orun.iqm(a) == pytest.approx(_iqm_by_hand(a))
    a = np.array([[0.0, 1, 2, 3], [4, 5, 6, 1000]])  # 8 values, 2 cut from each end
    assert orun.iqm(a) == pytest.approx((2 + 3 + 4 + 5) / 4)


def _poi_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    per_task = []
    for t in range(x.shape[1]):
        wins = 0.0
        for i, j in itertools.product(range(x.shape[0]), range(y.shape[0])):
            wins += 1.0 if x[i, t] > y[j, t] else 0.5 if x[i, t] == y[j, t] else 0.0
        per_task.append(wins / (x.shape[0] * y.shape[0]))
    return float(np.mean(per_task))


def test_probability_of_improvement_matches_pairwise_counting():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(3, 40)).astype(float)  # small range: many ties
    y = rng.integers(0, 5, size=(2, 40)).astype(float)
    assert orun.probability_of_improvement(x, y) == pytest.approx(_poi_by_hand(x, y))
    assert orun.probability_of_improvement(x, y) + orun.probability_of_improvement(
        y, x
    ) == pytest.approx(1.0)
    assert orun.probability_of_improvement(x, x) == pytest.approx(0.5)
    assert orun.probability_of_improvement(x + 10, y) == 1.0
    with pytest.raises(ValueError, match="share their episodes"):
        orun.probability_of_improvement(x, y[:, :3])


def test_stratified_bootstrap_resamples_runs_within_each_episode():
    # every episode column constant over runs: any stratified resample is the data itself
    col = np.arange(50, dtype=float)
    a = np.tile(col, (3, 1))
    lo, hi = orun.stratified_bootstrap_ci(a, orun.mean, n_resamples=200)
    assert lo == hi == pytest.approx(col.mean())
    # pooled resampling of all entries would not give a zero-width interval here
    pooled = np.random.default_rng(0).choice(a.ravel(), size=(200, a.size)).mean(axis=1)
    assert pooled.std() > 1.0


def test_stratified_bootstrap_spread_of_the_mean_matches_its_variance():
    """Mean over (run, episode) with runs redrawn per column: Var = sum_t var_t / (R T^2)."""
    rng = np.random.default_rng(1)
    R, T = 3, 60
    a = rng.normal(100, 30, size=(R, T))
    var_t = a.var(axis=0)  # population variance over the R runs, per column
    sd = np.sqrt(var_t.sum() / (R * T**2))
    lo, hi = orun.stratified_bootstrap_ci(a, orun.mean, n_resamples=4000, seed=5)
    assert (hi - lo) / (2 * 1.96) == pytest.approx(sd, rel=0.1)
    assert lo < a.mean() < hi


def test_row_figures_and_alignment_on_common_seeds():
    eps = [
        [{"seed": s, "score": float(s % 7)} for s in range(100, 110)],
        [{"seed": s, "score": float(s % 5)} for s in range(102, 112)],  # 100, 101 missing
    ]
    scores, seeds = orun.aligned_scores(eps)
    assert seeds == list(range(102, 110)) and scores.shape == (2, 8)
    assert scores[1, 0] == 102 % 5
    f = orun.row_figures(scores, n_resamples=300)
    assert f.mean_over_runs == pytest.approx(scores.mean(axis=1).mean())
    assert f.iqm == pytest.approx(_iqm_by_hand(scores))
    assert f.iqm_ci is not None and f.iqm_ci[0] <= f.iqm <= f.iqm_ci[1]
    one = orun.row_figures(scores[:1], n_resamples=300)  # one run: no spread between runs
    assert (
        one.iqm_ci is None
        and one.mean_ci is None
        and one.iqm == pytest.approx(_iqm_by_hand(scores[:1]))
    )
    with pytest.raises(ValueError, match="share no game seed"):
        orun.aligned_scores([[{"seed": 1, "score": 0}], [{"seed": 2, "score": 0}]])


def test_poi_interval_contains_the_estimate_and_separates_clear_winners():
    rng = np.random.default_rng(2)
    x = rng.normal(10, 1, size=(3, 80))
    y = rng.normal(0, 1, size=(3, 80))
    assert orun.poi_ci(x, y, n_resamples=200) == (1.0, 1.0)
    z = rng.normal(0, 1, size=(3, 80))
    lo, hi = orun.poi_ci(z, y, n_resamples=300)
    assert lo < orun.probability_of_improvement(z, y) < hi and lo < 0.5 < hi


def test_scores_with_holes_are_refused():
    with pytest.raises(ValueError, match="finite"):
        orun.row_figures(np.array([[1.0, np.nan]]))
