"""The teacher's figures: the student's agreement with the teacher and the forced experts per branch.

:class:`TeacherFigures` holds the scenario information about the teacher's branch, how often the
student takes the teacher's action (:class:`Agreement`, overall and per branch) and, per branch, the
forced expert with the highest π(teacher's action) (:class:`BranchIntervention`, decided with
:data:`MIN_TEACHER_MARGIN`); :mod:`nethack_moe.metrics.verdict` writes their sentences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.paired import PairedDiff, _float
from nethack_moe.metrics.router_figures import (
    ScenarioInformation,
    ScenarioRanking,
)

# ------------------------------------------------------------------------------ teacher's branches
#: Outcome name of the per-branch rankings: π(the teacher's action) on the branch's states.
TEACHER_PROB = "teacher_action_prob"


#: Key of the overall agreement in the ``agreement`` block (the others are branch names).
ALL_STATES = "all"


#: A forced expert is *the* best in a branch when its paired CI against every other expert lies
#: above 0 (as for the scenario rankings) and every margin is at least this much π(teacher's
#: action), one percentage point: smaller gaps are ties in practice (an untrained policy's
#: experts differ by 1e-5, consistently enough for a CI to exclude 0).
MIN_TEACHER_MARGIN = 0.01


@dataclass(frozen=True)
class Agreement:
    """How often the student's action is the teacher's on a set of states."""

    n_states: int
    taken: float | None
    """Share of the states whose action taken in the run (sampled or greedy, as played) is the
    teacher's (``None``: no state)."""
    argmax: float | None = None
    """Share of the sampled states (:attr:`argmax_states`) whose argmax of π is the teacher's
    action: greedy choice on the states the run visited (``None``: not measured)."""
    argmax_states: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"n_states": self.n_states, "taken": self.taken, "argmax": self.argmax,
                "argmax_states": self.argmax_states}  # fmt: skip

    @classmethod
    def from_json(cls, d: Any) -> Agreement | None:
        if not isinstance(d, Mapping):
            return None
        return cls(int(d.get("n_states") or 0), _float(d.get("taken")), _float(d.get("argmax")),
                   int(d.get("argmax_states") or 0))  # fmt: skip


@dataclass(frozen=True)
class BranchIntervention:
    """On the states of one teacher branch: π(teacher's action) with the learned router and with
    the router forced to each expert (one-hot α), each a mean over seeds of per-seed means."""

    branch: str
    n_states: int
    router_prob: float | None
    expert_prob: dict[str, float | None]
    gain: dict[str, PairedDiff]
    """Expert -> forced minus learned router, paired over the seeds, with its CI."""
    ranking: ScenarioRanking
    """The expert with the highest π(teacher's action) and its paired margin over each other; it
    is *the* best only when every margin's CI lies above 0 (:attr:`ScenarioRanking.best`)."""

    @property
    def best(self) -> str | None:
        """The point best when its CIs against every other expert lie above 0 and every margin
        is at least :data:`MIN_TEACHER_MARGIN`; else ``None`` (undetermined)."""
        b = self.ranking.best
        if b is None or not self.wide:
            return None
        return b

    @property
    def wide(self) -> bool:
        """Every margin of the point best is at least :data:`MIN_TEACHER_MARGIN`."""
        return all(
            m.diff is not None and m.diff >= MIN_TEACHER_MARGIN
            for m in self.ranking.margins.values()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "n_states": self.n_states,
            "router_prob": self.router_prob,
            "expert_prob": dict(self.expert_prob),
            "gain": {e: g.to_json() for e, g in self.gain.items()},
            "point_best": self.ranking.point_best,
            "margins": {e: m.to_json() for e, m in self.ranking.margins.items()},
            "best": self.best,
        }

    @classmethod
    def from_json(cls, branch: str, d: Any) -> BranchIntervention | None:
        """A stored entry; ``best`` is recomputed from the margins."""
        if not isinstance(d, Mapping):
            return None
        rk = ScenarioRanking.from_json(
            branch, {"outcome": TEACHER_PROB, "higher_is_better": True,
                     "point_best": d.get("point_best"), "margins": d.get("margins")},
        )  # fmt: skip
        assert rk is not None
        gain = {
            str(e): g for e, v in (d.get("gain") or {}).items()
            if (g := PairedDiff.from_json(v)) is not None
        }  # fmt: skip
        probs = {str(e): _float(v) for e, v in (d.get("expert_prob") or {}).items()}
        return cls(branch, int(d.get("n_states") or 0), _float(d.get("router_prob")), probs, gain,
                   rk)  # fmt: skip


@dataclass(frozen=True)
class TeacherFigures:
    """The figures against the scripted teacher's branches (issue 18; PROTOCOL.md, "branch
    information"), on the states of one run played with ``env.teacher``: the ``teacher`` block."""

    n_states: int
    """States with the teacher's advice."""
    actions: str
    """``sampled`` or ``greedy``: how the run chose the actions that :class:`Agreement` reads."""
    branch_counts: dict[str, int]
    agreement: dict[str, Agreement]
    """:data:`ALL_STATES` and each branch with states."""
    information: ScenarioInformation | None = None
    """I(argmax expert; branch) with its nulls (``None``: no routing, or not measured)."""
    interventions: dict[str, BranchIntervention] | None = None
    """Branch -> the forced experts on its states (``None``: not measured)."""
    intervention_states: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {mn.BRANCH_MI: None, mn.BRANCH_MI_SHUFFLED_P95: None}
        if self.information is not None:
            out.update(self.information.to_json("branch"))
        out.update({
            "n_states": self.n_states,
            "actions": self.actions,
            "branch_counts": dict(self.branch_counts),
            mn.AGREEMENT: {k: a.to_json() for k, a in self.agreement.items()},
            mn.BRANCH_INTERVENTIONS: (
                None if self.interventions is None
                else {b: v.to_json() for b, v in self.interventions.items()}
            ),
            "intervention_states": self.intervention_states,
        })  # fmt: skip
        return out

    @classmethod
    def from_json(cls, d: Any) -> TeacherFigures | None:
        if not isinstance(d, Mapping):
            return None
        agree = {
            str(k): a for k, v in (d.get(mn.AGREEMENT) or {}).items()
            if (a := Agreement.from_json(v)) is not None
        }  # fmt: skip
        raw = d.get(mn.BRANCH_INTERVENTIONS)
        iv = None
        if isinstance(raw, Mapping):
            iv = {
                str(b): x for b, v in raw.items()
                if (x := BranchIntervention.from_json(str(b), v)) is not None
            }  # fmt: skip
        return cls(
            n_states=int(d.get("n_states") or 0),
            actions=str(d.get("actions") or "sampled"),
            branch_counts={str(k): int(v) for k, v in (d.get("branch_counts") or {}).items()},
            agreement=agree,
            information=ScenarioInformation.from_json(d, "branch"),
            interventions=iv,
            intervention_states=int(d.get("intervention_states") or 0),
        )
