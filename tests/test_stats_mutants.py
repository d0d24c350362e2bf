"""Exact values of the statistics helpers (``nethack_moe/analysis/stats.py``).

Written from the survivors of a mutation run (``docs/testing.md``): each test pins a figure or a
sentence to a number derived by hand in the comment next to it, or to SciPy / NumPy called
directly with the same arguments.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from nethack_moe.metrics import stats
from nethack_moe.metrics.stats import (
    best_window,
    bootstrap_ci,
    compare_tails,
    diff_ci,
    histogram,
    iqm,
    moving_average,
    paired_diff_ci,
    score_quantiles,
    summarize_scores,
    text_histogram,
)

NAN = float("nan")


# ------------------------------------------------------------------------------ compare_tails
REF = np.arange(100.0)
# thresholds of 0..99: quantile 0.9 = 89.1 (index 89.1), quantile 0.25 = 24.75 (index 24.75);
# the reference has 10 % at or above 89.1 (90..99) and 25 % at or below 24.75 (0..24)


def _other(high: float, low: float, n: int = 100) -> list[float]:
    """n scores: a share ``high`` at 95 (above 89.1), ``low`` at 10 (below 24.75), the rest 50."""
    kh, kl = round(high * n), round(low * n)
    return [95.0] * kh + [10.0] * kl + [50.0] * (n - kh - kl)


# Two-proportion test, pooled p, se = sqrt(p (1 - p) (1/100 + 1/100)), "more/fewer" beyond 2 se:
#   high 25 % vs 10 %: p = .175, se = .0537, d = +.15 = +2.79 se -> more (2.79 < 3: a 3-se rule
#   would say same)
#   high 12 % vs 10 %: p = .11,  se = .0442, d = +.02 = +0.45 se -> same
#   high  2 % vs 10 %: p = .06,  se = .0336, d = -.08 = -2.38 se -> fewer
#   low  45 % vs 25 %: p = .35,  se = .0675, d = +.20 = +2.97 se -> more
#   low  27 % vs 25 %: p = .26,  se = .0620, d = +.02 = +0.32 se -> same
#   low  11 % vs 25 %: p = .18,  se = .0543, d = -.14 = -2.58 se -> fewer
HIGH = {"more": 0.25, "same": 0.12, "fewer": 0.02}
LOW = {"more": 0.45, "same": 0.27, "fewer": 0.11}
SHAPES = {
    ("more", "fewer"): "the whole distribution moved up",
    ("more", "same"): "the upper tail grew",
    ("more", "more"): "the distribution spread out (both tails grew)",
    ("same", "fewer"): "fewer low scores, the top unchanged",
    ("same", "same"): "no clear change in either tail",
    ("same", "more"): "more low scores, the top unchanged",
    ("fewer", "fewer"): "the distribution concentrated (both tails shrank)",
    ("fewer", "same"): "the upper tail shrank",
    ("fewer", "more"): "the whole distribution moved down",
}


@pytest.mark.parametrize(("dh", "dl"), list(SHAPES))
def test_compare_tails_reads_each_of_the_nine_shapes(dh, dl):
    h, lo = HIGH[dh], LOW[dl]
    out = compare_tails(REF, _other(h, lo))
    assert out["high"] == dh and out["low"] == dl
    assert out["high_threshold"] == pytest.approx(89.1)
    assert out["low_threshold"] == pytest.approx(24.75)
    assert out["high_share_reference"] == pytest.approx(0.10)
    assert out["low_share_reference"] == pytest.approx(0.25)
    assert out["high_share"] == pytest.approx(h) and out["low_share"] == pytest.approx(lo)
    assert out["answer"] == (
        f"{dh} high scores ({100 * h:.1f} % ≥ 89.1 vs 10.0 %) and "
        f"{dl} low scores ({100 * lo:.1f} % ≤ 24.75 vs 25.0 %): {SHAPES[(dh, dl)]}"
    )
    assert list(out) == [
        "high_threshold",
        "low_threshold",
        "high_share_reference",
        "high_share",
        "low_share_reference",
        "low_share",
        "high",
        "low",
        "answer",
    ]


def test_compare_tails_counts_the_threshold_itself_and_takes_the_quantiles_asked_for():
    # 0..10: quantile 0.9 = 9 and quantile 0.2 = 2 exactly; "at or beyond" counts 9, 10 (2/11)
    # and 0, 1, 2 (3/11) in the reference; the other sample [9, 9, 2, 2, 5, nan] has 2/5 at or
    # above 9 and 2/5 at or below 2 (the NaN is dropped before anything is counted)
    out = compare_tails(list(range(11)) + [NAN], [9, 9, 2, 2, 5, NAN], high_q=0.9, low_q=0.2)
    assert out["high_threshold"] == 9.0 and out["low_threshold"] == 2.0
    assert out["high_share_reference"] == pytest.approx(2 / 11)
    assert out["low_share_reference"] == pytest.approx(3 / 11)
    assert out["high_share"] == pytest.approx(0.4) and out["low_share"] == pytest.approx(0.4)
    # high: p = (2 + 2) / 16 = .25, se = sqrt(.1875 (1/11 + 1/5)) = .2335, d = .218 < 2 se: same
    assert out["answer"] == (
        "same high scores (40.0 % ≥ 9 vs 18.2 %) and same low scores (40.0 % ≤ 2 vs 27.3 %): "
        "no clear change in either tail"
    )


def test_compare_tails_with_samples_of_different_sizes():
    # other: 200 scores, 25 % high and 11 % low. Pooled over 300 states:
    #   high p = (10 + 50) / 300 = .2, se = sqrt(.16 (1/100 + 1/200)) = .0490, d = .15 = 3.06 se
    #   low  p = (25 + 22) / 300 = .1567, se = sqrt(.1321 (.015)) = .0445, d = -.14 = -3.15 se
    out = compare_tails(REF, _other(0.25, 0.11, n=200))
    assert (out["high"], out["low"]) == ("more", "fewer")
    # 300 reference scores against 100: one sample 3 times the other, a difference of 1.6 se
    # each way under the correct pooled figures
    #   high: ref 10 %, other 16 %: p = (30 + 16) / 400 = .115, se = sqrt(.1018 (1/300 + 1/100))
    #   = .0368, d = .06 = 1.63 se -> same
    out = compare_tails(np.repeat(REF, 3), _other(0.16, 0.25))
    assert out["high"] == "same" and out["low"] == "same"
    #   high: ref 10 %, other 19 %: p = (30 + 19) / 400 = .1225, se = .0379, d = .09 = 2.37 se
    out = compare_tails(np.repeat(REF, 3), _other(0.19, 0.25))
    assert out["high"] == "more" and out["low"] == "same"
    # the pooled p weighs both samples: high 18 % vs 10 % at 100 each, p = .14,
    # se = sqrt(.1204 * .02) = .0491, d = .08 = 1.63 se -> same (a p left near the reference's
    # 10 % would give se = .0308 and call 2.6 se "more")
    assert compare_tails(REF, _other(0.18, 0.27))["high"] == "same"


def test_compare_tails_with_a_tail_that_holds_every_score_on_both_sides():
    # all four reference scores are at the threshold 1: high 100 % vs 0 % -> fewer; every score
    # on both sides is at or below 1: p = 1, p (1 - p) = 0, the 1e-12 floor keeps se > 0 and
    # d = 0 reads same
    out = compare_tails([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    assert out["high_threshold"] == 1.0 and out["high_share"] == 0.0
    assert out["high_share_reference"] == 1.0 and out["high"] == "fewer"
    assert out["low_share"] == 1.0 and out["low_share_reference"] == 1.0 and out["low"] == "same"


def test_compare_tails_without_data():
    expected = {"answer": "not enough data", "high": "same", "low": "same"}
    assert compare_tails([], [1.0, 2.0]) == expected
    assert compare_tails([1.0, 2.0], [NAN]) == expected


# ------------------------------------------------------------------------------ diff_ci
def _scipy_diff(x, y, *, n_resamples=2000, seed=0, confidence=0.95):
    res = sps.bootstrap(
        (np.asarray(x, float), np.asarray(y, float)),
        lambda u, v, axis=-1: np.mean(v, axis=axis) - np.mean(u, axis=axis),
        n_resamples=n_resamples,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def test_diff_ci_is_scipys_percentile_interval_of_mean_b_minus_mean_a():
    a = [1.0, 4.0, 2.0, 8.0, 5.0]
    b = [3.0, 9.0, 7.0, 6.0, 10.0, 12.0, NAN]  # the NaN is dropped
    b_fin = b[:-1]
    # defaults: 2000 resamples, seed 0, 95 %
    assert diff_ci(a, b) == pytest.approx(_scipy_diff(a, b_fin), abs=1e-12)
    got = diff_ci(a, b, n_resamples=300, seed=4, confidence=0.8)
    assert got == pytest.approx(
        _scipy_diff(a, b_fin, n_resamples=300, seed=4, confidence=0.8), abs=1e-12
    )
    lo, hi = got
    # mean(b) - mean(a) = 47/6 - 4 = 3.833, inside an 80 % interval narrower than the 95 % one
    assert lo < 47 / 6 - 4 < hi
    lo95, hi95 = diff_ci(a, b, n_resamples=300, seed=4)
    assert lo95 < lo and hi < hi95


def test_diff_ci_small_and_constant_samples():
    assert diff_ci([1.0], [2.0, 3.0]) is None  # fewer than 2 values on one side
    assert diff_ci([1.0, 2.0], [3.0]) is None
    assert diff_ci([1.0, NAN], [2.0, 3.0]) is None  # one finite value left
    assert diff_ci([2.0, 2.0], [7.5, 7.5]) == [5.5, 5.5]  # both constant: the difference itself
    # one side constant, the other not: a real interval, between the extreme differences 3 and 5
    ci = diff_ci([2.0, 2.0], [5.0, 7.0], n_resamples=500)
    assert ci == pytest.approx(_scipy_diff([2.0, 2.0], [5.0, 7.0], n_resamples=500))
    assert 3.0 <= ci[0] < ci[1] <= 5.0
    ci = diff_ci([1.0, 3.0], [4.0, 4.0], n_resamples=500)
    assert ci == pytest.approx(_scipy_diff([1.0, 3.0], [4.0, 4.0], n_resamples=500))


# ------------------------------------------------------------------------------ bootstrap_ci
def _scipy_ci(x, stat, *, method, n_resamples=2000, seed=0, confidence=0.95):
    fn = {"mean": np.mean, "iqm": lambda v, axis=-1: sps.trim_mean(v, 0.25, axis=axis)}[stat]
    res = sps.bootstrap(
        (np.asarray(x, float),),
        fn,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        rng=np.random.default_rng(seed),
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


X = [3.0, 0.0, 7.0, 1.0, 12.0, 4.0, 4.0, 30.0, 2.0, 9.0, 5.0, 6.0]
# 20 values with few ties: their bootstrap intervals move with the seed and the number of
# resamples (those of X, small integers, land on the same few resampled means)
D20 = [1.068, 3.719, 3.449, -0.021, 0.404, -0.055, 2.139, 0.888, 2.494, -2.695,
       4.133, 0.807, 2.361, 0.727, 0.242, 1.926, 2.649, 0.595, 0.694, 2.371]  # fmt: skip


@pytest.mark.parametrize("stat", ["mean", "iqm"])
def test_bootstrap_ci_is_scipys_bca_with_the_arguments_given(stat):
    ci, method = bootstrap_ci(X, stat)
    assert method == "BCa"
    assert ci == pytest.approx(_scipy_ci(X, stat, method="BCa"), abs=1e-12)
    ci, method = bootstrap_ci(X, stat, n_resamples=400, seed=9, confidence=0.8)
    assert method == "BCa"
    assert ci == pytest.approx(
        _scipy_ci(X, stat, method="BCa", n_resamples=400, seed=9, confidence=0.8), abs=1e-12
    )
    ci, method = bootstrap_ci(X + [NAN], stat, n_resamples=400, seed=9, method="percentile")
    assert method == "percentile"
    assert ci == pytest.approx(
        _scipy_ci(X, stat, method="percentile", n_resamples=400, seed=9), abs=1e-12
    )


def test_bootstrap_ci_of_a_constant_and_of_nothing():
    assert bootstrap_ci([]) == (None, "none")
    assert bootstrap_ci([NAN, float("inf")]) == (None, "none")
    # constant after the NaN is dropped: the iqm of [2, 2, 2] is 2
    assert bootstrap_ci([2.0, NAN, 2.0, 2.0], "iqm") == ([2.0, 2.0], "constant")
    with pytest.raises(KeyError):
        bootstrap_ci([1.0, 2.0], "median")


def test_bootstrap_ci_passes_its_arguments_to_scipy(monkeypatch):
    from types import SimpleNamespace

    seen = []

    def boot(data, fn, **kw):
        seen.append((data, fn, kw))
        return SimpleNamespace(confidence_interval=SimpleNamespace(low=1.0, high=2.0))

    monkeypatch.setattr(stats.sps, "bootstrap", boot)
    assert bootstrap_ci([1.0, NAN, 3.0], "iqm", n_resamples=77, confidence=0.6) == (
        [1.0, 2.0],
        "BCa",
    )
    (data, fn, kw) = seen[0]
    assert len(data) == 1 and list(data[0]) == [1.0, 3.0]
    assert fn(np.array([[1.0, 2.0, 3.0, 100.0]]), axis=-1) == pytest.approx([2.5])  # trim 25 %
    assert kw["n_resamples"] == 77 and kw["confidence_level"] == 0.6
    assert kw["method"] == "BCa" and kw["vectorized"] is True
    # "percentile" asked for (any case): tried alone, no fallback
    seen.clear()
    monkeypatch.setattr(stats.sps, "bootstrap", _fail_then_record(seen))
    ci, method = bootstrap_ci([1.0, 3.0], method="Percentile")
    assert ci is None and method == "failed (Percentile: ValueError('no'))"
    assert seen == ["Percentile"]


def _fail_then_record(seen):
    def boot(data, fn, **kw):
        seen.append(kw["method"])
        raise ValueError("no")

    return boot


def test_a_failed_bootstrap_logs_the_statistic_and_size(monkeypatch, caplog):
    monkeypatch.setattr(stats.sps, "bootstrap", _fail_then_record([]))
    with caplog.at_level("WARNING", logger="nethack_moe.metrics.stats"):
        ci, method = bootstrap_ci([1.0, 2.0, 4.0], "iqm")
    assert ci is None
    assert method == "failed (BCa: ValueError('no'); percentile: ValueError('no'))"
    assert caplog.records[-1].getMessage() == (
        "bootstrap CI of the iqm of 3 values failed, no interval: "
        "BCa: ValueError('no'); percentile: ValueError('no')"
    )


# ------------------------------------------------------------------------------ summarize_scores
def test_summarize_scores_passes_confidence_resamples_and_seed_to_the_bootstrap():
    s = summarize_scores(D20, n_resamples=300, seed=5, confidence=0.8)
    assert s.confidence == 0.8 and s.n_resamples == 300
    assert isinstance(s.confidence, float) and isinstance(s.n_resamples, int)
    assert s.ci_mean == pytest.approx(
        _scipy_ci(D20, "mean", method="BCa", n_resamples=300, seed=5, confidence=0.8), abs=1e-12
    )
    assert s.ci_iqm == pytest.approx(
        _scipy_ci(D20, "iqm", method="BCa", n_resamples=300, seed=5, confidence=0.8), abs=1e-12
    )
    assert s.ci_method == "BCa"
    d = summarize_scores(D20)  # defaults: 2000 resamples, seed 0, 95 %
    assert d.confidence == 0.95 and d.n_resamples == 2000
    assert d.ci_mean == pytest.approx(_scipy_ci(D20, "mean", method="BCa"), abs=1e-12)
    assert d.ci_iqm == pytest.approx(_scipy_ci(D20, "iqm", method="BCa"), abs=1e-12)


def test_summarize_scores_names_both_methods_when_they_differ(monkeypatch):
    def fake(a, statistic, **kw):
        return ([0.0, 1.0], "BCa") if statistic == "mean" else ([0.0, 2.0], "percentile")

    monkeypatch.setattr(stats, "bootstrap_ci", fake)
    s = summarize_scores([1.0, 2.0, 3.0])
    assert s.ci_mean == [0.0, 1.0] and s.ci_iqm == [0.0, 2.0]
    assert s.ci_method == "mean: BCa, iqm: percentile"


def test_summarize_scores_without_ci_and_with_missing_values():
    # 1, 2, 4, 9 (the NaN dropped): mean 4, sample variance (9 + 4 + 0 + 25) / 3, median 3,
    # iqm of 4 values = mean of the middle two = 3, quartiles 1.75 and 5.25
    s = summarize_scores([4.0, NAN, 1.0, 9.0, 2.0], ci=False, died=[1, 0, 0, 1], length=[5, 7])
    assert s.n == 4 and s.mean == 4.0 and s.std == pytest.approx(np.sqrt(38 / 3))
    assert s.median == 3.0 and s.iqm == 3.0 and s.min == 1.0 and s.max == 9.0
    assert s.q25 == pytest.approx(1.75) and s.q75 == pytest.approx(5.25)
    assert s.ci_mean is None and s.ci_iqm is None and s.ci_method == "none"
    assert s.died == 0.5 and s.length == 6.0 and s.depth is None
    # two values 1 and 4: sample variance 4.5
    assert summarize_scores([1.0, 4.0], ci=False).std == pytest.approx(np.sqrt(4.5))
    one = summarize_scores([7.0], ci=False)
    assert one.std == 0.0 and one.mean == 7.0 and one.q25 == 7.0
    empty = summarize_scores([NAN], died=[True], depth=[3, 5])
    assert empty.n == 0 and empty.mean is None and empty.died == 1.0 and empty.depth == 4.0
    assert summarize_scores([1.0], depth=[NAN]).depth is None


# ------------------------------------------------------------------------------ paired_diff_ci
def test_paired_diff_ci_is_the_bootstrap_of_the_differences():
    a = np.arange(20.0)
    b = a + np.array(D20)
    d, ci = paired_diff_ci(a, b)  # defaults: 2000 resamples, seed 0, 95 %, the mean
    assert d == pytest.approx(np.mean(D20))
    assert ci == pytest.approx(_scipy_ci(D20, "mean", method="BCa"), abs=1e-12)
    d, ci = paired_diff_ci(a, b, n_resamples=300, seed=3, confidence=0.8)
    assert ci == pytest.approx(
        _scipy_ci(D20, "mean", method="BCa", n_resamples=300, seed=3, confidence=0.8),
        abs=1e-12,
    )
    # 2-D input is read flat, on both sides alike
    assert paired_diff_ci([[1.0, 2.0], [3.0, 4.0]], [2.0, 3.0, 4.0, 5.0]) == (1.0, [1.0, 1.0])
    with pytest.raises(ValueError, match="paired samples differ in size: 2 and 1"):
        paired_diff_ci([1, 2], [1])


# ------------------------------------------------------------------------------ quantiles, bins
def test_score_quantiles_keys_and_values():
    # 0, 10, 20, 30: quantile q sits at index 3 q; 0.125 -> 3.75, 0.333 -> 9.99
    q = score_quantiles([0, 10, NAN, 20, 30], qs=(0.125, 0.5, 0.333, 0.07))
    assert list(q) == ["p12.5", "p50", "p33.3", "p7"]
    assert q["p12.5"] == pytest.approx(3.75) and q["p50"] == pytest.approx(15.0)
    assert q["p33.3"] == pytest.approx(9.99) and q["p7"] == pytest.approx(2.1)
    assert score_quantiles([]) == dict.fromkeys(["p10", "p25", "p50", "p75", "p90", "p99"])


def test_histogram_bins_labels_and_shares():
    # edges 0, 2, 3, 6: bins [0, 2) [2, 3) [3, 6) [6, inf); -3 goes to the first bin, 2 to the
    # second (left-closed), 6 to the last
    h = histogram([-3, 0.5, 2, 3, 6, NAN], edges=(0, 2, 3, 6))
    assert h == {
        "edges": [0.0, 2.0, 3.0, 6.0],
        "labels": ["0–1", "2", "3–5", "≥6"],
        "counts": [2, 1, 1, 1],
        "shares": [0.4, 0.2, 0.2, 0.2],
        "n": 5,
    }
    empty = histogram([], edges=(0, 1))
    assert empty["counts"] == [0, 0] and empty["shares"] == [0.0, 0.0] and empty["n"] == 0
    assert histogram([5])["labels"] == [
        "0", "1–4", "5–9", "10–19", "20–49", "50–99", "100–199", "200–499", "500–999",
        "1000–1999", "≥2000",
    ]  # fmt: skip


def test_text_histogram_lines():
    # top count 3 fills the width 6; 2 -> round(4.0) = 4 blocks, 1 -> round(2.0) = 2
    assert text_histogram([0, 0, 0, 1, 1, 7], edges=(0, 1, 5), width=6) == (
        "  0 | ██████      3 ( 50.0 %)\n"
        "1–4 | ████        2 ( 33.3 %)\n"
        " ≥5 | ██          1 ( 16.7 %)"
    )
    # default width 40: one value in the first bin fills it
    first = text_histogram([0]).splitlines()[0]
    assert first == "        0 | " + "█" * 40 + "      1 (100.0 %)"


# ------------------------------------------------------------------------------ windows, iqm
def test_moving_average_and_best_window_by_hand():
    assert moving_average([], 3).size == 0
    # window 3 over 3, 6, 9, 0: 3, 4.5, 6, 5
    assert moving_average([3, 6, 9, 0], 3) == pytest.approx([3, 4.5, 6, 5])
    assert moving_average([3, 6], 0) == pytest.approx([3, 6])  # a window below 1 is 1
    assert best_window([4, 1, 1, 1, 3, 3], 2) == (4, 3.0)
    assert best_window([4, 1, 1, 1, 3, 3], 1) == (0, 4.0)
    assert best_window([2, 2, 2], 3) == (0, 2.0)  # exactly one window
    assert best_window([1, 2], 0) is None


def test_iqm_along_an_axis():
    x = np.array([[1, 2, 3, 100], [4, 4, 8, 8]])
    assert iqm(x) == pytest.approx([2.5, 6.0])  # per row: the middle two
    assert iqm(x, axis=0) == pytest.approx([2.5, 3.0, 5.5, 54.0])  # two values: nothing cut
