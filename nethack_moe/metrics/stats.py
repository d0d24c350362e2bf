"""Evaluation statistics (protocol E200 of ``PROTOCOL.md``).

Everything returned here is JSON-serializable: python ``float``/``int``/``None``/lists only.

Confidence intervals are bootstrap intervals from :func:`scipy.stats.bootstrap`. The default method
is **BCa** (bias-corrected and accelerated); where BCa is undefined (few distinct values, a statistic
that does not move under the jackknife, scipy warnings that end in ``nan``) the **percentile**
interval of the same resamples is used instead, and the method actually used is reported under
``ci_method``. Constant data (or a single value) gives the interval ``[v, v]`` with the method
``"constant"``. A bootstrap that fails (every method raises or ends in a non-finite interval)
gives no interval: ``None`` with the method ``"failed (<reason>)"`` and a logged warning, never a
zero-width interval. The resampling is seeded (``rng=``, SciPy >= 1.15), so the same data and
seed always give the same interval.

The IQM (interquartile mean) is :func:`scipy.stats.trim_mean` with 25 % cut from each end (for a
size that is not a multiple of 4, ``int(0.25 n)`` values are cut from each end).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import stats as sps

log = logging.getLogger(__name__)

#: Score bin edges used by the text histograms (NetHack scores are heavy-tailed; the last bin is open).
SCORE_BIN_EDGES: tuple[float, ...] = (0, 1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def _as_float_array(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    return a


def iqm(x: Any, axis: int = -1) -> Any:
    """Interquartile mean: mean of the middle 50 % (``trim_mean(x, 0.25)``)."""
    return sps.trim_mean(np.asarray(x, dtype=np.float64), 0.25, axis=axis)


def _mean_stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _iqm_stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return sps.trim_mean(x, 0.25, axis=axis)


def bootstrap_ci(
    x: Any,
    statistic: str = "mean",
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "BCa",
) -> tuple[list[float] | None, str]:
    """Bootstrap confidence interval of ``statistic`` (``"mean"`` or ``"iqm"``) of ``x``.

    Returns ``([lo, hi], method_used)``; ``(None, "none")`` for empty data, ``([v, v], "constant")``
    for constant data, ``(None, "failed (<reason>)")`` when no method gives a finite interval.
    BCa falls back to percentile when it is undefined.
    """
    a = _as_float_array(x)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return None, "none"
    fn = {"mean": _mean_stat, "iqm": _iqm_stat}[statistic]
    if a.size == 1 or float(a.min()) == float(a.max()):
        v = float(fn(a))
        return [v, v], "constant"
    methods = [method] if method.lower() == "percentile" else [method, "percentile"]
    errors: list[str] = []
    for m in methods:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = sps.bootstrap(
                    (a,),
                    fn,
                    n_resamples=n_resamples,
                    vectorized=True,
                    confidence_level=confidence,
                    method=m,
                    rng=np.random.default_rng(seed),
                )
        except Exception as exc:  # noqa: BLE001 - scipy raises various errors on degenerate data
            errors.append(f"{m}: {exc!r:.200}")
            continue
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return [lo, hi], m
        errors.append(f"{m}: non-finite interval")
    reason = "; ".join(errors)
    log.warning(
        "bootstrap CI of the %s of %d values failed, no interval: %s", statistic, a.size, reason
    )
    return None, f"failed ({reason})"


def diff_ci(
    a: Any,
    b: Any,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[float] | None:
    """Percentile bootstrap CI of ``mean(b) - mean(a)`` for two independent samples."""
    x = _as_float_array(a)
    y = _as_float_array(b)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return None

    def stat(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(v, axis=axis) - np.mean(u, axis=axis)

    if x.min() == x.max() and y.min() == y.max():
        d = float(y[0] - x[0])
        return [d, d]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (x, y),
            stat,
            n_resamples=n_resamples,
            vectorized=True,
            paired=False,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def _mean_or_none(x: Any) -> float | None:
    if x is None:
        return None
    a = _as_float_array(x)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


@dataclass(frozen=True)
class Summary:
    """E200 figures of per-episode scores (:func:`summarize_scores`); :meth:`to_json` is the
    ``summary`` dict of the evaluation JSON, :meth:`from_json` reads one back."""

    n: int
    mean: float | None = None
    std: float | None = None
    """Sample std (ddof=1); 0 for one value."""
    median: float | None = None
    iqm: float | None = None
    min: float | None = None
    max: float | None = None
    q25: float | None = None
    q75: float | None = None
    ci_mean: list[float] | None = None
    ci_iqm: list[float] | None = None
    ci_method: str = "none"
    confidence: float = 0.95
    n_resamples: int = 2000
    died: float | None = None
    """Death rate."""
    depth: float | None = None
    """Mean depth reached."""
    length: float | None = None
    """Mean episode length."""

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict (keys in field order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Summary:
        """A summary read from an evaluation file (missing keys: ``None``; others ignored)."""
        d = d or {}
        kw = {f.name: d[f.name] for f in fields(cls) if d.get(f.name) is not None}
        return cls(**{"n": 0, **kw})


def summarize_scores(
    scores: Sequence[float] | np.ndarray,
    *,
    died: Sequence[bool] | np.ndarray | None = None,
    depth: Sequence[float] | np.ndarray | None = None,
    length: Sequence[float] | np.ndarray | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    ci: bool = True,
) -> Summary:
    """:class:`Summary` of per-episode scores (E200 figures).

    Missing inputs give ``None``; ``ci=False`` skips the bootstrap (``ci_*`` are ``None``).
    """
    a = _as_float_array(scores)
    a = a[np.isfinite(a)]
    base = Summary(
        n=int(a.size),
        confidence=float(confidence),
        n_resamples=int(n_resamples),
        died=_mean_or_none(None if died is None else np.asarray(died, dtype=np.float64)),
        depth=_mean_or_none(depth),
        length=_mean_or_none(length),
    )
    if a.size == 0:
        return base
    ci_mean = ci_iqm = None
    method = "none"
    if ci:
        ci_mean, m1 = bootstrap_ci(
            a, "mean", n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        ci_iqm, m2 = bootstrap_ci(
            a, "iqm", n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        method = m1 if m1 == m2 else f"mean: {m1}, iqm: {m2}"
    return replace(
        base,
        mean=float(a.mean()),
        std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        median=float(np.median(a)),
        iqm=float(iqm(a)),
        min=float(a.min()),
        max=float(a.max()),
        q25=float(np.quantile(a, 0.25)),
        q75=float(np.quantile(a, 0.75)),
        ci_mean=ci_mean,
        ci_iqm=ci_iqm,
        ci_method=method,
    )


def summarize(scores: Sequence[float] | np.ndarray, **options: Any) -> dict[str, Any]:
    """:func:`summarize_scores` (same options) as the JSON dict the evaluation files hold.

    Keys: ``n, mean, std (ddof=1), median, iqm, min, max, q25, q75, ci_mean, ci_iqm, ci_method,
    confidence, n_resamples, died`` (rate), ``depth`` (mean), ``length`` (mean).
    """
    return summarize_scores(scores, **options).to_json()


def paired_diff_ci(
    a: Any,
    b: Any,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float | None, list[float] | None]:
    """``mean(b - a)`` of paired samples (the same seeds, in the same order) and its bootstrap CI
    (:func:`bootstrap_ci` of the differences).

    ``(None, None)`` when there are no pairs or any pair is missing a value (``None``, NaN or
    infinite on either side): the caller pairs the seeds both sides played, so a missing value is
    a caller's error that must not shrink the sample silently. ``(d, None)`` when the bootstrap
    fails. One pair gives the zero-width interval ``[d, d]`` (constant data).
    """
    x, y = _as_float_array(a), _as_float_array(b)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in size: {x.size} and {y.size}")
    d = y - x
    if d.size == 0 or not np.isfinite(d).all():
        return None, None
    lo_hi, _ = bootstrap_ci(d, "mean", n_resamples=n_resamples, seed=seed, confidence=confidence)
    return float(d.mean()), lo_hi


def score_quantiles(
    scores: Sequence[float] | np.ndarray, qs: Sequence[float] = DEFAULT_QUANTILES
) -> dict[str, float | None]:
    """Quantiles of the scores keyed ``p10``, ``p25`` ... (``None`` when there is no data)."""
    a = _as_float_array(scores)
    a = a[np.isfinite(a)]
    out: dict[str, float | None] = {}
    for q in qs:
        key = f"p{round(q * 100):d}" if abs(q * 100 - round(q * 100)) < 1e-9 else f"p{q * 100:g}"
        out[key] = float(np.quantile(a, q)) if a.size else None
    return out


def histogram(
    scores: Sequence[float] | np.ndarray, edges: Sequence[float] = SCORE_BIN_EDGES
) -> dict[str, Any]:
    """Counts of scores in ``[e_i, e_{i+1})`` bins; the last bin ``[e_last, inf)`` is open.

    Values below the first edge are counted in the first bin. Returns
    ``{"edges": [...], "labels": [...], "counts": [...], "shares": [...], "n": n}``.
    """
    a = _as_float_array(scores)
    a = a[np.isfinite(a)]
    e = [float(v) for v in edges]
    idx = np.searchsorted(np.asarray(e), a, side="right") - 1
    idx = np.clip(idx, 0, len(e) - 1)
    counts = np.bincount(idx, minlength=len(e)).astype(int)
    labels = []
    for i, lo in enumerate(e):
        if i + 1 < len(e):
            hi = e[i + 1]
            labels.append(f"{lo:g}" if hi - lo == 1 else f"{lo:g}–{hi - 1:g}")
        else:
            labels.append(f"≥{lo:g}")
    n = int(a.size)
    return {
        "edges": e,
        "labels": labels,
        "counts": [int(c) for c in counts],
        "shares": [float(c) / n if n else 0.0 for c in counts],
        "n": n,
    }


def text_histogram(
    scores: Sequence[float] | np.ndarray,
    edges: Sequence[float] = SCORE_BIN_EDGES,
    width: int = 40,
) -> str:
    """A fixed-width text histogram (one line per bin: label, bar, count, share)."""
    h = histogram(scores, edges)
    if h["n"] == 0:
        return "(no episodes)"
    top = max(h["counts"]) or 1
    lw = max(len(s) for s in h["labels"])
    lines = []
    for lab, c, s in zip(h["labels"], h["counts"], h["shares"], strict=True):
        bar = "█" * int(round(width * c / top))
        lines.append(f"{lab:>{lw}} | {bar:<{width}} {c:>6d} ({100 * s:5.1f} %)")
    return "\n".join(lines)


#: How the two tails of a score distribution moved: (high tail, low tail) -> reading.
_TAIL_SHAPES: dict[tuple[str, str], str] = {
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


def compare_tails(
    reference: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    *,
    high_q: float = 0.9,
    low_q: float = 0.25,
) -> dict[str, Any]:
    """Does ``other`` have more high scores or more low scores than ``reference``?

    Thresholds are the reference's ``high_q`` and ``low_q`` quantiles. For each tail the share of
    episodes at or beyond the threshold is compared between the two samples; a difference counts
    only when it exceeds two standard errors of a difference of proportions.
    Returns thresholds, shares, per-tail direction (``"more"``, ``"fewer"``, ``"same"``) and a
    one-line ``answer``.
    """
    r = _as_float_array(reference)
    o = _as_float_array(other)
    r, o = r[np.isfinite(r)], o[np.isfinite(o)]
    if r.size == 0 or o.size == 0:
        return {"answer": "not enough data", "high": "same", "low": "same"}
    t_hi = float(np.quantile(r, high_q))
    t_lo = float(np.quantile(r, low_q))

    def direction(p_ref: float, p_oth: float) -> str:
        p = (p_ref * r.size + p_oth * o.size) / (r.size + o.size)
        se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / r.size + 1 / o.size))
        d = p_oth - p_ref
        if abs(d) <= 2 * se:
            return "same"
        return "more" if d > 0 else "fewer"

    hi_ref, hi_oth = float((r >= t_hi).mean()), float((o >= t_hi).mean())
    lo_ref, lo_oth = float((r <= t_lo).mean()), float((o <= t_lo).mean())
    dh, dl = direction(hi_ref, hi_oth), direction(lo_ref, lo_oth)
    shape = _TAIL_SHAPES[(dh, dl)]
    answer = (
        f"{dh} high scores ({100 * hi_oth:.1f} % ≥ {t_hi:g} vs {100 * hi_ref:.1f} %) and "
        f"{dl} low scores ({100 * lo_oth:.1f} % ≤ {t_lo:g} vs {100 * lo_ref:.1f} %): {shape}"
    )
    return {
        "high_threshold": t_hi,
        "low_threshold": t_lo,
        "high_share_reference": hi_ref,
        "high_share": hi_oth,
        "low_share_reference": lo_ref,
        "low_share": lo_oth,
        "high": dh,
        "low": dl,
        "answer": answer,
    }


def moving_average(x: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter windows at the start); same length as ``x``."""
    a = _as_float_array(x)
    if a.size == 0:
        return a
    w = max(1, int(window))
    c = np.cumsum(np.insert(a, 0, 0.0))
    idx = np.arange(1, a.size + 1)
    lo = np.maximum(idx - w, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def best_window(x: Sequence[float] | np.ndarray, window: int) -> tuple[int, float] | None:
    """Start index and mean of the ``window`` consecutive values with the highest mean.

    ``None`` when there are fewer than ``window`` values (then the caller may use the whole run).
    """
    a = _as_float_array(x)
    w = int(window)
    if w <= 0 or a.size < w:
        return None
    c = np.cumsum(np.insert(a, 0, 0.0))
    means = (c[w:] - c[:-w]) / w
    i = int(np.argmax(means))
    return i, float(means[i])
