"""One acting function for training, evaluation and ``watch`` (CleanRL's ``get_action_and_value``).

:func:`act` runs :meth:`ActorCritic.forward` once and either samples actions (Gumbel-max with
noise the caller draws from its own generators) or scores given actions. The PPO update calls the
same :func:`act` with the stored actions, so acting and learning share one forward function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from nethack_moe.models.policy import ActorCritic, Encoded, PolicyOutput


class Obs(NamedTuple):
    """A batch of policy inputs (``[B, ...]``)."""

    state: Tensor
    """``[B, state_dim]`` float."""
    crop: Tensor
    """``[B, C, C]`` glyph-group ids."""
    atoms: Tensor
    """``[B, n_atoms]`` bool."""

    def to(self, device: torch.device, non_blocking: bool = False) -> Obs:
        """The same batch on ``device``."""
        return Obs(*(t.to(device, non_blocking=non_blocking) for t in self))

    def rows(self, idx: Tensor | slice) -> Obs:
        """Rows ``idx`` of every field."""
        return Obs(*(t[idx] for t in self))


class Teacher(NamedTuple):
    """The scripted teacher's advice for a batch (``[B]`` each), computed in the env workers from
    the same observations as the :class:`Obs` beside it (``env.teacher``). Never a policy input:
    it is what a teacher term of the loss and the evaluation compare the policy with."""

    action: Tensor
    """``[B]`` int64 action ids (-1: no advice)."""
    branch: Tensor
    """``[B]`` int64 index into :data:`nethack_moe.envs.teacher.BRANCHES`: why (-1: no advice)."""

    def to(self, device: torch.device, non_blocking: bool = False) -> Teacher:
        """The same batch on ``device``."""
        return Teacher(*(t.to(device, non_blocking=non_blocking) for t in self))

    def rows(self, idx: Tensor | slice) -> Teacher:
        """Rows ``idx`` of every field."""
        return Teacher(*(t[idx] for t in self))


class ActResult(NamedTuple):
    """What :func:`act` returns."""

    action: Tensor
    """``[B]`` int64 actions (sampled, greedy, or the ones given)."""
    log_prob: Tensor
    """``[B]`` log π(action | s)."""
    out: PolicyOutput
    """The full forward pass (value, α, expert logits, ...)."""


def gumbel_noise(shape: Sequence[int], gen: torch.Generator, out: Tensor | None = None) -> Tensor:
    """``[*shape]`` standard Gumbel noise from ``gen`` (on the CPU), written into ``out`` when
    given (a preallocated buffer: no allocation per acting step)."""
    u = torch.rand(tuple(shape), generator=gen, out=out)
    return u.clamp_min_(1e-10).log_().neg_().log_().neg_()


def gumbel_noise_rows(n_actions: int, gens: Sequence[torch.Generator | None]) -> Tensor:
    """``[B, n_actions]`` noise, row ``i`` from ``gens[i]`` (zeros where ``gens[i]`` is None)."""
    noise = torch.zeros(len(gens), n_actions)
    for i, g in enumerate(gens):
        if g is not None:
            noise[i] = gumbel_noise((n_actions,), g)
    return noise


def act(
    model: ActorCritic,
    obs: Obs,
    routing: str | None = None,
    temperature: float | None = None,
    *,
    noise: Tensor | None = None,
    action: Tensor | None = None,
    alpha_override: Tensor | None = None,
    edit: Callable[[Encoded], Encoded] | None = None,
) -> ActResult:
    """One forward pass; the action is ``action`` if given, else ``argmax(logits + noise)``.

    ``noise=None`` (and no ``action``) is greedy acting; Gumbel ``noise`` (:func:`gumbel_noise`)
    samples from π. ``alpha_override`` forces the expert weights (see :meth:`ActorCritic.head`);
    ``edit`` changes the encoding before the heads (e.g. ``h_graph`` replaced by its mean).
    """
    enc = model.encode(*obs)
    out = model.head(enc if edit is None else edit(enc), routing, temperature, alpha_override)
    logp_all = torch.log_softmax(out.logits.float(), -1)  # [B, A]
    if action is None:
        score = out.logits.float() if noise is None else out.logits.float() + noise.to(logp_all)
        action = score.argmax(-1)
    log_prob = logp_all.gather(1, action[:, None]).squeeze(1)
    return ActResult(action, log_prob, out)
