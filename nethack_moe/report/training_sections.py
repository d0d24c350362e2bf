"""The report's training sections: the phase table, performance, segments, the score distribution
and the routing.

Each takes the loaded :class:`~nethack_moe.report.data.ReportData` and returns its markdown lines:
the figures per curriculum phase and at each phase change, the performance over the run and in its
best window, the segments of the run (with their temperature ranges), the score distribution of
early against late episodes, and the routing figures per phase and per evaluation.
"""

from __future__ import annotations

import math

from nethack_moe.core import formatting as fmt
from nethack_moe.core.formatting import markdown_table, num
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.routing import verdict
from nethack_moe.metrics.stats import compare_tails, score_quantiles, text_histogram
from nethack_moe.report.data import PhaseStats, ReportData


def _trange(t: tuple[float, float] | None) -> str:
    """A temperature range, ``0.5`` or ``1–0.5``."""
    if t is None:
        return fmt.MISSING
    return f"{t[0]:.3g}" if t[0] == t[1] else f"{t[0]:.3g}–{t[1]:.3g}"


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
