"""Evaluation statistics against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nethack_moe.metrics.stats import (
    best_window,
    bootstrap_ci,
    compare_tails,
    diff_ci,
    histogram,
    iqm,
    moving_average,
    score_quantiles,
    summarize,
    text_histogram,
)

X = [1, 2, 3, 4, 5, 6, 7, 100]


def test_summary_hand_values():
    s = summarize(
        X,
        died=[True, False, False, False, True, False, False, False],
        depth=[1, 1, 2, 2, 1, 1, 3, 5],
        length=[10] * 8,
        n_resamples=2000,
        seed=0,
    )
    assert s["n"] == 8
    assert s["mean"] == pytest.approx(16.0)
    # sample std: deviations 15,14,13,12,11,10,9,84 -> sum sq = 1036 + 7056 = 8092; /7
    assert s["std"] == pytest.approx(math.sqrt(8092 / 7))
    assert s["median"] == pytest.approx(4.5)
    assert s["iqm"] == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert s["min"] == 1.0 and s["max"] == 100.0
    assert s["q25"] == pytest.approx(2.75) and s["q75"] == pytest.approx(6.25)
    assert s["died"] == pytest.approx(0.25)
    assert s["depth"] == pytest.approx(2.0)
    assert s["length"] == pytest.approx(10.0)
    lo, hi = s["ci_mean"]
    assert lo <= s["mean"] <= hi
    lo, hi = s["ci_iqm"]
    assert lo <= s["iqm"] <= hi
    assert s["ci_method"] in ("BCa", "percentile")
    json.dumps(s)  # JSON-serializable
    assert all(not isinstance(v, np.generic) for v in s.values())


def test_iqm_of_1_to_8():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)
    assert summarize(range(1, 9), ci=False)["iqm"] == pytest.approx(4.5)


def test_bootstrap_is_deterministic_and_contains_mean():
    rng = np.random.default_rng(3)
    x = rng.geometric(0.1, 200)
    a = summarize(x, seed=7)
    b = summarize(x, seed=7)
    assert a["ci_mean"] == b["ci_mean"] and a["ci_iqm"] == b["ci_iqm"]
    assert a["ci_mean"][0] < x.mean() < a["ci_mean"][1]
    c = summarize(x, seed=8)
    assert c["ci_mean"] != a["ci_mean"]  # the seed matters
    # percentile method on demand
    ci, method = bootstrap_ci(x, "mean", method="percentile", n_resamples=2000)
    assert method == "percentile" and ci is not None and ci[0] < x.mean() < ci[1]


def test_degenerate_data():
    s = summarize([5, 5, 5, 5])
    assert s["ci_mean"] == [5.0, 5.0] and s["ci_iqm"] == [5.0, 5.0] and s["std"] == 0.0
    one = summarize([3])
    assert one["ci_mean"] == [3.0, 3.0] and one["std"] == 0.0
    empty = summarize([])
    assert empty["n"] == 0 and empty["mean"] is None and empty["ci_mean"] is None
    json.dumps(empty)
    # almost constant data: BCa may be undefined, the interval stays finite and ordered
    s = summarize([0] * 199 + [5])
    for key in ("ci_mean", "ci_iqm"):
        lo, hi = s[key]
        assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    assert s["ci_iqm"] == [0.0, 0.0] or s["ci_iqm"][0] <= 0.0 <= s["ci_iqm"][1]


def test_quantiles_histogram_helpers():
    q = score_quantiles(range(101))
    assert q["p10"] == pytest.approx(10) and q["p50"] == pytest.approx(50)
    assert q["p99"] == pytest.approx(99)
    h = histogram([0, 0, 1, 4, 5, 9, 10, 2500], edges=(0, 1, 5, 10, 2000))
    assert h["counts"] == [2, 2, 2, 1, 1]
    assert h["labels"] == ["0", "1–4", "5–9", "10–1999", "≥2000"]
    assert sum(h["shares"]) == pytest.approx(1.0)
    txt = text_histogram([0, 1, 1, 7])
    assert "1–4" in txt and "50.0 %" in txt
    assert text_histogram([]) == "(no episodes)"


def test_tails_moving_average_best_window():
    rng = np.random.default_rng(0)
    ref = rng.geometric(0.1, 1000)
    up = compare_tails(ref, ref + 20)
    assert up["high"] == "more" and up["low"] == "fewer"
    same = compare_tails(ref, ref)
    assert same["high"] == "same" and same["low"] == "same"
    assert np.allclose(moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    assert best_window([1, 5, 5, 1, 9], 2) == (1, 5.0)
    assert best_window([1, 2], 3) is None
    ci = diff_ci(ref, ref + 5, n_resamples=500)
    assert ci is not None and ci[0] < 5 < ci[1]


def test_summary_record_round_trips_through_the_json_dict():
    from nethack_moe.metrics.stats import Summary, summarize_scores

    s = summarize_scores(X, died=[True] + [False] * 7, depth=[1] * 8, seed=3)
    d = summarize(X, died=[True] + [False] * 7, depth=[1] * 8, seed=3)
    assert s.to_json() == d and list(d)[:3] == ["n", "mean", "std"]
    assert Summary.from_json(json.loads(json.dumps(d))) == s
    assert Summary.from_json({"mean": 2.0, "reward": 1.0}) == Summary(n=0, mean=2.0)
    assert summarize_scores([]).to_json() == summarize([])


def test_paired_difference_on_the_same_seeds():
    from nethack_moe.metrics.stats import paired_diff_ci

    a = np.arange(50, dtype=float)
    d, ci = paired_diff_ci(a, a + 2.5, n_resamples=200)
    assert d == pytest.approx(2.5) and ci == pytest.approx([2.5, 2.5])
    rng = np.random.default_rng(1)
    b = a + rng.normal(1.0, 0.5, 50)
    d, ci = paired_diff_ci(a, b, n_resamples=500)
    assert d is not None and ci is not None and ci[0] < d < ci[1] and ci[0] > 0
    assert paired_diff_ci([], []) == (None, None)
    with pytest.raises(ValueError):
        paired_diff_ci([1, 2], [1])


def test_formatters():
    from nethack_moe.core import formatting as fmt

    assert fmt.num(None) == "–" and fmt.num(1.005, 1) == "1.0" and fmt.num(3) == "3.00"
    assert fmt.num(-0.001) == "0.00" and fmt.num(-0.01) == "-0.01"  # no "-0.00"
    assert fmt.num(float("nan")) == "nan" and fmt.num("n/a") == "n/a"
    assert fmt.pct(0.25) == "25.0 %" and fmt.pct(None) == "–"
    assert fmt.ci([1, 2.345]) == "[1.00, 2.35]" and fmt.ci(None) == "–" and fmt.ci([]) == "–"
    assert fmt.with_ci("mean 3.00", [1, 2]) == "mean 3.00 [1.00, 2.00]"
    assert fmt.with_ci("mean 3.00", None) == "mean 3.00"
    assert fmt.pm(1.5, 0.25, 2) == "1.50 ± 0.25" and fmt.pm(None, 1) == "–"
    assert fmt.signed(2.0) == "+2.00" and fmt.signed(None) == "–"
    assert fmt.rel_change(10.0, 12.5) == " (+25.0 %)" and fmt.rel_change(0.0, 1.0) == ""
    assert fmt.rel_change(1.0, 100.0) == ""  # over 1000 %: left out
    assert fmt.duration(3723) == "1h 02m 03s" and fmt.duration(None) == "–"
    assert fmt.file_size(100) == "100 B" and fmt.file_size(2048) == "2.0 KiB"
    assert fmt.markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"


# --------------------------------------------------------------------- failures are loud
def _raising(exc: Exception):
    def boot(*args, **kwargs):
        raise exc

    return boot


def test_failed_bootstrap_gives_no_interval_and_says_why(monkeypatch, caplog):
    """SciPy < 1.15 rejects ``rng=`` with a TypeError: that must not read as a constant."""
    from nethack_moe.metrics import stats

    monkeypatch.setattr(stats.sps, "bootstrap", _raising(TypeError("unexpected keyword 'rng'")))
    with caplog.at_level("WARNING", logger="nethack_moe.metrics.stats"):
        ci, method = bootstrap_ci([1.0, 2.0, 5.0], "mean")
    assert ci is None
    assert method.startswith("failed (") and "TypeError" in method and "rng" in method
    assert "BCa" in method and "percentile" in method  # both methods were tried
    assert "failed" in caplog.text and "TypeError" in caplog.text
    s = summarize([1.0, 2.0, 5.0])
    assert s["ci_mean"] is None and s["ci_iqm"] is None and s["ci_method"].startswith("failed")
    assert s["mean"] == pytest.approx(8 / 3)  # the point figures stay
    d, d_ci = stats.paired_diff_ci([0.0, 0.0, 0.0], [1.0, 2.0, 5.0])
    assert d == pytest.approx(8 / 3) and d_ci is None


def test_non_finite_intervals_are_a_failure_not_a_constant(monkeypatch):
    from types import SimpleNamespace

    from nethack_moe.metrics import stats

    nan = SimpleNamespace(confidence_interval=SimpleNamespace(low=float("nan"), high=1.0))
    monkeypatch.setattr(stats.sps, "bootstrap", lambda *a, **k: nan)
    ci, method = bootstrap_ci([1.0, 2.0, 5.0], "iqm")
    assert (
        ci is None
        and method == "failed (BCa: non-finite interval; percentile: non-finite interval)"
    )


def test_bca_failure_falls_back_to_percentile(monkeypatch):
    from types import SimpleNamespace

    from nethack_moe.metrics import stats

    seen = []

    def boot(data, fn, **kw):
        seen.append(kw["method"])
        if kw["method"] == "BCa":
            raise ValueError("degenerate")
        return SimpleNamespace(confidence_interval=SimpleNamespace(low=1.5, high=3.5))

    monkeypatch.setattr(stats.sps, "bootstrap", boot)
    assert bootstrap_ci([1.0, 2.0, 5.0]) == ([1.5, 3.5], "percentile")
    assert seen == ["BCa", "percentile"]


def test_constant_data_is_labelled_constant_without_resampling(monkeypatch):
    from nethack_moe.metrics import stats

    monkeypatch.setattr(stats.sps, "bootstrap", _raising(AssertionError("must not resample")))
    assert bootstrap_ci([4.0, 4.0, 4.0], "iqm") == ([4.0, 4.0], "constant")
    assert bootstrap_ci([7.0]) == ([7.0, 7.0], "constant")
    assert bootstrap_ci([float("nan")]) == (None, "none")


def test_bootstrap_is_seeded_through_rng_on_the_required_scipy():
    """``rng=`` reaches scipy (no failure on real data) and pyproject requires a SciPy that has it."""
    import re
    from pathlib import Path

    import scipy

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    m = re.search(r'"scipy>=(\d+)\.(\d+)', text)
    assert m is not None and (int(m[1]), int(m[2])) >= (1, 15), "pyproject must require scipy>=1.15"
    assert tuple(int(v) for v in scipy.__version__.split(".")[:2]) >= (1, 15)
    x = np.random.default_rng(5).geometric(0.2, 60)
    for stat in ("mean", "iqm"):
        ci, method = bootstrap_ci(x, stat, n_resamples=500, seed=1)
        assert method in ("BCa", "percentile") and ci is not None and ci[0] < ci[1]
        assert bootstrap_ci(x, stat, n_resamples=500, seed=1) == (ci, method)


@pytest.mark.parametrize("missing", [float("nan"), float("inf"), None])
def test_paired_difference_with_a_missing_value_gives_none(missing):
    from nethack_moe.metrics.stats import paired_diff_ci

    assert paired_diff_ci([1.0, 2.0, 3.0], [2.0, missing, 5.0]) == (None, None)
    assert paired_diff_ci([1.0, missing, 3.0], [2.0, 4.0, 5.0]) == (None, None)


def test_paired_difference_is_b_minus_a_over_pairs():
    from nethack_moe.metrics.stats import paired_diff_ci

    # differences 1, 3, -1, 5: mean 2 (mean(b) - mean(a) alone would be the same; the CI is
    # over the per-pair differences, which a constant shift shows)
    a, b = [10.0, 0.0, 4.0, 2.0], [11.0, 3.0, 3.0, 7.0]
    d, ci = paired_diff_ci(a, b, n_resamples=500)
    assert d == pytest.approx(2.0)
    assert ci is not None and ci[0] < 2.0 < ci[1] and -1.0 <= ci[0] and ci[1] <= 5.0
    assert paired_diff_ci([1.0], [4.0]) == (3.0, [3.0, 3.0])  # one pair: constant
