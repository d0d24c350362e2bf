"""The specialization verdict, built from stored numbers whenever it is read.

Evaluation entries and ``analysis.json`` store figures, never sentences. Every reader (``evaluate``
and ``analyze`` as they print, ``analysis.md``, the report, ``compare``) reads the figures back into
a :class:`VerdictFigures` (:meth:`VerdictFigures.from_json`) and calls
:func:`specialization_verdict`, the one function that writes the text. A file written before this
module that still carries a ``verdict`` sentence is read the same way: the sentence is ignored.
This module holds :class:`VerdictFigures`, which gathers the figure records, and the sentences;
the records and the thresholds are in :mod:`nethack_moe.metrics.router_figures` (the router's),
:mod:`nethack_moe.metrics.teacher_figures` (the teacher's) and :mod:`nethack_moe.metrics.paired`
(:class:`PairedDiff`).

The decisions, each from its numbers:

* **scenario information** counts only above the p95 of the stricter of its two nulls
  (:func:`stricter_null`: permutations across states, and circular shifts within episodes when the
  state log had episode ids); the sentence names that null and prints *its* p-value;
* **reliance**: the router *uses* an input when replacing it by its mean changes the argmax expert
  in at least :data:`MIN_RELIANCE` of the states, and *ignores* it otherwise; with no reliance
  figures (``reliance_measured`` false, e.g. a greedy run beside a sampled one) nothing is said
  about what the router routes on ("not measured");
* **a score change** (an input replaced while playing, the hint zeroed, a forced expert against
  another) is a paired difference over the same seeds with its bootstrap CI
  (:class:`PairedDiff`); it is a finding only when the CI excludes 0;
* **interventions**: in each scenario the forced expert with the best outcome is *the* best only
  when its paired CI against every other expert excludes 0 (:class:`ScenarioRanking`); an expert
  is specialised when it is the best in its own scenario and in no other. Its own scenario is the
  one the learned router gives it the most weight in (the heatmap's column maximum) unless the
  routing prior was on, which binds names to scenarios (PROTOCOL.md, "Specialization figures").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nethack_moe.core.formatting import MISSING, num, pct
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.paired import _float
from nethack_moe.metrics.router_figures import (
    MIN_RELIANCE,
    MIN_SCENARIO_SHARE,
    NOT_SPECIALISED,
    OWN_FROM_ROUTER,
    PERMUTATION_NULL,
    SHIFT_NULL,
    SPECIALISED,
    UNDETERMINED,
    HintReliance,
    InterventionReading,
    RelianceFigure,
    ScenarioInformation,
)
from nethack_moe.metrics.teacher_figures import (
    ALL_STATES,
    MIN_TEACHER_MARGIN,
    BranchIntervention,
    TeacherFigures,
)


# ------------------------------------------------------------------------------ the figures
@dataclass(frozen=True)
class VerdictFigures:
    """Everything :func:`specialization_verdict` reads, from one evaluation summary or
    ``analysis.json``."""

    n_experts: int
    scenario: ScenarioInformation | None = None
    reliance: dict[str, RelianceFigure | None] | None = None
    """``None``: not measured. Otherwise every replacement measured, ``None`` for an input the
    model lacks (no ``h_graph`` in an MLP-MoE)."""
    hint: HintReliance | None = None
    reading: InterventionReading | None = None
    usage_balance: float | None = None
    per_state_sharpness: float | None = None
    effective_experts: float | None = None
    teacher: TeacherFigures | None = None
    """``None``: the run had no teacher (not measured)."""

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> VerdictFigures:
        """The figures of an evaluation entry's ``summary`` or of an ``analysis.json`` object.

        ``reliance_measured`` says whether reliance was measured; without it (older files) an
        empty ``reliance`` block means "not measured". A stored ``verdict`` sentence is ignored.
        """
        rel_block = block.get(mn.RELIANCE)
        measured = block.get(mn.RELIANCE_MEASURED)
        if measured is None:
            measured = isinstance(rel_block, Mapping) and bool(rel_block)
        reliance = None
        if measured and isinstance(rel_block, Mapping):
            reliance = {str(k): RelianceFigure.from_json(str(k), v) for k, v in rel_block.items()}
        figs = block.get("figures") if isinstance(block.get("figures"), Mapping) else None
        routing = block.get(mn.ROUTING) if isinstance(block.get(mn.ROUTING), Mapping) else None
        rfig: Mapping[str, Any] = figs or routing or {}
        raw_bal = block.get("routing_balance")
        bal: Mapping[str, Any] = raw_bal if isinstance(raw_bal, Mapping) else {}
        n = block.get(mn.N_EXPERTS)
        if n is None:
            names = rfig.get("expert_names") or rfig.get(mn.USAGE) or []
            n = len(names)
        return cls(
            n_experts=int(n),
            scenario=ScenarioInformation.from_json(block.get(mn.SPECIALIZATION)),
            reliance=reliance,
            hint=HintReliance.from_json(block.get(mn.HINT)),
            reading=InterventionReading.from_json(block.get("interventions_reading")),
            usage_balance=_float(
                bal.get("usage_balance_routing_mi", mn.routing_value(rfig, mn.MI))
            ),
            per_state_sharpness=_float(
                bal.get("per_state_sharpness_alpha_entropy", rfig.get(mn.ALPHA_ENTROPY))
            ),
            effective_experts=_float(bal.get("effective_experts", rfig.get(mn.EFFECTIVE_EXPERTS))),
            teacher=TeacherFigures.from_json(block.get(mn.TEACHER)),
        )


# ------------------------------------------------------------------------------ the text
def scenario_sentence(s: ScenarioInformation) -> str:
    """The scenario information against the stricter null, with that null's p-value."""
    share = s.normalized
    null = s.null
    other = (
        f"; within-episode-shift p95 {s.shifted_p95:.4f}"
        if null.name == PERMUTATION_NULL and s.shifted_p95 is not None
        else (f"; permutation p95 {s.shuffled_p95:.4f}" if null.name == SHIFT_NULL else "")
    )
    head = (
        f"scenario information {s.mi:.4f} nats ({pct(share)} of H(scenario)) against its "
        f"{null.name} null (p95 {null.p95:.4f}, p = {num(null.p_value, 3)}{other})"
    )
    level = information_level(s)
    if level == "chance":
        return head + ": the expert choice carries no more scenario information than chance"
    if level == "small":
        return head + (
            f": above chance but below {100 * MIN_SCENARIO_SHARE:.0f} % of H(scenario), "
            "the experts are not split by scenario"
        )
    return head + ": the expert choice depends on the scenario"


def information_level(info: ScenarioInformation) -> str:
    """How an information figure reads against its stricter null: ``chance`` (not above its
    p95), ``small`` (above, but below :data:`MIN_SCENARIO_SHARE` of the label's entropy) or
    ``depends``. One decision for the scenario and the teacher-branch figures."""
    if not info.above_baseline:
        return "chance"
    if info.normalized is None or info.normalized < MIN_SCENARIO_SHARE:
        return "small"
    return "depends"


def reliance_verb(f: RelianceFigure) -> str:
    """``uses`` when the argmax expert changes in at least :data:`MIN_RELIANCE` of the states
    without the input, else ``ignores``."""
    return "uses" if f.argmax_change >= MIN_RELIANCE else "ignores"


def _score_text(f: RelianceFigure) -> str:
    sd = f.score_diff
    if sd is not None and sd.diff is not None:
        tail = "" if sd.sign else ", CI includes 0: undetermined"
        return f", score {sd.text()} over {sd.n} seeds{tail}"
    if f.score_change is not None:
        return f", score {f.score_change:+.1f} (no per-seed figures: no CI, not a finding)"
    return ""


def reliance_sentence(rel: Mapping[str, RelianceFigure | None]) -> tuple[str, list[str]]:
    """What replacing ``h_state`` and ``h_graph`` by their means does, and the inputs used."""
    used, parts = [], []
    for name, label in ((mn.STATE_MEAN, "h_state"), (mn.GRAPH_MEAN, "h_graph")):
        f = rel.get(name)
        if f is None:
            parts.append(f"there is no {label}")
            continue
        verb = reliance_verb(f)
        if verb == "uses":
            used.append(label)
        parts.append(
            f"it {verb} {label} (replaced by its mean: argmax expert changes in "
            f"{pct(f.argmax_change)} of states, α moves by {f.alpha_change:.3f}, policy KL "
            f"{f.policy_kl:.3f}{_score_text(f)})"
        )
    return "; ".join(parts), used


def interventions_sentence(r: InterventionReading) -> str:
    """Forced experts: the best per scenario (or undetermined), each expert's own scenario and
    status."""
    if not r.rankings:
        return (
            "Forced to one expert: no per-seed figures, so which expert is best in each "
            "scenario is undetermined."
        )
    src = (
        "where the learned router gives it the most weight (the routing prior is off: names are "
        "labels)"
        if r.own_source == OWN_FROM_ROUTER
        else "its name's (the routing prior binds names to scenarios)"
    )
    own = ", ".join(f"{e} → {s or MISSING}" for e, s in r.own_scenario.items())
    best = []
    for s, rk in r.rankings.items():
        if rk.determined:
            best.append(f"{s}: {rk.best}")
        elif rk.point_best is None:
            best.append(f"{s}: {MISSING}")
        else:
            best.append(f"{s}: undetermined (point best {rk.point_best}, CIs overlap)")
    status = {st: r.experts_with(st) for st in (SPECIALISED, NOT_SPECIALISED, UNDETERMINED)}
    verdicts = "; ".join(f"{st}: {', '.join(es)}" for st, es in status.items() if es)
    return (
        f"Forced to one expert (paired CIs over the probe seeds), the best per scenario is "
        f"{'; '.join(best)}. Each expert's own scenario is {src}: {own}. {verdicts[:1].upper()}"
        f"{verdicts[1:]}."
    )


def hint_sentence(h: HintReliance) -> str | None:
    if h.follow_share is None:
        return None
    txt = f"The policy takes the hinted move in {pct(h.follow_share)} of the steps with a hint"
    zd, fd = h.zeroed_diff, h.follower_diff
    if h.zeroed_mean_score is not None and h.policy_mean_score is not None:
        txt += (
            f"; with the hint inputs zeroed it scores {h.zeroed_mean_score:.1f} against "
            f"{h.policy_mean_score:.1f}"
        )
        txt += f" (paired difference {zd.text()} over {zd.n} seeds)" if zd else " (no CI)"
    if h.follower_mean_score is not None:
        txt += f"; the hint follower scores {h.follower_mean_score:.1f} on the same seeds"
        txt += f" (paired difference {fd.text()})" if fd else ""
    return txt + "."


def branch_information_sentence(info: ScenarioInformation | None) -> str:
    """I(argmax expert; teacher branch) against the stricter of its nulls."""
    if info is None:
        return "The expert choice's information about the teacher's branch: not measured."
    null = info.null
    share = info.normalized
    head = (
        f"The expert choice carries {info.mi:.4f} nats of information about the teacher's branch "
        f"({pct(share)} of H(branch)), {'above' if info.above_baseline else 'not above'} its "
        f"stricter null's p95 {null.p95:.4f} ({null.name}, p = {num(null.p_value, 3)})"
    )
    level = information_level(info)
    if level == "chance":
        return head + ": the experts do not split by the teacher's branch."
    if level == "small":
        return head + (
            f": above chance but below {100 * MIN_SCENARIO_SHARE:.0f} % of H(branch), the experts "
            "do not split by the teacher's branch."
        )
    return head + ": the expert choice depends on the teacher's branch."


def branch_interventions_sentence(iv: Mapping[str, BranchIntervention] | None) -> str:
    """Per branch, the forced expert that most raises π(teacher's action), when determined."""
    if iv is None:
        return "Per branch, forcing one expert on the teacher's action: not measured."
    if not iv:
        return "Per branch, forcing one expert on the teacher's action: no states."
    parts = []
    for b, x in iv.items():
        pb = x.ranking.point_best
        g = x.gain.get(pb) if pb is not None else None
        gain = f", {g.text(3)} over the router" if g is not None else ""
        if x.best is not None:
            parts.append(f"{b}: {x.best}{gain}")
        elif pb is not None:
            why = "CIs overlap" if x.ranking.best is None else (
                f"ahead by less than {100 * MIN_TEACHER_MARGIN:.0f} pp")  # fmt: skip
            parts.append(f"{b}: undetermined (point best {pb}{gain}; {why})")
        else:
            parts.append(f"{b}: {MISSING}")
    bests = {x.best for x in iv.values() if x.best is not None}
    n_det = sum(x.best is not None for x in iv.values())
    if len(bests) > 1:
        where = {e: [b for b, x in iv.items() if x.best == e] for e in bests}
        order = sorted(where, key=lambda e: (-len(where[e]), e))
        tail = (
            "different experts are the best in different branches ("
            + "; ".join(f"{e} in {', '.join(where[e])}" for e in order)
            + ")"
        )
    elif len(bests) == 1 and n_det > 1:
        tail = (
            f"one expert ({next(iter(bests))}) is the best in every branch where a best is "
            "determined: a stronger imitator of the teacher, not a branch specialist"
        )
    elif n_det == 1:
        tail = "a best is determined in one branch only"
    else:
        tail = "no expert is determined the best in any branch"
    return (
        "Forced to one expert on the same states, the expert that most raises the probability of "
        f"the teacher's action (paired CIs over seeds) is {'; '.join(parts)}: {tail}."
    )


def agreement_sentence(t: TeacherFigures) -> str:
    """How often the student takes the teacher's action, overall and per branch."""
    a = t.agreement.get(ALL_STATES)
    if a is None or a.taken is None:
        return "Agreement with the teacher: not measured."
    txt = f"The student takes the teacher's action in {pct(a.taken)} of its states ({t.actions})"
    if a.argmax is not None:
        txt += f", π's argmax on the same states in {pct(a.argmax)}"
    per = [f"{b} {pct(x.taken)}" for b, x in t.agreement.items() if b != ALL_STATES]
    return txt + (f"; per branch: {', '.join(per)}" if per else "") + "."


def teacher_sentences(t: TeacherFigures | None, with_routing: bool = True) -> str:
    """The verdict's lines about the teacher's branches (``not measured`` without a teacher)."""
    if t is None:
        return "Against the scripted teacher's branches: not measured (the run had no teacher)."
    out = []
    if with_routing:
        out += [branch_information_sentence(t.information),
                branch_interventions_sentence(t.interventions)]  # fmt: skip
    out.append(agreement_sentence(t))
    return " ".join(out)


def specialization_verdict(f: VerdictFigures) -> str:
    """A plain paragraph built from the figures: what the router routes on, whether its experts
    split by scenario and are specialised, how much of the policy is the hint; routing MI and
    alpha entropy named for what they are."""
    if f.reliance is not None:
        rel_text, used = reliance_sentence(f.reliance)
    else:
        rel_text, used = "", []
    if f.n_experts <= 1:
        return (
            "A single expert: there is no routing to read."
            + (f" Policy reliance: {rel_text}." if rel_text else "")
            + (f" {teacher_sentences(f.teacher, with_routing=False)}" if f.teacher else "")
        )
    if f.reliance is None:
        out = ["What the router routes on was not measured on these states (no reliance figures)."]
    else:
        on = (
            " and ".join(used)
            if used
            else "neither h_state nor h_graph (it gives about the same α)"
        )
        out = [f"The router routes on {on}: {rel_text}."]
    h_max = math.log(f.n_experts)
    if f.per_state_sharpness is not None and f.per_state_sharpness > 0.95 * h_max:
        out.append(
            f"α is nearly uniform in every state (alpha entropy {f.per_state_sharpness:.3f} of "
            f"ln {f.n_experts} = {h_max:.3f}): the argmax expert is decided by near-ties, so the "
            "argmax-based figures below say little."
        )
    if f.scenario is not None:
        s = scenario_sentence(f.scenario)
        out.append(s[:1].upper() + s[1:] + ".")
    if f.reading is not None:
        out.append(interventions_sentence(f.reading))
    if f.hint is not None:
        hs = hint_sentence(f.hint)
        if hs:
            out.append(hs)
    out.append(teacher_sentences(f.teacher))
    out.append(
        f"Usage balance (routing MI {num(f.usage_balance, 3)} nats, {num(f.effective_experts, 2)} "
        f"effective experts) and per-state sharpness (alpha entropy {num(f.per_state_sharpness, 3)}) "
        "come from the load-balance and alpha-entropy terms for any router: they are not evidence "
        "of specialization."
    )
    return " ".join(out)


def verdict_of(block: Mapping[str, Any]) -> str:
    """:func:`specialization_verdict` of an evaluation summary or ``analysis.json`` object."""
    return specialization_verdict(VerdictFigures.from_json(block))
