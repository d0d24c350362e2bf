"""Figures for analysis and reports (matplotlib, Agg backend, PNG files).

Every function writes one PNG (``plot_training_curves`` writes two) and returns its path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nethack_moe.metrics import names as mn  # noqa: E402
from nethack_moe.metrics.routing import _expert_names
from nethack_moe.metrics.stats import (
    bootstrap_ci,
    moving_average,  # noqa: E402
)
from nethack_moe.runs.records import EpisodeLine, UpdateLine

log = logging.getLogger(__name__)

DPI = 110
_COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=DPI)
    plt.close(fig)
    return p


def _names(n: int, names: Sequence[str] | None) -> list[str]:
    if names is not None and len(names) == n:
        return list(names)

    return _expert_names(n, None)


def plot_alpha_heatmap(table: Mapping[str, Any], path: str | Path) -> Path:
    """Heatmap of mean α per scenario (rows) and expert (columns) from ``scenario_table``."""
    scen = list(table["scenarios"])
    experts = list(table["experts"])
    mat = np.full((len(scen), len(experts)), np.nan)
    for i, row in enumerate(table["mean_alpha"]):
        if row is not None:
            mat[i] = row
    counts = table.get("counts") or [None] * len(scen)
    fig, ax = plt.subplots(figsize=(1.6 * len(experts) + 3, 0.7 * len(scen) + 2))
    im = ax.imshow(mat, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(experts)), experts)
    ylabels = [f"{s}\n(n={c})" if c is not None else s for s, c in zip(scen, counts, strict=True)]
    ax.set_yticks(range(len(scen)), ylabels)
    for i in range(len(scen)):
        for j in range(len(experts)):
            v = mat[i, j]
            txt = "–" if np.isnan(v) else f"{v:.2f}"
            ax.text(j, i, txt, ha="center", va="center", color="white" if v < 0.6 else "black")
    ax.set_xlabel("expert")
    ax.set_ylabel("scenario")
    ax.set_title("Mean router weight α per scenario")
    fig.colorbar(im, ax=ax, label="mean α")
    return _save(fig, path)


def plot_usage_bars(
    fig_data: Mapping[str, Any], expert_names: Sequence[str] | None, path: str | Path
) -> Path:
    """Bars of mean weight ᾱ_i and argmax share per expert (from ``routing_figures``)."""
    usage = mn.routing_value(fig_data, mn.USAGE) or []
    share = mn.routing_value(fig_data, mn.ARGMAX_SHARE) or []
    n = max(len(usage), len(share))
    names = _names(n, expert_names or fig_data.get("expert_names"))
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * n + 2), 4))
    w = 0.38
    if usage:
        ax.bar(x - w / 2, [v or 0 for v in usage], w, label="mean weight ᾱ")
    if share:
        ax.bar(x + w / 2, [v or 0 for v in share], w, label="share of states as argmax")
    if n:
        ax.axhline(1.0 / n, color="grey", ls="--", lw=1, label=f"uniform (1/{n})")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    ax.set_xlabel("expert")
    eff = mn.routing_value(fig_data, mn.EFFECTIVE_EXPERTS)
    title = "Expert usage"
    if eff is not None:
        title += f" (effective experts {float(eff):.2f})"
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_alpha_entropy_hist(entropies: Any, path: str | Path, n_experts: int) -> Path:
    """Histogram of per-state ``H(α_s)`` with reference lines at ln k, k = 1..E."""
    h = np.asarray(entropies, dtype=np.float64).reshape(-1)
    h = h[np.isfinite(h)]
    E = max(int(n_experts), 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    top = math.log(E) if E > 1 else 1.0
    bins = np.linspace(0, top * 1.02 + 1e-9, 51).tolist()
    if h.size:
        ax.hist(h, bins=bins, color=_COLORS[0], alpha=0.85, label=f"{h.size} states")
    for k in range(1, E + 1):
        ax.axvline(math.log(k), color="grey", ls=":", lw=1)
        ax.text(
            math.log(k),
            1.0,
            f" ln {k}",
            transform=ax.get_xaxis_transform(),
            va="top",
            ha="left",
            fontsize=8,
            color="dimgrey",
        )
    if h.size:
        ax.axvline(h.mean(), color="C3", lw=1.5, label=f"mean {h.mean():.3f}")
    ax.set_xlabel("alpha entropy H(α_s) [nats]")
    ax.set_ylabel("states")
    ax.set_title("Per-state router entropy")
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.9), fontsize=8)
    return _save(fig, path)


def plot_alpha_over_episode(
    alpha_steps: Any, expert_names: Sequence[str] | None, path: str | Path
) -> Path:
    """Stacked area of the expert weights α over the steps of one episode (``[T, E]``)."""
    a = np.asarray(alpha_steps, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"alpha_steps must be [T, E], got {a.shape}")
    T, E = a.shape
    names = _names(E, expert_names)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    if T:
        ax.stackplot(np.arange(T), a.T, labels=names, alpha=0.9)
        ax.set_xlim(0, max(T - 1, 1))
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("α (stacked)")
    ax.set_title("Expert weights over one episode")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _save(fig, path)


def _phase_boundaries(episodes: Sequence[EpisodeLine]) -> list[tuple[int, str]]:
    """(start, phase name) at each change of ``phase`` along the episode records.

    The start is the number of episodes completed before the phase's first episode (the
    curriculum's ``start_episode`` convention), which is also where update records switch.
    """
    out: list[tuple[int, str]] = []
    prev = None
    for e in episodes:
        ph = e.phase
        if ph != prev:
            out.append((max((1 if e.episode is None else int(e.episode)) - 1, 0), str(ph)))
            prev = ph
    return out


def _draw_phases(
    ax: Any, bounds: Sequence[tuple[int, str]], label: bool = True, end: float | None = None
) -> None:
    """Dashed lines at phase starts; with ``label``, phase names on a top axis at mid-phase."""
    for i, (ep, _name) in enumerate(bounds):
        if i > 0:
            ax.axvline(ep, color="black", ls="--", lw=0.9, alpha=0.6)
    if label and bounds:
        last = end if end is not None else ax.get_xlim()[1]
        starts = [float(b[0]) for b in bounds]
        ends = starts[1:] + [float(last)]
        mids = [(a + b) / 2 for a, b in zip(starts, ends, strict=True)]
        top = ax.secondary_xaxis("top")
        top.set_xticks(mids, [str(b[1]) for b in bounds], fontsize=9)
        top.tick_params(length=0)


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def plot_training_curves(
    episodes: Sequence[EpisodeLine],
    updates: Sequence[UpdateLine],
    path_prefix: str | Path,
    *,
    window: int = 100,
    phases: Sequence[tuple[int, str]] | None = None,
) -> list[Path]:
    """Training curves from a run's episode and update records (episodes without a score are
    left out).

    Writes ``<prefix>_scores.png`` (score and reward per episode with a ``window`` moving average
    and phase boundaries) and, when there are update records, ``<prefix>_routing.png`` (alpha
    entropy, usage entropy and routing MI with ln E, temperature on a twin axis; effective experts
    and usage shares below). ``phases`` is a list of ``(start episode, name)``; by default the
    changes of the episodes' ``phase`` field.
    """
    prefix = str(path_prefix)
    eps = [e for e in episodes if e.score is not None]
    ups = list(updates)
    bounds = list(phases) if phases is not None else _phase_boundaries(eps)
    paths = [_plot_scores(eps, bounds, window, prefix + "_scores.png")]
    if ups:
        paths.append(_plot_routing(ups, bounds, prefix + "_routing.png"))
    return paths


def _plot_scores(
    eps: Sequence[EpisodeLine], bounds: Sequence[tuple[int, str]], window: int, path: str
) -> Path:
    """Score and reward per episode with their ``window`` moving average and the phases."""
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    x = np.array([_num(e.episode) for e in eps])
    for ax, key, title, values in (
        (axes[0], "score", "Score", [e.score for e in eps]),
        (axes[1], "reward", "Reward", [e.reward for e in eps]),
    ):
        y = np.array([_num(v) for v in values])
        if y.size:
            ax.plot(x, y, ".", ms=2, alpha=0.25, color=_COLORS[0], label=f"{key} per episode")
            ok = np.isfinite(y)
            ax.plot(
                x[ok],
                moving_average(y[ok], window),
                color="C3",
                lw=1.6,
                label=f"moving average ({window})",
            )
            hi = np.nanpercentile(y, 99.5) if np.isfinite(y).any() else 1.0
            lo = min(0.0, float(np.nanmin(y))) if np.isfinite(y).any() else 0.0
            ax.set_ylim(lo, max(hi * 1.1, lo + 1.0))
        _draw_phases(ax, bounds, label=ax is axes[0], end=float(x.max()) if x.size else None)
        ax.set_ylabel(key)
        ax.set_title(f"{title} per episode (y-axis clipped at the 99.5th percentile)")
        if y.size:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("episode")
    return _save(fig, path)


def _plot_routing(ups: Sequence[UpdateLine], bounds: Sequence[tuple[int, str]], path: str) -> Path:
    """Alpha entropy, usage entropy and routing MI with ln E, the temperature on a twin axis;
    effective experts and usage shares below."""
    ux = np.array([_num(u.episode) for u in ups])
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True)
    x_end = float(np.nanmax(ux)) if np.isfinite(ux).any() else None
    for name, lab, c in (
        (mn.ALPHA_ENTROPY, "alpha entropy mean H(α_s)", "C0"),
        (mn.USAGE_ENTROPY, "usage entropy H(ᾱ)", "C2"),
        (mn.MI, "routing MI", "C3"),
    ):
        y = np.array([_num(u.routing_value(name)) for u in ups])
        if np.isfinite(y).any():
            a1.plot(ux, y, color=c, lw=1.2, label=lab)
    usage = [u.routing_value(mn.USAGE) for u in ups]
    E = max((len(v) for v in usage if isinstance(v, list)), default=0)
    if E > 1:
        a1.axhline(math.log(E), color="grey", ls=":", lw=1, label=f"ln {E} (uniform)")
    a1.set_ylabel("nats")
    a1.set_title("Routing during training")
    a1.grid(alpha=0.3)
    _draw_phases(a1, bounds, end=x_end)
    tw = a1.twinx()
    temp = np.array([_num(u.temperature) for u in ups])
    if np.isfinite(temp).any():
        tw.plot(ux, temp, color="black", ls="--", lw=1.0, alpha=0.7, label="temperature")
        tw.set_ylim(0, max(1.1 * float(np.nanmax(temp)), 1.1))
    tw.set_ylabel("router temperature")
    h1, l1 = a1.get_legend_handles_labels()
    h2, l2 = tw.get_legend_handles_labels()
    a1.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=8)

    eff = np.array([_num(u.routing_value(mn.EFFECTIVE_EXPERTS)) for u in ups])
    if np.isfinite(eff).any():
        a2.plot(ux, eff, color="C4", lw=1.5, label="effective experts exp H(ᾱ)")
    if E:
        mat = np.array(
            [v if isinstance(v, list) and len(v) == E else [np.nan] * E for v in usage],
            dtype=np.float64,
        )
        tw2 = a2.twinx()
        for i, name in enumerate(_names(E, None)):
            tw2.plot(
                ux,
                mat[:, i],
                lw=0.9,
                alpha=0.7,
                color=_COLORS[(i + 5) % len(_COLORS)],
                label=f"usage {name}",
            )
        tw2.set_ylim(0, 1)
        tw2.set_ylabel("usage share ᾱ_i")
        h3, l3 = tw2.get_legend_handles_labels()
    else:
        h3, l3 = [], []
    a2.set_ylim(0, max(E, 1) + 0.2)
    a2.set_ylabel("effective experts")
    a2.set_xlabel("episode")
    a2.grid(alpha=0.3)
    _draw_phases(a2, bounds, label=False, end=x_end)
    h4, l4 = a2.get_legend_handles_labels()
    a2.legend(h4 + h3, l4 + l3, loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=8)
    return _save(fig, path)


def plot_compare(
    groups: Mapping[str, Any],
    path: str | Path,
    *,
    ylabel: str = "score",
    title: str = "Comparison",
) -> Path:
    """Overlay of several score samples: box + jittered points per group, mean with its CI.

    ``groups`` maps a name to a list of per-episode values, or to a summary dict (``mean``,
    ``ci_mean``; then only the mean and its CI are drawn).
    """
    names = list(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(names) + 2.5), 5))
    rng = np.random.default_rng(0)
    all_vals: list[float] = []
    mean_label_done = False
    for i, name in enumerate(names):
        g = groups[name]
        if isinstance(g, Mapping):
            mean, ci = g.get("mean"), g.get("ci_mean")
            vals = np.array([])
        else:
            vals = np.asarray(list(g), dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            mean = float(vals.mean()) if vals.size else None
            ci = None
            if vals.size > 1:
                ci, _ = bootstrap_ci(vals, "mean", n_resamples=2000, seed=0)
        if vals.size:
            all_vals.extend(vals.tolist())
            ax.boxplot(
                [vals], positions=[i], widths=0.5, showfliers=False, medianprops={"color": "C1"}
            )
            jit = rng.uniform(-0.18, 0.18, vals.size)
            ax.plot(i + jit, vals, ".", ms=3, alpha=0.35, color=_COLORS[i % len(_COLORS)])
        if mean is not None:
            m = float(mean)
            err = None
            if ci is not None and ci[0] is not None:
                err = [[max(m - float(ci[0]), 0.0)], [max(float(ci[1]) - m, 0.0)]]
            ax.errorbar(
                [i + 0.3],
                [m],
                yerr=err,
                fmt="D",
                color="C3",
                capsize=5,
                ms=6,
                label=None if mean_label_done else "mean with 95 % CI",
            )
            mean_label_done = True
            all_vals.append(m)
    ax.set_xticks(range(len(names)), names, rotation=15 if len(names) > 3 else 0)
    ax.set_xlim(-0.6, len(names) - 0.4)
    v = np.asarray(all_vals, dtype=np.float64)
    if v.size and float(v.max()) > 10 * max(float(np.percentile(v, 75)), 1.0):
        ax.set_yscale("symlog", linthresh=10)
        ylabel += " (symlog scale)"
    if v.size:
        lo = float(v.min())
        ax.set_ylim(bottom=min(0.0, lo) - (0.5 if lo >= 0 else 0.05 * abs(lo)))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n(boxes: quartiles, whiskers 1.5 IQR, points: episodes)", fontsize=11)
    ax.grid(alpha=0.3, axis="y")
    if mean_label_done:
        ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)
