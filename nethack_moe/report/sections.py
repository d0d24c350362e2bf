"""The sections of the training report: one function per section, each taking the loaded
:class:`~nethack_moe.report.data.ReportData` and returning its markdown lines (joined with
newlines by :func:`nethack_moe.report.write_report`, in the order of :data:`SECTIONS`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.analysis import plots
from nethack_moe.core import formatting as fmt
from nethack_moe.core.formatting import markdown_table, num
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.routing import verdict
from nethack_moe.metrics.stats import (
    best_window,
    compare_tails,
    diff_ci,
    score_quantiles,
    text_histogram,
)
from nethack_moe.report.compare import same_seeds_table, specialization_table, summary_table
from nethack_moe.report.data import (
    PhaseStats,
    ReportData,
    eval_summary,
    finite,
    mean_of,
    score_key,
)
from nethack_moe.report.expectations import check_expectation, known_metrics_text
from nethack_moe.runs.metrics_io import EvalFile, EvalRun
from nethack_moe.runs.rundir import RunDir

log = logging.getLogger(__name__)


def _trange(t: tuple[float, float] | None) -> str:
    """A temperature range, ``0.5`` or ``1–0.5``."""
    if t is None:
        return fmt.MISSING
    return f"{t[0]:.3g}" if t[0] == t[1] else f"{t[0]:.3g}–{t[1]:.3g}"


def _safe(s: str) -> str:
    """``s`` usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


# ------------------------------------------------------------------------------------ header
def _status(d: ReportData) -> str:
    run, total = d.run, d.total_episodes
    kinds = [str(e.get("kind")) for e in run.events]
    if any(c.get("kind") == "final" for c in run.checkpoints) or (
        total and len(run.episodes) >= total
    ):
        return "completed"
    if kinds and kinds[-1] == "interrupted":
        return "interrupted (no resume logged after it)"
    return "in progress, or stopped without a final checkpoint"


def _wall_span(d: ReportData) -> float | None:
    w = finite([r.get("wall") for r in d.run.episodes + d.run.updates])
    return float(w.max() - w.min()) if w.size > 1 else None


def header(d: ReportData) -> list[str]:
    """Title, run directory, episodes, wall time, status, config source."""
    run = d.run
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    env_steps = max(
        (int(r.get("env_steps", 0) or 0) for r in run.episodes + run.updates), default=0
    )
    tot = f" of {d.total_episodes}" if d.total_episodes else ""
    return [
        f"# Training report: {d.run_dir.resolve().name}\n",
        f"**Generated**: {now} by `nethack_moe.report` (every number below is computed from the "
        "run directory)  ",
        f"**Run directory**: `{d.run_dir}`  ",
        f"**Episodes**: {len(run.episodes)}{tot} completed, {env_steps:,} env steps, "
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
            e0, e1 = episodes[i].get("episode"), episodes[i + w - 1].get("episode")
            phs = list(dict.fromkeys(str(e.get("phase")) for e in episodes[i : i + w]))
            items.append(
                f"**Best window of {w} episodes**: episodes {e0}–{e1} ({', '.join(phs)}), "
                f"mean score {num(mean)}"
            )
        top = episodes[int(np.argmax([score_key(e.get("score")) for e in episodes]))]
        items.append(
            f"**Highest score**: {num(top.get('score'), 0)} (episode {top.get('episode')}, "
            f"phase {top.get('phase')})"
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


# ------------------------------------------------------------------------------------ phases
def _phase_row(st: PhaseStats) -> list[str]:
    r, ms = st.routing, st.max_score
    return [
        st.phase.label,
        f"{st.first}–{st.last}" if st.n else fmt.MISSING,
        str(st.n),
        num(st.score.mean),
        num(st.reward_mean),
        f"{num(ms[0], 0)} (ep {ms[1]})" if ms else fmt.MISSING,
        fmt.pm(r.alpha_entropy, r.alpha_entropy_sd),
        num(st.score.std),
        num(r.mi, 4),
        num(r.effective_experts, 2),
    ]


def _phase_change_block(a: PhaseStats, b: PhaseStats) -> list[str]:
    """The first and last phase with episodes, figure by figure."""
    ra, rb = a.routing, b.routing
    md = [f"Change from the first to the last phase with episodes ({a.name} → {b.name}):\n", "```"]
    for lab, va, vb, nd in (
        ("mean score", a.score.mean, b.score.mean, 2),
        ("mean reward", a.reward_mean, b.reward_mean, 2),
        ("max score", a.score.max, b.score.max, 0),
        ("score std", a.score.std, b.score.std, 2),
        ("alpha entropy", ra.alpha_entropy, rb.alpha_entropy, 4),
        ("routing MI", ra.mi, rb.mi, 4),
        ("effective experts", ra.effective_experts, rb.effective_experts, 2),
    ):
        dv = None if va is None or vb is None else vb - va
        md.append(
            f"{lab:<18} {num(va, nd):>10} → {num(vb, nd):>10}   "
            f"{fmt.signed(dv, nd)}{fmt.rel_change(va, vb)}"
        )
    md.append("```\n")
    return md


def phase_table(d: ReportData) -> list[str]:
    """One row per phase: episodes, scores, reward, alpha entropy, routing MI."""
    md = ["### Phases\n"]
    md.append(
        markdown_table(
            ["phase (episode range)", "episodes", "n", "mean score", "mean reward",
             "max score (episode)", "alpha entropy (mean ± std over updates)", "score std",
             "routing MI", "effective experts"],
            [_phase_row(st) for st in d.phases],
        )
    )  # fmt: skip
    md.append("")
    if len(d.with_episodes) > 1:
        md += _phase_change_block(d.with_episodes[0], d.with_episodes[-1])
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ performance
def performance(d: ReportData) -> list[str]:
    """Score and reward per phase with the CI of the mean."""
    md = ["## 1. Performance\n", "### Score and reward per phase\n"]
    eps_phases = d.with_episodes
    if not eps_phases:
        return md + ["No episodes.\n"]
    md.append("```")
    for st in eps_phases:
        s = st.score
        md.append(
            f"{st.name:<14} score  {num(s.mean):>8} ± {num(s.std):<8} "
            f"{fmt.with_ci('95 % CI', s.ci_mean)}  median {num(s.median, 1)}  IQM {num(s.iqm)}"
        )
        md.append(
            f"{'':<14} reward {num(st.reward_mean):>8} ± {num(st.reward_std):<8} "
            f"died {fmt.pct(s.died)}  depth {num(s.depth)}  length {num(s.length, 0)}"
        )
    md.append("```")
    md.append(
        f"(± is the sample std over episodes; CI: bootstrap of the mean, "
        f"{eps_phases[0].score.ci_method}, {d.options.n_resamples} resamples.)\n"
    )
    return md


def segments(d: ReportData) -> list[str]:
    """One row per block of ``segment_size`` episodes."""
    md = [f"### Per segment ({d.options.segment_size} episodes)\n"]
    if not d.segments:
        return md + ["No episodes.\n"]
    rows = [
        [f"{sg.lo}–{sg.hi}", ", ".join(sg.phases) or fmt.MISSING, str(sg.n), num(sg.mean),
         num(sg.std), num(sg.max, 0), num(sg.reward), fmt.pct(sg.died), num(sg.depth),
         fmt.pm(sg.routing.alpha_entropy, sg.routing.alpha_entropy_sd), num(sg.routing.mi, 4),
         _trange(sg.temperature)]
        for sg in d.segments
    ]  # fmt: skip
    md.append(
        markdown_table(
            ["episodes", "phase", "n", "mean score", "score std", "max", "mean reward", "died",
             "depth", "alpha entropy", "routing MI", "temperature"],
            rows,
        )
    )  # fmt: skip
    md.append("")
    return md


def _tails(d: ReportData) -> list[str]:
    """Each phase's tails against the first phase's."""
    ref = d.with_episodes[0]
    md = [
        f"**More high scores or more low scores?** Each phase against {ref.name} "
        f"(high: at or above {ref.name}'s 90th percentile; low: at or below its "
        "25th percentile; a change counts when it exceeds two standard errors):\n"
    ]
    for st in d.with_episodes[1:]:
        md.append(f"- {st.name}: {compare_tails(ref.scores, st.scores)['answer']}.")
    md.append("")
    return md


def score_distribution(d: ReportData) -> list[str]:
    """Quantiles and a text histogram per phase, and how the tails moved."""
    md = ["### Score distribution per phase\n"]
    eps_phases = d.with_episodes
    if not eps_phases:
        return md + ["No episodes.\n", "---\n"]
    rows = []
    for st in eps_phases:
        q = score_quantiles(st.scores)
        zero = float((st.scores == 0).mean()) if st.scores.size else None
        rows.append(
            [st.name, str(st.n)]
            + [num(q[k], 1) for k in ("p10", "p25", "p50", "p75", "p90", "p99")]
            + [num(st.score.max, 0), fmt.pct(zero)]
        )
    md.append(
        markdown_table(
            ["phase", "n", "p10", "p25", "median", "p75", "p90", "p99", "max", "score 0"], rows
        )
    )
    md.append("")
    for st in eps_phases:
        md += [f"**{st.name}**\n", "```", text_histogram(st.scores), "```\n"]
    if len(eps_phases) > 1:
        md += _tails(d)
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ routing
def _routing_row(d: ReportData, st: PhaseStats) -> list[str]:
    r, E = st.routing, d.n_experts
    usage = ", ".join(num(v, 2) for v in r.usage) if r.usage else fmt.MISSING
    share = ", ".join(num(v, 2) for v in r.argmax_share) if r.argmax_share else fmt.MISSING
    return [
        st.name,
        str(st.routing_kind or fmt.MISSING),
        _trange(st.temperature),
        str(st.n_updates),
        fmt.pm(r.alpha_entropy, r.alpha_entropy_sd),
        num(r.alpha_entropy_std, 4),
        num(r.usage_entropy, 4),
        num(r.mi, 4),
        num(r.effective_experts, 2),
        num(r.sparsity, 3),
        usage,
        share,
        verdict(r.figures(d.expert_names), E or len(r.usage or [0, 0])),
    ]


def _routing_phase_table(d: ReportData) -> list[str]:
    E, names = d.n_experts, d.expert_names
    label = ", ".join(names) if names else (f"{E} experts" if E else "")
    md = [
        markdown_table(
            ["phase", "routing", "temperature", "updates", "alpha entropy", "within-batch std",
             "usage entropy", "routing MI", "effective experts", "sparsity", f"usage ᾱ ({label})",
             "argmax share", "verdict"],
            [_routing_row(d, st) for st in d.routed],
        ),
        "",
    ]  # fmt: skip
    if E and E > 1:
        md.append(
            f"Reference values for E = {E}: ln {E} = {math.log(E):.4f} (uniform), ln 2 = "
            f"{math.log(2):.4f} (two experts half-and-half), 0 (one expert per state).\n"
        )
    routed = d.routed
    if len(routed) > 1:
        md.append("```")
        for p0, p1 in zip(routed[:-1], routed[1:], strict=True):
            va, vb = p0.routing.alpha_entropy, p1.routing.alpha_entropy
            dv = None if va is None or vb is None else vb - va
            md.append(
                f"alpha entropy {p0.name} → {p1.name}: {fmt.signed(dv, 4)}{fmt.rel_change(va, vb)}"
            )
        md.append("```\n")
    return md


def _eval_routing(d: ReportData) -> list[str]:
    """The routing figures of the latest evaluation's rollouts, with their verdict."""
    ev = d.latest_eval
    runs = [r for r in ev.runs if r.routing.get(mn.ALPHA_ENTROPY) is not None] if ev else []
    if ev is None or not runs:
        return []
    md = ["### Routing on the evaluation rollouts\n"]
    for r in runs:
        rfig = r.routing
        n_e = int(rfig.get("n_experts") or len(rfig.get(mn.USAGE) or []) or (d.n_experts or 0))
        name = r.checkpoint + (" (greedy)" if r.beside else "")
        md.append(
            f"- `{name}` (`eval/{ev.path.name}`): alpha entropy "
            f"{num(mn.routing_value(rfig, mn.ALPHA_ENTROPY), 4)}, routing MI "
            f"{num(mn.routing_value(rfig, mn.MI), 4)}, effective experts "
            f"{num(mn.routing_value(rfig, mn.EFFECTIVE_EXPERTS))}, switch rate "
            f"{fmt.pct(mn.routing_value(rfig, mn.SWITCH_RATE))}: {verdict(rfig, n_e)}"
        )
    md.append("")
    return md


def routing(d: ReportData) -> list[str]:
    """Routing figures per phase (training batches) and on the evaluation rollouts."""
    md = [
        "## 2. Routing (expert specialization)\n",
        "Figures from the training batches of each update (PROTOCOL.md, routing figures). A low "
        "alpha entropy alone is not specialization: read it with routing MI and usage shares.\n",
    ]
    if d.routed:
        md += _routing_phase_table(d)
    else:
        md.append("No routing figures in the update records.\n")
    md += _eval_routing(d)
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ evaluation
SPECIALIZATION_NOTE = (
    "Scenario information is I(argmax expert; scenario label) on the evaluation states; it counts "
    "only above the p95 of the same figure with the expert assignments permuted across states and "
    "shifted within episodes. Reliance: the share of states whose argmax expert changes when "
    "h_graph or h_state is replaced by its mean over the states. Hinted move taken: read it "
    "against the hint follower's. Routing MI and effective experts (section 2) measure usage "
    "balance, not specialization (PROTOCOL.md).\n"
)


def evaluation(d: ReportData) -> list[str]:
    """Every evaluated set of episodes with CIs; greedy runs and baselines against the sampled
    policy on the same seeds; the specialization figures next to their baselines."""
    md = ["## 3. Evaluation\n"]
    if not d.evals:
        return md + ["No evaluation files (`eval/*.json`).\n", "---\n"]
    o = d.options
    md.append(summary_table(d.groups, d.group_summaries))
    md.append("")
    md.append(
        f"Seeds core = disp = 100000 + i (E200). CIs: bootstrap, {o.n_resamples} resamples.\n"
    )
    same = same_seeds_table(d.groups, n_resamples=o.n_resamples, seed=o.seed)
    if same:
        md += ["### Greedy beside sampled, and the baselines, on the same seeds\n", same, ""]
        md.append(
            "Difference: mean score of the row minus the sampled policy's on the seeds both "
            f"played (paired bootstrap, {o.n_resamples} resamples).\n"
        )
    spec = specialization_table(d.groups)
    if spec:
        md += ["### Specialization, each figure next to its baseline\n", SPECIALIZATION_NOTE]
        md += [spec, ""]
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ expectations
_MARKS = {
    "met": "✅ met",
    "not met": "❌ not met",
    "no data": "– no data",
    "unparsed": "? target not understood",
}


def _expectations_of(cfg: dict[str, Any]) -> Any:
    exp = cfg.get("expectations")
    if exp is None and isinstance(cfg.get("report"), dict):
        exp = cfg["report"].get("expectations")
    return exp


def expectations(d: ReportData) -> list[str]:
    """Each expectation of the config against the figure it names."""
    md = ["## 4. Expectations vs actual\n"]
    exp = _expectations_of(d.config)
    if isinstance(exp, dict) and exp:
        rows = []
        for k, target in exp.items():
            actual = d.metrics.get(str(k))
            status, text = check_expectation(target, actual)
            if str(k) not in d.metrics:
                status = "unknown metric"
            rows.append([f"`{k}`", text, num(actual, 4), _MARKS.get(status, status)])
        md += [markdown_table(["metric", "target", "actual", "status"], rows), ""]
        if any(r[3] in ("unknown metric", _MARKS["unparsed"]) for r in rows):
            md.append(
                "Targets are written `'>= x'`, `'<= x'`, `'> x'`, `'< x'`, `'== x'` or "
                "`'a..b'`. " + known_metrics_text(d.metrics, [s.name for s in d.phases]) + "\n"
            )
    elif exp is not None and exp != {}:
        md.append("The config's `expectations` is not a mapping of metric → target; ignored.\n")
    else:
        md.append(
            "The config states no `expectations:` (a mapping of metric → target such as "
            '`final_phase_mean_score: ">= 15"`).\n'
        )
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ stability
_STABILITY_EVENTS = {
    "nonfinite_skip",
    "worker_restart",
    "dropped_episode",
    "interrupted",
    "resumed",
}


def _stability_rows(d: ReportData) -> list[list[str]]:
    run, stab = d.run, d.stability
    skipped = [u for u in run.updates if u.get("skipped")]
    terms = Counter(str(u.get("nonfinite_term")) for u in skipped if u.get("nonfinite_term"))
    rows = [
        ["updates logged", str(len(run.updates))],
        [
            "updates skipped (NaN/Inf)",
            f"{len(skipped)}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in terms.items())})" if terms else ""),
        ],
        ["`nonfinite_skip` events", str(stab.nonfinite_skip_events)],
        ["worker restarts", str(stab.worker_restarts)],
        ["dropped episodes (unfinished when a worker died)", str(stab.dropped_episodes)],
        ["interruptions", str(stab.interrupted)],
        ["resumes", str(stab.resumed)],
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
    other = Counter(str(e.get("kind")) for e in run.events)
    rows += [[f"`{k}` events", str(v)] for k, v in sorted(other.items())
             if k not in _STABILITY_EVENTS]  # fmt: skip
    return rows


def _optimizer_row(st: PhaseStats) -> list[str]:
    ups = st.updates
    gn = finite([u.get("grad_norm") for u in ups])
    sps = finite([u.get("sps") for u in ups])
    return [
        st.name,
        num(mean_of([u.get("approx_kl") for u in ups]), 4),
        num(mean_of([u.get("clip_frac") for u in ups]), 3),
        num(mean_of([u.get("explained_var") for u in ups]), 3),
        f"{num(np.median(gn) if gn.size else None)} / {num(gn.max() if gn.size else None)}",
        num(mean_of([u.get("loss/total") for u in ups]), 4),
        fmt.MISSING if st.lr is None else f"{float(st.lr):.3g}",
        num(float(sps.mean()) if sps.size else None, 0),
    ]


def stability(d: ReportData) -> list[str]:
    """Skipped updates, worker restarts, dropped episodes, torn lines; optimizer figures."""
    md = ["## 5. Training stability\n", markdown_table(["item", "count"], _stability_rows(d)), ""]
    if d.run.updates:
        md.append(
            markdown_table(
                ["phase", "approx KL", "clip frac", "explained var", "grad norm median / max",
                 "total loss", "lr", "SPS (trainer's)"],
                [_optimizer_row(st) for st in d.phases if st.updates],
            )
        )  # fmt: skip
        md.append("")
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ checkpoints
def checkpoints(d: ReportData) -> list[str]:
    """The checkpoint files with their logged episode and kind."""
    md = ["## 6. Checkpoints\n"]
    ck_dir, files = RunDir(d.run_dir).checkpoints, RunDir(d.run_dir).checkpoint_files()
    by_name = {Path(str(c.get("path", ""))).name: c for c in d.run.checkpoints}
    if files:
        rows = []
        for p in files:
            rec = by_name.get(p.name)
            if rec is not None:
                ep, kind = str(rec.get("episode", "–")), str(rec.get("kind", "–"))
            else:
                m = re.search(r"(\d+)(?!.*\d)", p.stem)
                ep, kind = (f"{int(m.group(1))} (from the name)" if m else "–"), "–"
            rows.append([f"`{p.name}`", fmt.file_size(p.stat().st_size), ep, kind])
        md += [f"`{ck_dir}`\n", markdown_table(["file", "size", "episode", "kind"], rows), ""]
    else:
        md.append(f"No checkpoint files in `{ck_dir}`.\n")
    missing = [n for n in by_name if not (ck_dir / n).is_file()]
    if missing:
        md.append(f"Logged but not on disk: {', '.join(f'`{n}`' for n in missing)}.\n")
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ figures
def _draw_figures(d: ReportData, figs: list[tuple[str, Path]]) -> None:
    """Draw the report's plots into ``d.plot_dir``, appending ``(title, path)`` of each to
    ``figs`` (what was drawn before a failure stays there)."""
    run, out = d.run, d.plot_dir
    tp = plots.plot_training_curves(
        run.episodes + run.updates, out / "training", window=d.options.window
    )
    if run.episodes:
        figs.append(("Score and reward per episode", tp[0]))
    if len(tp) > 1:
        figs.append(("Routing during training", tp[1]))
    if d.with_episodes:
        scores = {s.name: s.scores.tolist() for s in d.with_episodes}
        title = "Score per phase (training episodes)"
        figs.append(
            ("Score per phase", plots.plot_compare(scores, out / "phase_scores.png", title=title))
        )
    routed = d.routed
    if routed and routed[-1].routing.usage:
        st = routed[-1]
        path = plots.plot_usage_bars(
            st.routing.figures(), d.expert_names, out / "usage_last_phase.png"
        )
        figs.append((f"Expert usage ({st.name})", path))
    if d.groups:
        inputs = {g.name: g.plot_input() for g in d.groups}
        path = plots.plot_compare(inputs, out / "eval_compare.png", title="Evaluation scores")
        figs.append(("Evaluation", path))
    for r in d.latest_eval.entries if d.latest_eval else []:
        tab = r.routing.get("scenario_table")
        if isinstance(tab, dict) and tab.get("mean_alpha"):
            path = plots.plot_alpha_heatmap(tab, out / f"scenario_alpha_{_safe(r.checkpoint)}.png")
            figs.append((f"Mean α per scenario ({r.checkpoint})", path))


def figures(d: ReportData) -> list[str]:
    """The plots, embedded with paths relative to the report."""
    md = ["## 7. Figures\n"]
    figs: list[tuple[str, Path]] = []
    try:
        _draw_figures(d, figs)
    except Exception:  # noqa: BLE001 - a figure must not cost the whole report
        log.exception("plotting failed")
        md.append("Plotting failed (see the log); the tables above are complete.\n")
    for title, p in figs:
        md += [f"**{title}**\n", f"![{title}]({d.plot_rel}/{p.name})\n"]
    if not figs:
        md.append("No figures (no data).\n")
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ configuration
def _temperature_text(temp: Any) -> str:
    if temp is None:
        return fmt.MISSING
    return " → ".join(f"{float(t):g}" for t in temp) if isinstance(temp, list) else str(temp)


def _curriculum_table(d: ReportData) -> list[str]:
    rows = []
    for ph in d.run.phases:
        sp = ph.spec
        coeffs = sp.get("coefficients")
        coeffs = coeffs if isinstance(coeffs, dict) else {}
        rows.append(
            [
                ph.name,
                f"{ph.start}–{'…' if ph.end is None else ph.end}",
                str(sp.get("routing", "–")),
                _temperature_text(sp.get("temperature")),
                "–" if sp.get("lr") is None else f"{float(sp['lr']):g}",
                ", ".join(f"{k}={v}" for k, v in coeffs.items()) or "–",
            ]
        )
    return [
        markdown_table(["phase", "episodes", "routing", "temperature", "lr", "coefficients"], rows),
        "",
    ]


def configuration(d: ReportData) -> list[str]:
    """The curriculum's phases and the resolved config."""
    run = d.run
    md = ["## 8. Configuration\n"]
    if run.phases and any(p.spec for p in run.phases):
        md += _curriculum_table(d)
    if run.config_text is not None:
        md += [f"Resolved config (`{run.config_source}`):\n", "```yaml"]
        md += [run.config_text.rstrip(), "```\n"]
    elif run.config is not None:
        import yaml

        text = yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True).rstrip()
        md += [f"Resolved config from the {run.config_source}:\n", "```yaml", text, "```\n"]
    else:
        md.append(
            "No config file (`config.yaml`) in the run directory and no `run_start` record: "
            "phases were inferred from the episode records.\n"
        )
    return md


#: The report's sections, in order.
SECTIONS: tuple[Callable[[ReportData], list[str]], ...] = (
    header,
    executive_summary,
    phase_table,
    performance,
    segments,
    score_distribution,
    routing,
    evaluation,
    expectations,
    stability,
    checkpoints,
    figures,
    configuration,
)
