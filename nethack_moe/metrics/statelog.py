"""The states an evaluation logged, one row per visited state (the input of every figure)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from nethack_moe.models.acting import Obs

log = logging.getLogger(__name__)
#: StateLog fields that are running sums over the states, not per-state columns.
_SUM_FIELDS = ("expert_probs_sum", "policy_probs_sum")

# ------------------------------------------------------------------------------------------ results
#: Integer columns logged per state (:class:`StateLog`), in this order.
_INT_COLUMNS = ("x", "y", "depth", "action", "step", "hp", "exp", "visited", "hint")
#: The teacher's columns (:class:`StateLog`; ``-1`` where the env ran without ``env.teacher``).
_TEACHER_COLUMNS = ("teacher_action", "teacher_branch")


@dataclass
class StateLog:
    """Per-step data of the played episodes, rows grouped by episode (seed order), time order
    within an episode; row ``t`` is the state before the action of step ``t``.

    ``alpha`` is ``[S, E]`` (``E = 0`` for rule players). ``hp`` / ``exp``: hit points and experience
    points (blstats); ``visited``: cells of the current level the hero has stood on (the feature
    memory); ``hint``: the action the navigation hint advises (``-1``: none). ``state`` / ``crop``:
    the policy inputs, kept only with ``keep_obs`` (reliance figures). ``expert_probs_sum[e, a]``:
    sum over the rows of expert e's softmax. ``teacher_action`` / ``teacher_branch``: the scripted
    teacher's advice for the state and why (an index into :data:`nethack_moe.envs.teacher.BRANCHES`),
    ``-1`` where the env ran without ``env.teacher`` (``None``: not logged at all).
    """

    alpha: np.ndarray
    atoms: np.ndarray
    x: np.ndarray
    y: np.ndarray
    depth: np.ndarray
    action: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    hp: np.ndarray
    exp: np.ndarray
    visited: np.ndarray
    hint: np.ndarray
    expert_probs_sum: np.ndarray
    policy_probs_sum: np.ndarray
    state: np.ndarray | None = None
    crop: np.ndarray | None = None
    teacher_action: np.ndarray | None = None
    teacher_branch: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.alpha.shape[0])

    def expert_action_distribution(self) -> np.ndarray:
        """``[E, A]``: each expert's softmax over actions, averaged over the states."""
        return self.expert_probs_sum / max(self.n, 1)

    def policy_action_distribution(self) -> np.ndarray:
        """``[A]``: the mixed policy's softmax, averaged over the states."""
        return self.policy_probs_sum / max(self.n, 1)

    def obs(self) -> Obs:
        """The logged policy inputs as an :class:`Obs` (needs ``keep_obs``)."""
        if self.state is None or self.crop is None:
            raise ValueError("the rollout did not keep the observations (keep_obs=False)")
        return Obs(
            torch.from_numpy(self.state), torch.from_numpy(self.crop), torch.from_numpy(self.atoms)
        )

    def select(self, rows: np.ndarray) -> StateLog:
        """The rows ``rows`` (bool mask or indices); the action-distribution sums are kept whole."""
        kw = {
            f.name: (v[rows] if isinstance(v, np.ndarray) and f.name not in _SUM_FIELDS else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }
        return StateLog(**kw)
