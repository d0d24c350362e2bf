"""The names of the run's figures: one schema for the trainer's ``update`` records, the evaluation
JSON (and ``analysis.json``) and every reader of them (report, ``compare``, ``evaluate`` /
``analyze`` output, plots).

**Routing figures** (PROTOCOL.md, "Routing figures") have one name each, below. The same name is
used

* in an ``update`` record of ``metrics.jsonl`` under ``routing/<name>`` (:func:`record_key`),
  written by :func:`nethack_moe.metrics.routing.routing_figures_torch` from the trainer's
  ``log_update``;
* in an evaluation entry under ``summary.routing.<name>`` and in ``analysis.json`` under
  ``figures.<name>``, written by :func:`nethack_moe.metrics.routing.routing_figures`.

Files written before this schema called the routing MI ``routing_mi`` in the evaluation JSON and
``analysis.json`` (and ``routing/routing_mi`` in the first trainer's update records).
:data:`LEGACY_NAMES` maps such old names to the current ones; :func:`routing_value` reads a figure
under either, from a record or a figures dict. This is the only alias table.

The report's **expectation metrics** (``expectations:`` in a config, ``<phase>_<figure>``) name
the routing figures by :data:`EXPECTATION_NAMES` (``finetune_routing_mi``), as the presets do.

**Evaluation entries** (one per key of ``checkpoints`` in the evaluation JSON) and the blocks of
their ``summary`` use the keys below; the specialization blocks are keyed as in ``analysis.json``
(:mod:`nethack_moe.metrics.specialization`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# ------------------------------------------------------------------------------ routing figures
#: Prefix of the routing figures in an ``update`` record.
ROUTING_PREFIX = "routing/"

ALPHA_ENTROPY = "alpha_entropy"
"""Mean per-state alpha entropy H(α_s), nats (per-state sharpness)."""
ALPHA_ENTROPY_STD = "alpha_entropy_std"
"""Std of H(α_s) over the states of one batch (ddof 0)."""
USAGE_ENTROPY = "usage_entropy"
"""H(ᾱ), nats."""
MI = "mi"
"""Routing MI H(ᾱ) − mean H(α_s), nats (usage balance)."""
EFFECTIVE_EXPERTS = "effective_experts"
"""exp H(ᾱ)."""
SPARSITY = "sparsity"
"""Mean share of exact zeros in α_s."""
USAGE = "usage"
"""ᾱ, one value per expert."""
ARGMAX_SHARE = "argmax_share"
"""Share of the states whose argmax is each expert."""
SWITCH_RATE = "switch_rate"
"""Share of consecutive steps of an episode whose argmax expert differs (evaluation only)."""

#: The scalar routing figures of an ``update`` record, in the order the trainer computes them.
ROUTING_SCALARS: tuple[str, ...] = (
    ALPHA_ENTROPY,
    ALPHA_ENTROPY_STD,
    USAGE_ENTROPY,
    MI,
    EFFECTIVE_EXPERTS,
    SPARSITY,
)

#: Old name -> current name (files written before this schema; see the module docstring).
LEGACY_NAMES: dict[str, str] = {"routing_mi": MI}

#: Routing figure -> its name in the report's expectation metrics ``<phase>_<name>``.
EXPECTATION_NAMES: dict[str, str] = {
    ALPHA_ENTROPY: "alpha_entropy",
    USAGE_ENTROPY: "usage_entropy",
    MI: "routing_mi",
    EFFECTIVE_EXPERTS: "effective_experts",
    SPARSITY: "sparsity",
}


def record_key(name: str) -> str:
    """The key of routing figure ``name`` in an ``update`` record (``routing/mi``)."""
    return ROUTING_PREFIX + name


def _names_of(name: str) -> tuple[str, ...]:
    """``name`` and the legacy names that mean it."""
    return (name, *(old for old, new in LEGACY_NAMES.items() if new == name))


def routing_value(rec: Mapping[str, Any], name: str) -> Any:
    """Routing figure ``name`` of an ``update`` record (``routing/<name>``) or of a figures dict
    (``<name>``), under its name or a legacy one (:data:`LEGACY_NAMES`); ``None`` when absent."""
    for n in _names_of(name):
        for key in (n, record_key(n)):
            v = rec.get(key)
            if v is not None:
                return v
    return None


# ------------------------------------------------------------------------------ evaluation JSON
#: Top-level key of the played sets of an evaluation file (checkpoints and baselines).
CHECKPOINTS = "checkpoints"
#: Entry keys.
PLAYER = "player"
"""``"policy"`` for a checkpoint, else the baseline's name (``"random"``, ``"hint-follower"``)."""
POLICY = "policy"
GREEDY = "greedy"
GREEDY_RESULT = "greedy_result"
"""The checkpoint's greedy run beside its sampled one (``evaluate --actions both``)."""
SUMMARY = "summary"
EPISODES = "episodes"
#: Blocks of an entry's ``summary`` (and of ``analysis.json``).
ROUTING = "routing"
SPECIALIZATION = "specialization"
RELIANCE = "reliance"
HINT = "hint"
VERDICT = "verdict"
"""Files written before issue 21 stored a verdict sentence here; it is never read back (the
verdict is built from the figures: :mod:`nethack_moe.metrics.verdict`)."""
RELIANCE_MEASURED = "reliance_measured"
"""Whether the ``reliance`` block was measured (false: nothing is said about what the router
routes on)."""
N_EXPERTS = "n_experts"
#: Figures of the ``specialization`` block.
SCENARIO_MI = "scenario_mi"
SCENARIO_MI_NORMALIZED = "scenario_mi_normalized"
SCENARIO_MI_SHUFFLED_P95 = "scenario_mi_shuffled_p95"
SCENARIO_MI_SHIFTED_P95 = "scenario_mi_shifted_p95"
SCENARIO_MI_P_VALUE = "scenario_mi_p_value"
SCENARIO_MI_SHIFTED_P_VALUE = "scenario_mi_shifted_p_value"
#: The stricter of the two nulls (the one the decision is made against), its p95 and p-value.
SCENARIO_MI_NULL = "scenario_mi_null"
SCENARIO_MI_NULL_P95 = "scenario_mi_null_p95"
SCENARIO_MI_NULL_P_VALUE = "scenario_mi_null_p_value"
#: Entries of the ``reliance`` block (the input replaced by its mean over the states) and the
#: figure read from each.
GRAPH_MEAN = "graph_mean"
STATE_MEAN = "state_mean"
ARGMAX_CHANGE = "argmax_change"
#: Paired bootstrap CI of an entry's ``score_change`` over the probe seeds.
SCORE_CHANGE_CI = "score_change_ci"
#: Block of where the steps take the hero (:mod:`nethack_moe.metrics.motion`): shares of the
#: steps that are ``still``, ``back`` (A-B-A), ``revisit`` and ``new``, and ``steps``.
MOTION = "motion"
#: Figure of the ``hint`` block.
FOLLOW_SHARE = "follow_share"
#: Block of the scripted teacher's figures (issue 18: specialization against the teacher's
#: branches), in an evaluation summary and in ``analysis.json``; its information figures are
#: those of the ``specialization`` block with ``branch`` for ``scenario``
#: (:meth:`nethack_moe.metrics.router_figures.ScenarioInformation.to_json`).
TEACHER = "teacher"
BRANCH_MI = "branch_mi"
"""I(argmax expert; teacher branch), nats."""
BRANCH_MI_NORMALIZED = "branch_mi_normalized"
"""``branch_mi`` as a share of H(branch)."""
BRANCH_MI_SHUFFLED_P95 = "branch_mi_shuffled_p95"
BRANCH_MI_P_VALUE = "branch_mi_p_value"
BRANCH_MI_SHIFTED_P95 = "branch_mi_shifted_p95"
BRANCH_MI_SHIFTED_P_VALUE = "branch_mi_shifted_p_value"
BRANCH_MI_NULL_P95 = "branch_mi_null_p95"
#: Per-branch blocks of the ``teacher`` block.
AGREEMENT = "agreement"
"""Share of states whose action is the teacher's, ``all`` and per branch."""
BRANCH_INTERVENTIONS = "interventions"
"""Per branch: π(teacher's action) with each expert forced, against the learned router."""
