"""Rollout storage: the preallocated ``[T, N, ...]`` arrays of one rollout, GAE, typed minibatches.

Like Stable-Baselines3's ``RolloutBuffer``: the trainer writes each step's observation, acting
result, reward and done flag into rows ``t`` (for a group of envs ``lo..hi-1``), then
:meth:`RolloutStorage.compute_returns` runs GAE per env in time order, and
:meth:`RolloutStorage.minibatches` yields shuffled :class:`Minibatch` es of the flattened rollout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from nethack_moe.envs.teacher import BRANCHES
from nethack_moe.features import FeatureSpec
from nethack_moe.models.acting import ActResult, Obs
from nethack_moe.ppo.gae import compute_gae


@dataclass
class Minibatch:
    """Rows of the flattened rollout for one gradient step (``[M, ...]``)."""

    obs: Obs
    actions: Tensor
    old_logp: Tensor
    old_values: Tensor
    advantages: Tensor
    returns: Tensor
    teacher_actions: Tensor
    """The teacher's action per row (-1: no advice); never a policy input."""
    greedy: Tensor | None = None
    """Rows acted greedily (``ppo.greedy_envs``): only the teacher and routing terms learn
    from them; ``None`` = none."""


class RolloutStorage:
    """One rollout of ``T`` steps of ``N`` envs on ``device``."""

    def __init__(
        self, T: int, N: int, spec: FeatureSpec, n_experts: int, device: torch.device
    ) -> None:
        self.T, self.N = T, N
        C = spec.crop_size

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        self.state = zeros(T, N, spec.state_dim)
        self.crop = zeros(T, N, C, C, dtype=torch.int16)
        self.atoms = zeros(T, N, spec.n_atoms, dtype=torch.bool)
        self.actions = zeros(T, N, dtype=torch.long)
        self.logp = zeros(T, N)
        self.values = zeros(T, N)
        self.alpha = zeros(T, N, n_experts)
        self.rewards = zeros(T, N)
        self.dones = zeros(T, N)
        self.advantages = zeros(T, N)
        self.returns = zeros(T, N)
        self.teacher_actions = torch.full((T, N), -1, dtype=torch.long, device=device)
        self.teacher_branches = torch.full((T, N), -1, dtype=torch.long, device=device)
        self.greedy = zeros(T, N, dtype=torch.bool)  # acted by argmax (ppo.greedy_envs)

    def store_act(
        self, t: int, lo: int, hi: int, obs: Obs, res: ActResult, greedy: Tensor | None = None
    ) -> None:
        """Row ``t`` of envs ``lo..hi-1``: what was observed and what the policy did
        (``greedy [hi-lo]``: which of them acted by argmax; ``None`` = none)."""
        if greedy is None:
            self.greedy[t, lo:hi] = False
        else:
            self.greedy[t, lo:hi] = greedy
        self.state[t, lo:hi] = obs.state
        self.crop[t, lo:hi] = obs.crop
        self.atoms[t, lo:hi] = obs.atoms
        self.actions[t, lo:hi] = res.action
        self.logp[t, lo:hi] = res.log_prob
        self.values[t, lo:hi] = res.out.value
        self.alpha[t, lo:hi] = res.out.alpha

    def store_teacher(self, t: int, lo: int, hi: int, action: Tensor, branch: Tensor) -> None:
        """Row ``t``: the teacher's advice on the same observation (``env.teacher``)."""
        self.teacher_actions[t, lo:hi] = action
        self.teacher_branches[t, lo:hi] = branch

    def store_step(self, t: int, lo: int, hi: int, reward: Tensor, done: Tensor) -> None:
        """Row ``t``: the reward (truncation bootstrap included) and whether the episode ended."""
        self.rewards[t, lo:hi] = reward
        self.dones[t, lo:hi] = done

    def compute_returns(self, last_value: Tensor, gamma: float, lam: float) -> None:
        """GAE per env in time order (see :func:`compute_gae`); ``last_value`` is ``V(s_T)`` ``[N]``."""
        adv, ret = compute_gae(self.rewards, self.values, self.dones, last_value, gamma, lam)
        self.advantages.copy_(adv)  # in place: the arrays may be shared with a learner process
        self.returns.copy_(ret)

    #: The arrays saved in a checkpoint (a rollout collected but not yet learned).
    FIELDS = ("state", "crop", "atoms", "actions", "logp", "values", "alpha", "rewards", "dones",
              "advantages", "returns", "teacher_actions", "teacher_branches", "greedy")  # fmt: skip
    #: Fields a checkpoint written before they existed may lack (filled with their empty value).
    OPTIONAL_FIELDS = {"teacher_actions": -1, "teacher_branches": -1, "greedy": False}

    def share_memory_(self) -> None:
        """Move the arrays to shared memory (a learner process reads them; CPU only)."""
        for k in self.FIELDS:
            getattr(self, k).share_memory_()

    def arrays(self) -> dict[str, Tensor]:
        """The arrays, on the CPU (for a checkpoint)."""
        return {k: getattr(self, k).cpu().clone() for k in self.FIELDS}

    def load_arrays(self, arrays: dict[str, Tensor]) -> None:
        """Fill the arrays from :meth:`arrays`."""
        for k in self.FIELDS:
            if k in self.OPTIONAL_FIELDS and k not in arrays:
                getattr(self, k).fill_(self.OPTIONAL_FIELDS[k])
                continue
            getattr(self, k).copy_(arrays[k])

    def flat(self) -> Minibatch:
        """The whole rollout as one batch ``[T*N, ...]``."""
        TN = self.T * self.N
        obs = Obs(
            self.state.view(TN, -1),
            self.crop.view(TN, *self.crop.shape[2:]),
            self.atoms.view(TN, -1),
        )
        return Minibatch(
            obs,
            self.actions.view(TN),
            self.logp.view(TN),
            self.values.view(TN),
            self.advantages.view(TN),
            self.returns.view(TN),
            self.teacher_actions.view(TN),
            self.greedy.view(TN) if bool(self.greedy.any()) else None,
        )

    def minibatches(self, n: int, gen: torch.Generator) -> Iterator[Minibatch]:
        """``n`` minibatches of a random permutation (drawn from ``gen``) of the rollout."""
        full = self.flat()
        TN = self.T * self.N
        size = TN // n
        perm = torch.randperm(TN, generator=gen).to(self.state.device)
        for k in range(n):
            idx = perm[k * size : (k + 1) * size]
            yield Minibatch(
                full.obs.rows(idx),
                full.actions[idx],
                full.old_logp[idx],
                full.old_values[idx],
                full.advantages[idx],
                full.returns[idx],
                full.teacher_actions[idx],
                None if full.greedy is None else full.greedy[idx],
            )

    def teacher_agreement(self) -> dict[str, float]:
        """Share of rows whose action is the teacher's, overall and per branch (rows with advice)."""

        ta, tb = self.teacher_actions.flatten(), self.teacher_branches.flatten()
        greedy = self.greedy.flatten()
        advised = ta >= 0
        valid = advised & ~greedy  # the sampled rows; greedy ones are reported apart
        same = self.actions.flatten() == ta
        out: dict[str, float] = {}
        if bool((advised & greedy).any()):
            g = advised & greedy
            out["teacher/agree_greedy"] = float((same & g).sum()) / float(g.sum())
        if not bool(valid.any()):
            return out
        same = same & valid
        out["teacher/agree"] = float(same.sum()) / float(valid.sum())
        for i, name in enumerate(BRANCHES):
            rows = valid & (tb == i)
            n = int(rows.sum())
            if n:
                out[f"teacher/agree/{name}"] = float((same & rows).sum()) / n
                out[f"teacher/share/{name}"] = n / float(valid.sum())
        return out

    def explained_variance(self) -> float | None:
        """:func:`explained_variance` of the rollout."""
        return explained_variance(self.returns.flatten(), self.values.flatten())


def explained_variance(returns: Tensor, values: Tensor) -> float | None:
    """``1 - Var(R - V) / Var(R)`` (``None`` when the returns are constant)."""
    var_y = torch.var(returns)
    if not var_y > 0:
        return None
    return float(1 - torch.var(returns - values) / var_y)
