"""Statistics over training runs (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"; the method of the ``rliable`` package, written here without its plotting stack).

Scores come as a matrix ``[R, T]``: R training runs (seeds) of one row, T evaluation episodes
played on the same T game seeds by every run. In rliable's terms the episodes are the "tasks":

* **IQM** -- the interquartile mean of all ``R * T`` scores (``scipy.stats.trim_mean`` with 25 %
  cut from each end, as ``rliable.metrics.aggregate_iqm``);
* **stratified bootstrap** -- each resample draws R runs with replacement *independently for every
  episode column* (rliable's ``StratifiedBootstrap``), and the CI is the percentile interval;
* **probability of improvement** P(X > Y) -- for each episode, the Mann-Whitney statistic of X's
  runs against Y's, ``P(x > y) + 0.5 P(x = y)``, averaged over episodes
  (``rliable.metrics.probability_of_improvement``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: Bootstrap resamples for the over-runs intervals (rliable uses 50,000 by default for plots; 2,000
#: is PROTOCOL.md's floor for E200 intervals and keeps ``compare`` fast).
N_RESAMPLES = 5000


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of every entry (25 % trimmed from each end)."""
    return float(sps.trim_mean(np.asarray(scores, dtype=np.float64), 0.25, axis=None))


def mean(scores: np.ndarray) -> float:
    return float(np.mean(scores))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over runs, per episode column, averaged over columns; ``x [Rx, T]``, ``y [Ry, T]``."""
    x, y = _matrix(x), _matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must share their episodes: {x.shape[1]} vs {y.shape[1]} columns")
    gt = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))  # [T]
    eq = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))  # [T]
    return float(np.mean(gt + 0.5 * eq))


def _matrix(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"scores must be a non-empty [runs, episodes] matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("scores must be finite (a missing episode is not a score)")
    return a


def stratified_indices(rng: np.random.Generator, runs: int, episodes: int) -> np.ndarray:
    """``[runs, episodes]`` run indices: R draws with replacement per episode column."""
    return rng.integers(0, runs, size=(runs, episodes))


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of ``statistic`` over stratified-bootstrap resamples of ``scores [R, T]``."""
    a = _matrix(scores)
    rng = np.random.default_rng(seed)
    cols = np.arange(a.shape[1])
    vals = np.empty(n_resamples)
    for i in range(n_resamples):
        vals[i] = statistic(a[stratified_indices(rng, *a.shape), cols])
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(vals, [tail, 100 - tail])
    return float(lo), float(hi)


def poi_ci(
    x: np.ndarray,
    y: np.ndarray,
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of P(X > Y), each side resampled by the stratified bootstrap."""
    x, y = _matrix(x), _matrix(y)
    rng = np.random.default_rng(seed)
    cols = np.arange(x.shape[1])
    vals = np.empty(n_resamples)
    for i in range(n_resamples):
        xs = x[stratified_indices(rng, *x.shape), cols]
        ys = y[stratified_indices(rng, *y.shape), cols]
        vals[i] = probability_of_improvement(xs, ys)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(vals, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class RowFigures:
    """One row's score over its runs."""

    n_runs: int
    n_episodes: int
    mean_over_runs: float
    """The mean of the runs' own means."""
    iqm: float
    iqm_ci: tuple[float, float] | None
    """Stratified-bootstrap CI of the IQM; None with one run (resampling one run says nothing
    about the spread between runs)."""
    mean_ci: tuple[float, float] | None
    """Stratified-bootstrap CI of the mean over (run, episode); None with one run."""

    def to_dict(self) -> dict[str, object]:
        return {
            "n_runs": self.n_runs,
            "n_episodes": self.n_episodes,
            "mean_over_runs": self.mean_over_runs,
            "iqm": self.iqm,
            "iqm_ci": None if self.iqm_ci is None else list(self.iqm_ci),
            "mean_ci": None if self.mean_ci is None else list(self.mean_ci),
        }


def row_figures(scores: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> RowFigures:
    """IQM and mean with stratified-bootstrap CIs of ``scores [R, T]`` (no CI for one run)."""
    a = _matrix(scores)
    several = a.shape[0] > 1
    return RowFigures(
        n_runs=a.shape[0],
        n_episodes=a.shape[1],
        mean_over_runs=float(a.mean(axis=1).mean()),
        iqm=iqm(a),
        iqm_ci=stratified_bootstrap_ci(a, iqm, n_resamples, seed=seed) if several else None,
        mean_ci=stratified_bootstrap_ci(a, mean, n_resamples, seed=seed + 1) if several else None,
    )


def aligned_scores(episodes_per_run: list[list[dict]]) -> tuple[np.ndarray, list[int]]:
    """``[R, T]`` scores of several evaluations on their *common* game seeds (seed order).

    ``episodes_per_run``: each run's per-episode records (``seed``, ``score``), as in an
    evaluation JSON. Episodes missing from any run are dropped from all (returned seeds say which
    remain); raises ``ValueError`` if no seed is common to all."""
    maps = [{int(e["seed"]): float(e["score"]) for e in eps} for eps in episodes_per_run]
    common = sorted(set.intersection(*(set(m) for m in maps))) if maps else []
    if not common:
        raise ValueError("the evaluations share no game seed; they cannot be compared per episode")
    return np.array([[m[s] for s in common] for m in maps]), common
