"""The report's opening sections: the header and the executive summary.

:func:`header` states the run (status, episodes, wall-clock span); :func:`executive_summary` lists
the few findings a reader needs first, each one item built from the loaded
:class:`~nethack_moe.report.data.ReportData`: the training phases and the best window, the
evaluations and their specialization figures, and the routing. The sections after them are in
:mod:`nethack_moe.report.training_sections` and :mod:`nethack_moe.report.sections`.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from nethack_moe.core import formatting as fmt
from nethack_moe.core.formatting import num
from nethack_moe.metrics.routing import verdict
from nethack_moe.metrics.stats import best_window, diff_ci
from nethack_moe.report.data import ReportData, eval_summary
from nethack_moe.report.training_stats import finite, score_key
from nethack_moe.runs.metrics_io import EvalFile, EvalRun


# ------------------------------------------------------------------------------------ header
def _status(d: ReportData) -> str:
    run, total = d.run, d.total_episodes
    kinds = [str(e.kind) for e in run.events]
    n = len(run.episodes) + len(run.greedy_episodes)
    if any(c.kind == "final" for c in run.checkpoints) or (total and n >= total):
        return "completed"
    if kinds and kinds[-1] == "interrupted":
        return "interrupted (no resume logged after it)"
    return "in progress, or stopped without a final checkpoint"


def _wall_span(d: ReportData) -> float | None:
    w = finite([e.wall for e in d.run.episodes] + [u.wall for u in d.run.updates])
    return float(w.max() - w.min()) if w.size > 1 else None


def header(d: ReportData) -> list[str]:
    """Title, run directory, episodes, wall time, status, config source."""
    run = d.run
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    steps = [e.env_steps for e in run.episodes] + [u.env_steps for u in run.updates]
    env_steps = max((int(s or 0) for s in steps), default=0)
    tot = f" of {d.total_episodes}" if d.total_episodes else ""
    n_greedy = len(run.greedy_episodes)
    greedy = f" ({n_greedy} of them greedy, outside the training figures)" if n_greedy else ""
    return [
        f"# Training report: {d.run_dir.resolve().name}\n",
        f"**Generated**: {now} by `nethack_moe.report` (every number below is computed from the "
        "run directory)  ",
        f"**Run directory**: `{d.run_dir}`  ",
        f"**Episodes**: {len(run.episodes) + n_greedy}{tot} completed{greedy}, {env_steps:,} env steps, "
        f"{len(run.updates)} updates  ",
        f"**Wall time** (span of the logged records): {fmt.duration(_wall_span(d))}  ",
        f"**Status**: {_status(d)}  ",
        f"**Config**: {run.config_source}\n",
        "Scores are in-game score gains per episode and rewards the learner's training reward "
        "(PROTOCOL.md, S500). Training figures are averages over the training episodes under the "
        "sampling policy; they are not held-out evaluations (E200).\n",
        "---\n",
    ]


# ------------------------------------------------------------------------------------ summary
def _phase_change_item(d: ReportData) -> str:
    """First to last phase with episodes: score change with its CI, reward change."""
    a, b = d.with_episodes[0], d.with_episodes[-1]
    ma, mb = a.score.mean, b.score.mean
    dv = None if ma is None or mb is None else mb - ma
    o = d.options
    ci = diff_ci(a.scores, b.scores, n_resamples=o.n_resamples, seed=o.seed)
    mark = "⚠️ no clear change"
    if ci is not None and ci[0] > 0:
        mark = "✅ higher"
    elif ci is not None and ci[1] < 0:
        mark = "❌ lower"
    dr = None
    if a.reward_mean is not None and b.reward_mean is not None:
        dr = b.reward_mean - a.reward_mean
    return (
        f"**Change {a.name} → {b.name}**: score {num(ma)} → {num(mb)}, {fmt.signed(dv)}"
        f"{fmt.rel_change(ma, mb)}, "
        f"{fmt.with_ci('95 % CI of the difference', ci)} ({mark}); reward "
        f"{fmt.signed(dr)}{fmt.rel_change(a.reward_mean, b.reward_mean)}"
    )


def _training_items(d: ReportData) -> list[str]:
    """Score and reward per phase, the change between phases, best window, highest score."""
    items: list[str] = []
    eps_phases = d.with_episodes
    if eps_phases:
        chain = " → ".join(f"{s.name} {num(s.score.mean)}" for s in eps_phases)
        items.append(f"**Mean score per phase**: {chain}")
        rchain = " → ".join(f"{s.name} {num(s.reward_mean)}" for s in eps_phases)
        items.append(f"**Mean reward per phase**: {rchain}")
    if len(eps_phases) > 1:
        items.append(_phase_change_item(d))
    elif eps_phases:
        items.append("Only one phase has episodes so far: no phase-to-phase change to report.")
    scores, episodes = d.all_scores, d.run.episodes
    if scores.size:
        w = min(d.options.window, int(scores.size))
        bw = best_window(scores, w)
        if bw is not None:
            i, mean = bw
            e0, e1 = episodes[i].episode, episodes[i + w - 1].episode
            phs = list(dict.fromkeys(str(e.phase) for e in episodes[i : i + w]))
            items.append(
                f"**Best window of {w} episodes**: episodes {e0}–{e1} ({', '.join(phs)}), "
                f"mean score {num(mean)}"
            )
        top = episodes[int(np.argmax([score_key(e.score) for e in episodes]))]
        items.append(
            f"**Highest score**: {num(top.score, 0)} (episode {top.episode}, phase {top.phase})"
        )
    return items


def _eval_item(d: ReportData, ev: EvalFile, r: EvalRun) -> str:
    """One evaluated checkpoint of the latest file, with its greedy run beside it."""
    s = eval_summary(r, d.options)
    g = " greedy" if r.greedy else ""
    text = (
        f"**Latest evaluation** ({ev.protocol or '?'}{g}, `eval/{ev.path.name}`, "
        f"checkpoint `{r.checkpoint}`, n = {s.n}): "
        f"{fmt.with_ci(f'mean {num(s.mean)}', s.ci_mean)}, "
        f"{fmt.with_ci(f'IQM {num(s.iqm)}', s.ci_iqm)}, median {num(s.median, 1)}, "
        f"max {num(s.max, 0)}, died {fmt.pct(s.died)}, depth {num(s.depth)}"
    )
    greedy = ev.beside(r)
    if greedy is not None:
        gs = eval_summary(greedy, d.options)
        text += (
            f"; greedy beside it: {fmt.with_ci(f'mean {num(gs.mean)}', gs.ci_mean)}, "
            f"died {fmt.pct(gs.died)}, depth {num(gs.depth)}"
        )
    return text


def _specialization_item(r: EvalRun) -> str | None:
    """The specialization figures of an evaluated checkpoint next to their baselines."""
    sp = r.specialization
    if sp.scenario_mi is None:
        return None
    above = {True: "above", False: "not above", None: "no baseline for"}[sp.above_baseline]
    null = sp.null
    against = "" if null is None else f", {null.name} null, p = {num(null.p_value, 3)}"
    text = (
        f"**Specialization** (`{r.checkpoint}`, latest evaluation): scenario information "
        f"{num(sp.scenario_mi, 4)} nats, {above} its permutation baselines (p95 "
        f"{num(sp.baseline_p95, 4)}{against})"
    )
    if sp.graph_argmax_change is not None or sp.state_argmax_change is not None:
        text += (
            f"; the argmax expert changes in {fmt.pct(sp.graph_argmax_change)} of the states "
            f"with h_graph replaced by its mean, {fmt.pct(sp.state_argmax_change)} with h_state"
        )
    if sp.hint_follow_share is not None:
        text += f"; hinted move taken in {fmt.pct(sp.hint_follow_share)} of the hinted steps"
    return text


def _evaluation_items(d: ReportData) -> list[str]:
    """The latest evaluation of each checkpoint (and its specialization figures)."""
    ev = d.latest_eval
    if ev is None:
        return [
            "**Evaluation**: no `eval/*.json` in the run directory; run `evaluate` "
            "(E200) for held-out figures with confidence intervals."
        ]
    items = []
    for r in ev.entries:
        if r.is_baseline:
            continue
        items.append(_eval_item(d, ev, r))
        spec = _specialization_item(r)
        if spec:
            items.append(spec)
    return items


def _routing_item(d: ReportData) -> list[str]:
    """The routing verdict of the last phase with routing figures."""
    routed = d.routed
    if routed and d.n_experts:
        st = routed[-1]
        fig = st.routing.figures(d.expert_names)
        return [f"**Routing ({st.name}, training batches)**: {verdict(fig, d.n_experts)}"]
    if d.run.updates:
        return ["**Routing**: the update records carry no routing figures."]
    return []


def executive_summary(d: ReportData) -> list[str]:
    """Numbered key findings: scores per phase and their change, best window, highest score, the
    latest evaluation, the routing verdict."""
    md = ["## Executive summary\n"]
    if not d.run.episodes:
        md.append("No episode records in `metrics.jsonl`: nothing to summarize yet.\n")
    items = _training_items(d) + _evaluation_items(d) + _routing_item(d)
    md += [f"{i}. {k}" for i, k in enumerate(items, 1)]
    md.append("")
    return md
