"""Markdown report of a training run, in the shape of ``reference/finetune_5000_results.md``.

Every number is computed here from the run directory, never typed:

* ``metrics.jsonl`` (episode, update, checkpoint and event records; torn lines skipped),
* ``config.yaml`` (resolved config; the ``run_start`` record's config when the file is absent),
* ``checkpoints/`` (file listing),
* ``eval/*.json`` (E200 evaluations, when present).

Figures are written to ``report_plots/`` next to the report and embedded with relative paths.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.analysis import plots
from nethack_moe.analysis.compare import Group, groups_from_eval, summary_table
from nethack_moe.analysis.metrics_io import Phase, RunData, load_eval_files, load_run
from nethack_moe.analysis.routing import _expert_names as _default_expert_names
from nethack_moe.analysis.routing import verdict
from nethack_moe.analysis.stats import (
    best_window,
    compare_tails,
    diff_ci,
    score_quantiles,
    summarize,
    text_histogram,
)

log = logging.getLogger(__name__)

ROUTING_KEYS = (
    "alpha_entropy",
    "alpha_entropy_std",
    "usage_entropy",
    "mi",
    "effective_experts",
    "sparsity",
)
_ALIASES = {"mi": ("routing/mi", "routing/routing_mi")}


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------


def _fin(values: Sequence[Any]) -> np.ndarray:
    out = []
    for v in values:
        if isinstance(v, bool) or v is None:
            if isinstance(v, bool):
                out.append(float(v))
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=np.float64)


def _mean(values: Sequence[Any]) -> float | None:
    a = _fin(values)
    return float(a.mean()) if a.size else None


def _std(values: Sequence[Any]) -> float | None:
    a = _fin(values)
    if a.size == 0:
        return None
    return float(a.std(ddof=1)) if a.size > 1 else 0.0


def fmt_num(v: Any, nd: int = 2) -> str:
    """A number with ``nd`` decimals for tables; "–" for None, no "-0.00" for tiny negatives."""
    if v is None:
        return "–"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return str(f)
    if abs(f) < 0.5 * 10.0**-nd:
        f = 0.0
    return f"{f:.{nd}f}"


_f = fmt_num


def _pm(m: Any, s: Any, nd: int = 4) -> str:
    if m is None:
        return "–"
    return f"{_f(m, nd)} ± {_f(s, nd)}"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


def _signed(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:+.{nd}f}"


def _rel(a: float | None, b: float | None) -> str:
    """Relative change, omitted when the base is 0 or the change is over 1000 % (meaningless)."""
    if a is None or b is None or a == 0 or abs(b - a) > 10 * abs(a):
        return ""
    return f" ({100 * (b - a) / abs(a):+.1f} %)"


def _ci(ci: Any, nd: int = 2) -> str:
    return "" if not ci else f" [{float(ci[0]):.{nd}f}, {float(ci[1]):.{nd}f}]"


def _size(n: int) -> str:
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return f"{n} B"


def _ukey(u: dict[str, Any], key: str) -> Any:
    for k in _ALIASES.get(key, ("routing/" + key,)):
        if k in u:
            return u[k]
    return None


# ------------------------------------------------------------------------------------------------
# computations
# ------------------------------------------------------------------------------------------------


def phase_stats(run: RunData, *, n_resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Per-phase figures: episodes by their ``phase`` field, routing from the phase's updates.

    Alpha entropy ``mean ± std`` is over the phase's update records (std ddof=1); score std is
    the sample std (ddof=1) over its episodes.
    """
    out = []
    for ph in run.phases:
        eps = [e for e in run.episodes if str(e.get("phase")) == ph.name]
        ups = [u for u in run.updates if str(u.get("phase")) == ph.name]
        scores = [e.get("score") for e in eps]
        s = summarize(
            _fin(scores),
            died=_fin([e.get("died") for e in eps if e.get("died") is not None]) if eps else None,
            depth=_fin([e.get("depth") for e in eps]) if eps else None,
            length=_fin([e.get("length") for e in eps]) if eps else None,
            n_resamples=n_resamples,
            seed=seed,
            ci=len(eps) > 1,
        )
        best = None
        if eps:
            i = int(np.argmax([_num(e.get("score")) for e in eps]))
            best = (eps[i].get("score"), eps[i].get("episode"))
        routing: dict[str, Any] = {}
        for k in ROUTING_KEYS:
            vals = [_ukey(u, k) for u in ups]
            routing[k] = _mean(vals)
            routing[k + "_sd"] = _std(vals)
        usage = _mean_vectors([u.get("routing/usage") for u in ups])
        share = _mean_vectors([u.get("routing/argmax_share") for u in ups])
        temps = _fin([u.get("temperature") for u in ups])
        if temps.size == 0:
            temps = _fin([e.get("temperature") for e in eps])
        out.append(
            {
                "phase": ph,
                "episodes": eps,
                "updates": ups,
                "n": len(eps),
                "first": eps[0].get("episode") if eps else None,
                "last": eps[-1].get("episode") if eps else None,
                "score": s,
                "scores": _fin(scores),
                "reward_mean": _mean([e.get("reward") for e in eps]),
                "reward_std": _std([e.get("reward") for e in eps]),
                "max_score": best,
                "routing": routing,
                "usage": usage,
                "argmax_share": share,
                "temperature": (float(temps.min()), float(temps.max())) if temps.size else None,
                "routing_kind": _most_common([u.get("routing") for u in ups + eps]),
                "lr": _most_common([u.get("lr") for u in ups]),
                "n_updates": len(ups),
            }
        )
    return out


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("-inf")
    return f if math.isfinite(f) else float("-inf")


def _most_common(values: Sequence[Any]) -> Any:
    c = Counter(v for v in values if v is not None)
    return c.most_common(1)[0][0] if c else None


def _mean_vectors(vecs: Sequence[Any]) -> list[float] | None:
    rows = [v for v in vecs if isinstance(v, list) and v]
    if not rows:
        return None
    E = Counter(len(v) for v in rows).most_common(1)[0][0]
    mat = np.array([v for v in rows if len(v) == E], dtype=np.float64)
    mat = mat[np.isfinite(mat).all(axis=1)]
    return [float(x) for x in mat.mean(axis=0)] if mat.size else None


def segment_stats(run: RunData, segment: int = 500) -> list[dict[str, Any]]:
    """Figures per block of ``segment`` episodes ``(k·seg, (k+1)·seg]`` by episode number."""
    if not run.episodes or segment <= 0:
        return []
    last = max(int(e.get("episode", 0) or 0) for e in run.episodes)
    out = []
    for k in range(max(1, math.ceil(last / segment))):
        lo, hi = k * segment, (k + 1) * segment
        eps = [e for e in run.episodes if lo < int(e.get("episode", 0) or 0) <= hi]
        ups = [u for u in run.updates if lo < int(u.get("episode", 0) or 0) <= hi]
        if not eps and not ups:
            continue
        phases = list(dict.fromkeys(str(e.get("phase")) for e in eps))
        scores = _fin([e.get("score") for e in eps])
        temps = _fin([u.get("temperature") for u in ups] or [e.get("temperature") for e in eps])
        out.append(
            {
                "range": (lo, hi),
                "phases": phases,
                "n": len(eps),
                "mean": float(scores.mean()) if scores.size else None,
                "std": (float(scores.std(ddof=1)) if scores.size > 1 else 0.0)
                if scores.size
                else None,
                "max": float(scores.max()) if scores.size else None,
                "reward": _mean([e.get("reward") for e in eps]),
                "died": _mean([e.get("died") for e in eps]),
                "depth": _mean([e.get("depth") for e in eps]),
                "alpha_entropy": _mean([_ukey(u, "alpha_entropy") for u in ups]),
                "alpha_entropy_sd": _std([_ukey(u, "alpha_entropy") for u in ups]),
                "mi": _mean([_ukey(u, "mi") for u in ups]),
                "temperature": (float(temps.min()), float(temps.max())) if temps.size else None,
            }
        )
    return out


def _n_experts(run: RunData, stats: list[dict[str, Any]]) -> int | None:
    for st in reversed(stats):
        if st["usage"]:
            return len(st["usage"])
    cfg = run.config or {}
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if isinstance(model, dict):
        for k in ("n_experts", "num_experts", "experts"):
            v = model.get(k)
            if isinstance(v, int):
                return v
            if isinstance(v, list):
                return len(v)
    return None


def _expert_names(run: RunData, n: int | None) -> list[str] | None:
    cfg = run.config or {}
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if isinstance(model, dict):
        for k in ("expert_names", "experts"):
            v = model.get(k)
            if isinstance(v, list) and all(isinstance(x, str) for x in v) and len(v) == n:
                return list(v)
    return _default_expert_names(n, None) if n else None


_TARGET_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<|≥|≤)\s*(-?[0-9.eE+]+)\s*$")
_RANGE_RE = re.compile(r"^\s*\[?\s*(-?[0-9.eE+]+)\s*(?:\.\.|–|-|to|,)\s*(-?[0-9.eE+]+)\s*\]?\s*$")


def check_expectation(target: Any, actual: float | None) -> tuple[str, str]:
    """``(status, target text)`` of one expectation; status ``met``, ``not met``, ``no data``
    or ``unparsed``. Targets: ``">= x"``, ``"> x"``, ``"<= x"``, ``"< x"``, ``"== x"``,
    ``"a..b"`` (inclusive range) or ``{"min": a, "max": b}``. A bare number is ambiguous (at least?
    at most?) and is not guessed.
    """
    text = str(target)
    lo: float | None = None
    hi: float | None = None
    op = None
    try:
        if isinstance(target, dict):
            lo = float(target["min"]) if target.get("min") is not None else None
            hi = float(target["max"]) if target.get("max") is not None else None
            text = " and ".join(
                t
                for t in ([f">= {lo:g}"] if lo is not None else [])
                + ([f"<= {hi:g}"] if hi is not None else [])
            )
            if lo is None and hi is None:
                return "unparsed", text
        elif isinstance(target, str) and (m := _TARGET_RE.match(target)):
            op, val = m.group(1), float(m.group(2))
            op = {"≥": ">=", "≤": "<="}.get(op, op)
            lo = val
        elif isinstance(target, str) and (m := _RANGE_RE.match(target)):
            lo, hi = sorted((float(m.group(1)), float(m.group(2))))
            text = f"{lo:g} .. {hi:g}"
        else:
            return "unparsed", text
    except (ValueError, KeyError, TypeError):
        return "unparsed", text
    if actual is None or not math.isfinite(actual):
        return "no data", text
    if op is not None:
        assert lo is not None
        ok = {
            ">=": actual >= lo,
            ">": actual > lo,
            "<=": actual <= lo,
            "<": actual < lo,
            "==": math.isclose(actual, lo, rel_tol=1e-9, abs_tol=1e-12),
            "!=": not math.isclose(actual, lo, rel_tol=1e-9, abs_tol=1e-12),
        }[op]
    else:
        ok = (lo is None or actual >= lo) and (hi is None or actual <= hi)
    return ("met" if ok else "not met"), text


def _count(e: dict[str, Any]) -> int:
    c = e.get("count", 1)
    return int(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else 1


def stability_counts(run: RunData) -> dict[str, int]:
    """Counts of the stability events of a run.

    Worker restarts: the ``count`` of ``worker_restart`` events (1 each without it). Dropped
    episodes: the larger of the ``dropped_episode`` events (with their ``count``) and the largest
    ``dropped_total`` carried by any event. Skipped updates: update records with ``skipped``.
    """
    by: dict[str, list[dict[str, Any]]] = {}
    for e in run.events:
        by.setdefault(str(e.get("kind")), []).append(e)
    dropped_events = sum(_count(e) for e in by.get("dropped_episode", []))
    totals = [e.get("dropped_total") for e in run.events]
    dropped_total = max((int(t) for t in totals if isinstance(t, (int, float))), default=0)
    return {
        "worker_restarts": sum(_count(e) for e in by.get("worker_restart", [])),
        "dropped_episodes": max(dropped_events, dropped_total),
        "nonfinite_skip_events": len(by.get("nonfinite_skip", [])),
        "skipped_updates": sum(1 for u in run.updates if u.get("skipped")),
        "interrupted": len(by.get("interrupted", [])),
        "resumed": len(by.get("resumed", [])),
    }


def report_metrics(
    run: RunData,
    stats: list[dict[str, Any]],
    evals: list[tuple[Path, dict[str, Any]]],
    window: int = 100,
) -> dict[str, float | None]:
    """The named figures expectations can refer to (``final_phase_mean_score`` ...)."""
    m: dict[str, float | None] = {}
    with_eps = [s for s in stats if s["n"]]

    def put_phase(prefix: str, st: dict[str, Any]) -> None:
        m[f"{prefix}_mean_score"] = st["score"]["mean"]
        m[f"{prefix}_median_score"] = st["score"]["median"]
        m[f"{prefix}_iqm_score"] = st["score"]["iqm"]
        m[f"{prefix}_score_std"] = st["score"]["std"]
        m[f"{prefix}_max_score"] = st["score"]["max"]
        m[f"{prefix}_mean_reward"] = st["reward_mean"]
        m[f"{prefix}_died"] = st["score"]["died"]
        m[f"{prefix}_depth"] = st["score"]["depth"]
        m[f"{prefix}_episodes"] = float(st["n"])
        r = st["routing"]
        m[f"{prefix}_alpha_entropy"] = r["alpha_entropy"]
        m[f"{prefix}_usage_entropy"] = r["usage_entropy"]
        m[f"{prefix}_routing_mi"] = r["mi"]
        m[f"{prefix}_effective_experts"] = r["effective_experts"]
        m[f"{prefix}_sparsity"] = r["sparsity"]

    for st in stats:
        if st["n"] or st["n_updates"]:
            put_phase(st["phase"].name, st)
    if with_eps:
        put_phase("first_phase", with_eps[0])
        put_phase("final_phase", with_eps[-1])
        a, b = with_eps[0]["score"]["mean"], with_eps[-1]["score"]["mean"]
        m["score_change"] = b - a if len(with_eps) > 1 else None
        m["score_change_pct"] = (
            100 * (b - a) / abs(a) if len(with_eps) > 1 and a not in (None, 0) else None
        )
    scores = _fin([e.get("score") for e in run.episodes])
    m["episodes"] = float(len(run.episodes))
    m["max_score"] = float(scores.max()) if scores.size else None
    m["mean_score"] = float(scores.mean()) if scores.size else None
    bw = best_window(scores, window)
    m["best_window_mean_score"] = bw[1] if bw else None
    sc_ = stability_counts(run)
    m["worker_restarts"] = float(sc_["worker_restarts"])
    m["dropped_episodes"] = float(sc_["dropped_episodes"])
    m["nonfinite_skips"] = float(max(sc_["nonfinite_skip_events"], sc_["skipped_updates"]))
    if evals:
        p, data = evals[-1]
        ck = data.get("checkpoints") or {}
        name = "final" if "final" in ck else (next(iter(ck)) if ck else None)
        if name is not None:
            eps = ck[name].get("episodes") or []
            sc = _fin([e.get("score") for e in eps])
            s = summarize(sc, ci=False) if sc.size else (ck[name].get("summary") or {})
            m["eval_mean_score"] = s.get("mean")
            m["eval_iqm_score"] = s.get("iqm")
            m["eval_median_score"] = s.get("median")
            m["eval_max_score"] = s.get("max")
            m["eval_died"] = _mean([e.get("died") for e in eps]) if eps else s.get("died")
            m["eval_depth"] = _mean([e.get("depth") for e in eps]) if eps else s.get("depth")
    return m


# ------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------


def _phase_name(st: dict[str, Any]) -> str:
    ph: Phase = st["phase"]
    end = "…" if ph.end is None else str(ph.end)
    return f"{ph.name} ({ph.start}–{end})"


def _status(run: RunData, total: int | None) -> str:
    n = len(run.episodes)
    kinds = [str(e.get("kind")) for e in run.events]
    if any(c.get("kind") == "final" for c in run.checkpoints) or (total and n >= total):
        return "completed"
    if kinds and kinds[-1] == "interrupted":
        return "interrupted (no resume logged after it)"
    return "in progress, or stopped without a final checkpoint"


def _wall_span(run: RunData) -> float | None:
    w = _fin([r.get("wall") for r in run.episodes + run.updates])
    return float(w.max() - w.min()) if w.size > 1 else None


def _hms(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    segment_size: int = 500,
    window: int = 100,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Path:
    """Write the markdown report of ``run_dir`` (default ``run_dir/report.md``) and its plots
    (``report_plots/`` next to it); returns the report path."""
    run_dir = Path(run_dir)
    out_path = Path(out) if out is not None else run_dir / "report.md"
    plot_dir = out_path.parent / "report_plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    run = load_run(run_dir)
    evals = load_eval_files(run_dir)
    stats = phase_stats(run, n_resamples=n_resamples, seed=seed)
    with_eps = [s for s in stats if s["n"]]
    cfg = run.config if isinstance(run.config, dict) else {}
    cur = cfg.get("curriculum") if isinstance(cfg.get("curriculum"), dict) else {}
    total = cur.get("total_episodes") if isinstance(cur, dict) else None
    total = int(total) if isinstance(total, (int, float)) else None
    E = _n_experts(run, stats)
    expert_names = _expert_names(run, E)
    metrics = report_metrics(run, stats, evals, window)
    all_scores = _fin([e.get("score") for e in run.episodes])
    rel = plot_dir.relative_to(out_path.parent).as_posix()

    md: list[str] = []
    add = md.append
    name = run_dir.resolve().name
    add(f"# Training report: {name}\n")
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    env_steps = max(
        (int(r.get("env_steps", 0) or 0) for r in run.episodes + run.updates), default=0
    )
    add(
        f"**Generated**: {now} by `nethack_moe.report` (every number below is computed from the "
        "run directory)  "
    )
    add(f"**Run directory**: `{run_dir}`  ")
    tot = f" of {total}" if total else ""
    add(
        f"**Episodes**: {len(run.episodes)}{tot} completed, {env_steps:,} env steps, "
        f"{len(run.updates)} updates  "
    )
    add(f"**Wall time** (span of the logged records): {_hms(_wall_span(run))}  ")
    add(f"**Status**: {_status(run, total)}  ")
    add(f"**Config**: {run.config_source}\n")
    add(
        "Scores are in-game score gains per episode and rewards the learner's training reward "
        "(PROTOCOL.md, S500). Training figures are averages over the training episodes under the "
        "sampling policy; they are not held-out evaluations (E200).\n"
    )
    add("---\n")

    # ---------------------------------------------------------------- executive summary
    add("## Executive summary\n")
    if not run.episodes:
        add("No episode records in `metrics.jsonl`: nothing to summarize yet.\n")
    key: list[str] = []
    if with_eps:
        chain = " → ".join(f"{s['phase'].name} {_f(s['score']['mean'])}" for s in with_eps)
        key.append(f"**Mean score per phase**: {chain}")
        rchain = " → ".join(f"{s['phase'].name} {_f(s['reward_mean'])}" for s in with_eps)
        key.append(f"**Mean reward per phase**: {rchain}")
    if len(with_eps) > 1:
        a, b = with_eps[0], with_eps[-1]
        d = b["score"]["mean"] - a["score"]["mean"]
        ci = diff_ci(a["scores"], b["scores"], n_resamples=n_resamples, seed=seed)
        mark = "⚠️ no clear change"
        if ci is not None and ci[0] > 0:
            mark = "✅ higher"
        elif ci is not None and ci[1] < 0:
            mark = "❌ lower"
        dr = None
        if a["reward_mean"] is not None and b["reward_mean"] is not None:
            dr = b["reward_mean"] - a["reward_mean"]
        key.append(
            f"**Change {a['phase'].name} → {b['phase'].name}**: score "
            f"{_f(a['score']['mean'])} → {_f(b['score']['mean'])}, {_signed(d)}"
            f"{_rel(a['score']['mean'], b['score']['mean'])}, 95 % CI of the difference"
            f"{_ci(ci)} ({mark}); reward {_signed(dr)}{_rel(a['reward_mean'], b['reward_mean'])}"
        )
    elif with_eps:
        key.append("Only one phase has episodes so far: no phase-to-phase change to report.")
    if all_scores.size:
        w = min(window, int(all_scores.size))
        bw = best_window(all_scores, w)
        if bw is not None:
            i, mean = bw
            e0, e1 = run.episodes[i].get("episode"), run.episodes[i + w - 1].get("episode")
            phs = list(dict.fromkeys(str(e.get("phase")) for e in run.episodes[i : i + w]))
            key.append(
                f"**Best window of {w} episodes**: episodes {e0}–{e1} ({', '.join(phs)}), "
                f"mean score {_f(mean)}"
            )
        j = int(np.argmax([_num(e.get("score")) for e in run.episodes]))
        top = run.episodes[j]
        key.append(
            f"**Highest score**: {_f(top.get('score'), 0)} (episode {top.get('episode')}, "
            f"phase {top.get('phase')})"
        )
    if evals:
        p, data = evals[-1]
        for ck, entry in (data.get("checkpoints") or {}).items():
            eps = entry.get("episodes") or []
            sc = _fin([e.get("score") for e in eps])
            if sc.size:
                s = summarize(
                    sc,
                    died=_fin([e.get("died") for e in eps]),
                    depth=_fin([e.get("depth") for e in eps]),
                    n_resamples=n_resamples,
                    seed=seed,
                )
            else:
                s = entry.get("summary") or {}
            g = " greedy" if entry.get("greedy") else ""
            key.append(
                f"**Latest evaluation** ({data.get('protocol', '?')}{g}, `eval/{p.name}`, "
                f"checkpoint `{ck}`, n = {s.get('n')}): mean {_f(s.get('mean'))}"
                f"{_ci(s.get('ci_mean'))}, IQM {_f(s.get('iqm'))}{_ci(s.get('ci_iqm'))}, "
                f"median {_f(s.get('median'), 1)}, max {_f(s.get('max'), 0)}, died "
                f"{_pct(s.get('died'))}, depth {_f(s.get('depth'))}"
            )
    else:
        key.append(
            "**Evaluation**: no `eval/*.json` in the run directory; run `evaluate` "
            "(E200) for held-out figures with confidence intervals."
        )
    last_routed = [s for s in stats if s["routing"]["alpha_entropy"] is not None]
    if last_routed and E:
        st = last_routed[-1]
        fig = {**st["routing"], "usage": st["usage"], "expert_names": expert_names}
        key.append(f"**Routing ({st['phase'].name}, training batches)**: {verdict(fig, E)}")
    elif run.updates:
        key.append("**Routing**: the update records carry no routing figures.")
    for i, k in enumerate(key, 1):
        add(f"{i}. {k}")
    add("")

    # ---------------------------------------------------------------- phase table
    add("### Phases\n")
    rows = []
    for st in stats:
        r = st["routing"]
        ms = st["max_score"]
        rows.append(
            [
                _phase_name(st),
                f"{st['first']}–{st['last']}" if st["n"] else "–",
                str(st["n"]),
                _f(st["score"]["mean"]),
                _f(st["reward_mean"]),
                f"{_f(ms[0], 0)} (ep {ms[1]})" if ms else "–",
                _pm(r["alpha_entropy"], r["alpha_entropy_sd"]),
                _f(st["score"]["std"]),
                _f(r["mi"], 4),
                _f(r["effective_experts"], 2),
            ]
        )
    add(
        _table(
            [
                "phase (episode range)",
                "episodes",
                "n",
                "mean score",
                "mean reward",
                "max score (episode)",
                "alpha entropy (mean ± std over updates)",
                "score std",
                "routing MI",
                "effective experts",
            ],
            rows,
        )
    )
    add("")
    if len(with_eps) > 1:
        a, b = with_eps[0], with_eps[-1]
        ra, rb = a["routing"], b["routing"]
        add(
            "Change from the first to the last phase with episodes "
            f"({a['phase'].name} → {b['phase'].name}):\n"
        )
        add("```")
        for lab, va, vb, nd in (
            ("mean score", a["score"]["mean"], b["score"]["mean"], 2),
            ("mean reward", a["reward_mean"], b["reward_mean"], 2),
            ("max score", a["score"]["max"], b["score"]["max"], 0),
            ("score std", a["score"]["std"], b["score"]["std"], 2),
            ("alpha entropy", ra["alpha_entropy"], rb["alpha_entropy"], 4),
            ("routing MI", ra["mi"], rb["mi"], 4),
            ("effective experts", ra["effective_experts"], rb["effective_experts"], 2),
        ):
            dv = None if va is None or vb is None else vb - va
            add(f"{lab:<18} {_f(va, nd):>10} → {_f(vb, nd):>10}   {_signed(dv, nd)}{_rel(va, vb)}")
        add("```\n")
    add("---\n")

    # ---------------------------------------------------------------- performance
    add("## 1. Performance\n")
    add("### Score and reward per phase\n")
    if with_eps:
        add("```")
        for st in with_eps:
            s = st["score"]
            add(
                f"{st['phase'].name:<14} score  {_f(s['mean']):>8} ± {_f(s['std']):<8} "
                f"95 % CI{_ci(s['ci_mean'])}  median {_f(s['median'], 1)}  IQM {_f(s['iqm'])}"
            )
            add(
                f"{'':<14} reward {_f(st['reward_mean']):>8} ± {_f(st['reward_std']):<8} "
                f"died {_pct(s['died'])}  depth {_f(s['depth'])}  length {_f(s['length'], 0)}"
            )
        add("```")
        add(
            f"(± is the sample std over episodes; CI: bootstrap of the mean, "
            f"{with_eps[0]['score'].get('ci_method', '')}, {n_resamples} resamples.)\n"
        )
    else:
        add("No episodes.\n")

    segs = segment_stats(run, segment_size)
    add(f"### Per segment ({segment_size} episodes)\n")
    if segs:
        rows = []
        for sg in segs:
            t = sg["temperature"]
            rows.append(
                [
                    f"{sg['range'][0]}–{sg['range'][1]}",
                    ", ".join(sg["phases"]) or "–",
                    str(sg["n"]),
                    _f(sg["mean"]),
                    _f(sg["std"]),
                    _f(sg["max"], 0),
                    _f(sg["reward"]),
                    _pct(sg["died"]),
                    _f(sg["depth"]),
                    _pm(sg["alpha_entropy"], sg["alpha_entropy_sd"]),
                    _f(sg["mi"], 4),
                    _trange(t),
                ]
            )
        add(
            _table(
                [
                    "episodes",
                    "phase",
                    "n",
                    "mean score",
                    "score std",
                    "max",
                    "mean reward",
                    "died",
                    "depth",
                    "alpha entropy",
                    "routing MI",
                    "temperature",
                ],
                rows,
            )
        )
        add("")
    else:
        add("No episodes.\n")

    add("### Score distribution per phase\n")
    if with_eps:
        qrows = []
        for st in with_eps:
            q = score_quantiles(st["scores"])
            zero = float((st["scores"] == 0).mean()) if st["scores"].size else None
            qrows.append(
                [st["phase"].name, str(st["n"])]
                + [_f(q[k], 1) for k in ("p10", "p25", "p50", "p75", "p90", "p99")]
                + [_f(st["score"]["max"], 0), _pct(zero)]
            )
        add(
            _table(
                ["phase", "n", "p10", "p25", "median", "p75", "p90", "p99", "max", "score 0"], qrows
            )
        )
        add("")
        for st in with_eps:
            add(f"**{st['phase'].name}**\n")
            add("```")
            add(text_histogram(st["scores"]))
            add("```\n")
        if len(with_eps) > 1:
            ref = with_eps[0]
            add(
                f"**More high scores or more low scores?** Each phase against {ref['phase'].name} "
                f"(high: at or above {ref['phase'].name}'s 90th percentile; low: at or below its "
                "25th percentile; a change counts when it exceeds two standard errors):\n"
            )
            for st in with_eps[1:]:
                c = compare_tails(ref["scores"], st["scores"])
                add(f"- {st['phase'].name}: {c['answer']}.")
            add("")
    else:
        add("No episodes.\n")
    add("---\n")

    # ---------------------------------------------------------------- routing
    add("## 2. Routing (expert specialization)\n")
    add(
        "Figures from the training batches of each update (PROTOCOL.md, routing figures). A low "
        "alpha entropy alone is not specialization: read it with routing MI and usage shares.\n"
    )
    if last_routed:
        rows = []
        for st in stats:
            r = st["routing"]
            if r["alpha_entropy"] is None:
                continue
            fig = {**r, "usage": st["usage"], "expert_names": expert_names}
            usage = ", ".join(_f(v, 2) for v in st["usage"]) if st["usage"] else "–"
            share = ", ".join(_f(v, 2) for v in st["argmax_share"]) if st["argmax_share"] else "–"
            t = st["temperature"]
            rows.append(
                [
                    st["phase"].name,
                    str(st["routing_kind"] or "–"),
                    _trange(t),
                    str(st["n_updates"]),
                    _pm(r["alpha_entropy"], r["alpha_entropy_sd"]),
                    _f(r["alpha_entropy_std"], 4),
                    _f(r["usage_entropy"], 4),
                    _f(r["mi"], 4),
                    _f(r["effective_experts"], 2),
                    _f(r["sparsity"], 3),
                    usage,
                    share,
                    verdict(fig, E or len(st["usage"] or [0, 0])),
                ]
            )
        names = ", ".join(expert_names) if expert_names else (f"{E} experts" if E else "")
        add(
            _table(
                [
                    "phase",
                    "routing",
                    "temperature",
                    "updates",
                    "alpha entropy",
                    "within-batch std",
                    "usage entropy",
                    "routing MI",
                    "effective experts",
                    "sparsity",
                    f"usage ᾱ ({names})",
                    "argmax share",
                    "verdict",
                ],
                rows,
            )
        )
        add("")
        if E and E > 1:
            add(
                f"Reference values for E = {E}: ln {E} = {math.log(E):.4f} (uniform), ln 2 = "
                f"{math.log(2):.4f} (two experts half-and-half), 0 (one expert per state).\n"
            )
        if len(last_routed) > 1:
            add("```")
            for p0, p1 in zip(last_routed[:-1], last_routed[1:], strict=True):
                va, vb = p0["routing"]["alpha_entropy"], p1["routing"]["alpha_entropy"]
                add(
                    f"alpha entropy {p0['phase'].name} → {p1['phase'].name}: "
                    f"{_signed(vb - va, 4)}{_rel(va, vb)}"
                )
            add("```\n")
    else:
        add("No routing figures in the update records.\n")
    eval_routing = []
    for p, data in evals[-1:]:
        for ck, entry in (data.get("checkpoints") or {}).items():
            rfig = (entry.get("summary") or {}).get("routing")
            if isinstance(rfig, dict) and rfig.get("alpha_entropy") is not None:
                eval_routing.append((p, ck, rfig))
    if eval_routing:
        add("### Routing on the evaluation rollouts\n")
        for p, ck, rfig in eval_routing:
            n_e = int(rfig.get("n_experts") or len(rfig.get("usage") or []) or (E or 0))
            sw = rfig.get("switch_rate")
            add(
                f"- `{ck}` (`eval/{p.name}`): alpha entropy {_f(rfig.get('alpha_entropy'), 4)}, "
                f"routing MI {_f(rfig.get('routing_mi'), 4)}, effective experts "
                f"{_f(rfig.get('effective_experts'))}, switch rate {_pct(sw)}: "
                f"{verdict(rfig, n_e)}"
            )
        add("")
    add("---\n")

    # ---------------------------------------------------------------- evaluation
    add("## 3. Evaluation\n")
    if evals:
        groups: list[Group] = []
        for p, data in evals:
            groups.extend(groups_from_eval(data, p.stem, p))
        add(summary_table(groups, n_resamples=n_resamples, seed=seed))
        add("")
        add(f"Seeds core = disp = 100000 + i (E200). CIs: bootstrap, {n_resamples} resamples.\n")
    else:
        add("No evaluation files (`eval/*.json`).\n")
        groups = []
    add("---\n")

    # ---------------------------------------------------------------- expectations
    add("## 4. Expectations vs actual\n")
    exp = cfg.get("expectations")
    if exp is None and isinstance(cfg.get("report"), dict):
        exp = cfg["report"].get("expectations")
    if isinstance(exp, dict) and exp:
        rows = []
        marks = {
            "met": "✅ met",
            "not met": "❌ not met",
            "no data": "– no data",
            "unparsed": "? target not understood",
        }
        for k, target in exp.items():
            known = str(k) in metrics
            actual = metrics.get(str(k))
            status, text = check_expectation(target, actual)
            if not known:
                status = "unknown metric"
            rows.append(
                [
                    f"`{k}`",
                    text,
                    _f(actual, 4) if actual is not None else "–",
                    marks.get(status, status),
                ]
            )
        add(_table(["metric", "target", "actual", "status"], rows))
        add("")
        if any(r[3] in ("unknown metric", "? target not understood") for r in rows):
            add(
                "Targets are written `'>= x'`, `'<= x'`, `'> x'`, `'< x'`, `'== x'` or "
                "`'a..b'`. " + _known_metrics_text(metrics, stats) + "\n"
            )
    elif exp is not None and exp != {}:
        add("The config's `expectations` is not a mapping of metric → target; ignored.\n")
    else:
        add(
            "The config states no `expectations:` (a mapping of metric → target such as "
            '`final_phase_mean_score: ">= 15"`).\n'
        )
    add("---\n")

    # ---------------------------------------------------------------- stability
    add("## 5. Training stability\n")
    ev = Counter(str(e.get("kind")) for e in run.events)
    stab = stability_counts(run)
    skipped = [u for u in run.updates if u.get("skipped")]
    terms = Counter(str(u.get("nonfinite_term")) for u in skipped if u.get("nonfinite_term"))
    srows = [
        ["updates logged", str(len(run.updates))],
        [
            "updates skipped (NaN/Inf)",
            f"{len(skipped)}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in terms.items())})" if terms else ""),
        ],
        ["`nonfinite_skip` events", str(stab["nonfinite_skip_events"])],
        ["worker restarts", str(stab["worker_restarts"])],
        ["dropped episodes (unfinished when a worker died)", str(stab["dropped_episodes"])],
        ["interruptions", str(stab["interrupted"])],
        ["resumes", str(stab["resumed"])],
        [
            "torn / non-JSON lines skipped in metrics.jsonl",
            f"{len(run.bad_lines)}"
            + (f" (lines {', '.join(map(str, run.bad_lines[:10]))})" if run.bad_lines else ""),
        ],
        [
            "episode / update records superseded after a resume",
            f"{run.duplicate_episodes} / {run.duplicate_updates}",
        ],
    ]
    other = {
        k: v
        for k, v in ev.items()
        if k
        not in {"nonfinite_skip", "worker_restart", "dropped_episode", "interrupted", "resumed"}
    }
    for k, v in sorted(other.items()):
        srows.append([f"`{k}` events", str(v)])
    add(_table(["item", "count"], srows))
    add("")
    if run.updates:
        rows = []
        for st in stats:
            ups = st["updates"]
            if not ups:
                continue
            gn = _fin([u.get("grad_norm") for u in ups])
            sps_ = _fin([u.get("sps") for u in ups])
            rows.append(
                [
                    st["phase"].name,
                    _f(_mean([u.get("approx_kl") for u in ups]), 4),
                    _f(_mean([u.get("clip_frac") for u in ups]), 3),
                    _f(_mean([u.get("explained_var") for u in ups]), 3),
                    f"{_f(np.median(gn) if gn.size else None)} / {_f(gn.max() if gn.size else None)}",
                    _f(_mean([u.get("loss/total") for u in ups]), 4),
                    "–" if st["lr"] is None else f"{float(st['lr']):.3g}",
                    _f(float(sps_.mean()) if sps_.size else None, 0),
                ]
            )
        add(
            _table(
                [
                    "phase",
                    "approx KL",
                    "clip frac",
                    "explained var",
                    "grad norm median / max",
                    "total loss",
                    "lr",
                    "SPS (trainer's)",
                ],
                rows,
            )
        )
        add("")
    add("---\n")

    # ---------------------------------------------------------------- checkpoints
    add("## 6. Checkpoints\n")
    ck_dir = run_dir / "checkpoints"
    by_name: dict[str, dict[str, Any]] = {}
    for c in run.checkpoints:
        by_name[Path(str(c.get("path", ""))).name] = c
    files = sorted(p for p in ck_dir.iterdir() if p.is_file()) if ck_dir.is_dir() else []
    if files:
        rows = []
        for p in files:
            rec = by_name.get(p.name)
            if rec is not None:
                ep, kind = str(rec.get("episode", "–")), str(rec.get("kind", "–"))
            else:
                m = re.search(r"(\d+)(?!.*\d)", p.stem)
                ep, kind = (f"{int(m.group(1))} (from the name)" if m else "–"), "–"
            rows.append([f"`{p.name}`", _size(p.stat().st_size), ep, kind])
        add(f"`{ck_dir}`\n")
        add(_table(["file", "size", "episode", "kind"], rows))
        add("")
    else:
        add(f"No checkpoint files in `{ck_dir}`.\n")
    missing = [n for n in by_name if not (ck_dir / n).is_file()]
    if missing:
        add(f"Logged but not on disk: {', '.join(f'`{n}`' for n in missing)}.\n")
    add("---\n")

    # ---------------------------------------------------------------- plots
    add("## 7. Figures\n")
    figs: list[tuple[str, Path]] = []
    try:
        tp = plots.plot_training_curves(
            run.episodes + run.updates, plot_dir / "training", window=window
        )
        if run.episodes:
            figs.append(("Score and reward per episode", tp[0]))
        if len(tp) > 1:
            figs.append(("Routing during training", tp[1]))
        if with_eps:
            figs.append(
                (
                    "Score per phase",
                    plots.plot_compare(
                        {s["phase"].name: s["scores"].tolist() for s in with_eps},
                        plot_dir / "phase_scores.png",
                        title="Score per phase (training episodes)",
                    ),
                )
            )
        if last_routed and last_routed[-1]["usage"]:
            st = last_routed[-1]
            fig = {**st["routing"], "usage": st["usage"], "argmax_share": st["argmax_share"]}
            figs.append(
                (
                    f"Expert usage ({st['phase'].name})",
                    plots.plot_usage_bars(fig, expert_names, plot_dir / "usage_last_phase.png"),
                )
            )
        if groups:
            figs.append(
                (
                    "Evaluation",
                    plots.plot_compare(
                        {g.name: g.scores if g.scores else (g.summary or {}) for g in groups},
                        plot_dir / "eval_compare.png",
                        title="Evaluation scores",
                    ),
                )
            )
        for _p, data in evals[-1:]:
            for ck, entry in (data.get("checkpoints") or {}).items():
                tab = ((entry.get("summary") or {}).get("routing") or {}).get("scenario_table")
                if isinstance(tab, dict) and tab.get("mean_alpha"):
                    figs.append(
                        (
                            f"Mean α per scenario ({ck})",
                            plots.plot_alpha_heatmap(
                                tab, plot_dir / f"scenario_alpha_{_safe(ck)}.png"
                            ),
                        )
                    )
    except Exception:  # noqa: BLE001 - a figure must not cost the whole report
        log.exception("plotting failed")
        add("Plotting failed (see the log); the tables above are complete.\n")
    for title, p in figs:
        add(f"**{title}**\n")
        add(f"![{title}]({rel}/{p.name})\n")
    if not figs:
        add("No figures (no data).\n")
    add("---\n")

    # ---------------------------------------------------------------- configuration
    add("## 8. Configuration\n")
    if run.phases and any(p.spec for p in run.phases):
        rows = []
        for ph in run.phases:
            sp = ph.spec
            coeffs = sp.get("coefficients")
            if not isinstance(coeffs, dict):
                coeffs = {}
            temp = sp.get("temperature")
            rows.append(
                [
                    ph.name,
                    f"{ph.start}–{'…' if ph.end is None else ph.end}",
                    str(sp.get("routing", "–")),
                    "–"
                    if temp is None
                    else (
                        " → ".join(f"{float(t):g}" for t in temp)
                        if isinstance(temp, list)
                        else str(temp)
                    ),
                    "–" if sp.get("lr") is None else f"{float(sp['lr']):g}",
                    ", ".join(f"{k}={v}" for k, v in coeffs.items()) or "–",
                ]
            )
        add(_table(["phase", "episodes", "routing", "temperature", "lr", "coefficients"], rows))
        add("")
    if run.config_text is not None:
        add(f"Resolved config (`{run.config_source}`):\n")
        add("```yaml")
        add(run.config_text.rstrip())
        add("```\n")
    elif run.config is not None:
        import yaml

        add(f"Resolved config from the {run.config_source}:\n")
        add("```yaml")
        add(yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True).rstrip())
        add("```\n")
    else:
        add(
            "No config file (`config.yaml`) in the run directory and no `run_start` record: "
            "phases were inferred from the episode records.\n"
        )

    out_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    log.info("report written to %s", out_path)
    return out_path


def _known_metrics_text(metrics: dict[str, Any], stats: list[dict[str, Any]]) -> str:
    prefixes = ["first_phase", "final_phase"] + [st["phase"].name for st in stats]
    per_phase = sorted(
        {k[len(p) + 1 :] for k in metrics for p in prefixes if k.startswith(p + "_")}
    )
    run_level = sorted(k for k in metrics if not any(k.startswith(p + "_") for p in prefixes))
    return (
        "Known metrics: `<phase>_<figure>` for phase in "
        + ", ".join(f"`{p}`" for p in dict.fromkeys(prefixes))
        + " and figure in "
        + ", ".join(f"`{f}`" for f in per_phase)
        + "; run-level: "
        + ", ".join(f"`{k}`" for k in run_level)
        + "."
    )


def _trange(t: tuple[float, float] | None) -> str:
    if t is None:
        return "–"
    return f"{t[0]:.3g}" if t[0] == t[1] else f"{t[0]:.3g}–{t[1]:.3g}"


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)
