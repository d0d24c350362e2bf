"""The specialization report of one evaluation: the state figures, the players and the verdict,
with the figures against the teacher's branches when the run had the teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.router_figures import (
    HintReliance,
    InterventionReading,
    RelianceFigure,
    ScenarioInformation,
)
from nethack_moe.metrics.teacher_figures import TeacherFigures
from nethack_moe.metrics.verdict import VerdictFigures, specialization_verdict

if TYPE_CHECKING:
    from nethack_moe.metrics.statelog import StateLog
    from nethack_moe.models.policy import ActorCritic
from nethack_moe.metrics.branches import teacher_figures
from nethack_moe.metrics.information import DEFAULT_PERMUTATIONS, scenario_information
from nethack_moe.metrics.reliance import (
    DEFAULT_RELIANCE_STATES,
    RelianceResult,
    hint_follow_share,
    reliance_on_states,
)
from nethack_moe.metrics.routing import routing_figures
from nethack_moe.metrics.specialization import PlayerResult


# ------------------------------------------------------------------------------ the report
@dataclass
class SpecializationReport:
    """Every specialization figure of one policy; the verdict is built from them
    (:func:`nethack_moe.metrics.verdict.specialization_verdict`)."""

    scenario: ScenarioInformation | None
    reliance: dict[str, RelianceFigure | None]
    """Empty: not measured (e.g. a greedy run without its observations)."""
    hint: HintReliance | None
    usage_balance: float | None
    """Routing MI H(ᾱ) − mean H(α_s), nats: usage balance, not evidence of specialization."""
    per_state_sharpness: float | None
    """Mean alpha entropy H(α_s), nats: per-state sharpness, not evidence of specialization."""
    effective_experts: float | None
    n_experts: int
    interventions: dict[str, PlayerResult] = field(default_factory=dict)
    reading: InterventionReading | None = None
    teacher: TeacherFigures | None = None
    """Against the scripted teacher's branches (``None``: the run had no teacher)."""

    def verdict(self) -> str:
        """The verdict of these figures, read back the way a file's are."""
        return specialization_verdict(VerdictFigures.from_json(self.to_json()))

    def to_json(self) -> dict[str, Any]:
        """The blocks of ``analysis.json`` (and of an evaluation summary): ``n_experts``,
        ``specialization``, ``reliance`` with ``reliance_measured``, ``interventions``,
        ``interventions_reading``, ``hint``, ``routing_balance`` and ``teacher`` (``None``: the run
        had no teacher). Figures only: no verdict."""
        return {
            mn.N_EXPERTS: self.n_experts,
            mn.SPECIALIZATION: self.scenario.to_json() if self.scenario else None,
            mn.RELIANCE: {k: (v.to_json() if v else None) for k, v in self.reliance.items()},
            mn.RELIANCE_MEASURED: bool(self.reliance),
            "interventions": {k: v.to_json() for k, v in self.interventions.items()},
            "interventions_reading": self.reading.to_json() if self.reading else None,
            mn.HINT: self.hint.to_json() if self.hint else None,
            "routing_balance": {
                "usage_balance_routing_mi": self.usage_balance,
                "per_state_sharpness_alpha_entropy": self.per_state_sharpness,
                "effective_experts": self.effective_experts,
            },
            mn.TEACHER: self.teacher.to_json() if self.teacher else None,
        }


# ------------------------------------------------------------------------------ from logged states
def state_report(
    model: ActorCritic | None,
    st: StateLog,
    labels: np.ndarray,
    routing: str | None = None,
    temperature: float | None = None,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    reliance_states: int = DEFAULT_RELIANCE_STATES,
    seed: int = 0,
    actions: str = "sampled",
) -> tuple[SpecializationReport, dict[str, Tensor]]:
    """The figures that need only the logged states: scenario information, reliance on the
    states (when the rollout kept the observations and ``model`` is given), hint follow share,
    usage balance and sharpness, and the figures against the teacher's branches when the run had
    the teacher (:func:`nethack_moe.metrics.branches.teacher_figures`; ``actions``: how the run
    chose its actions). Returns the report and the means of ``h_state`` / ``h_graph`` (for
    playing with the same replacements)."""

    E = int(st.alpha.shape[1])
    scen = None
    if E > 1 and st.n:
        scen = scenario_information(
            st.alpha.argmax(1), labels, E, permutations=permutations, seed=seed,
            episode_ids=st.episode,
        )  # fmt: skip
    rel = RelianceResult({})
    if model is not None and E and st.state is not None:
        rel = reliance_on_states(model, st.obs(), routing, temperature, max_states=reliance_states,
                                 seed=seed)  # fmt: skip
    fig = routing_figures(st.alpha) if E else {}
    hint = HintReliance(hint_follow_share(st), int((st.hint >= 0).sum()))
    report = SpecializationReport(
        scenario=scen,
        reliance=rel.figures,
        hint=hint,
        usage_balance=fig.get(mn.MI),
        per_state_sharpness=fig.get(mn.ALPHA_ENTROPY),
        effective_experts=fig.get(mn.EFFECTIVE_EXPERTS),
        n_experts=E,
        teacher=teacher_figures(
            model, st, routing, temperature, actions, permutations=permutations, seed=seed
        ),  # fmt: skip
    )
    return report, rel.means
