"""One PPO update: minibatch epochs over a rollout, with NaN/Inf skips and an optional target KL.

Every forward pass is :func:`nethack_moe.models.acting.act` with the stored actions: the same
function, inputs, atoms and graph as when acting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from nethack_moe.models.acting import act
from nethack_moe.models.policy import ActorCritic
from nethack_moe.ppo.loss import LossBatch, ppo_loss
from nethack_moe.ppo.storage import Minibatch, RolloutStorage

if TYPE_CHECKING:
    from nethack_moe.ppo.distributed import DistContext


@dataclass
class PPOSettings:
    """What :func:`ppo_update` needs of the PPO config and the phase."""

    epochs: int
    minibatches: int
    clip_coef: float
    vf_coef: float
    clip_vloss: bool
    norm_adv: bool
    max_grad_norm: float
    target_kl: float | None
    coefficients: Mapping[str, float]


@dataclass
class UpdateStats:
    """What one update did (means over the minibatches that were applied)."""

    terms: dict[str, float] = field(default_factory=dict)
    """Named loss terms plus ``approx_kl`` and ``clip_frac``."""
    minibatches: int = 0
    grad_norm: float = 0.0
    skipped: bool = False
    """A non-finite loss or gradient stopped the update (the bad step was not applied)."""
    nonfinite_term: str | None = None
    early_stop: bool = False
    """The approximate KL passed ``target_kl``."""

    def mean(self, name: str) -> float | None:
        """Mean of a term over the applied minibatches (``None`` when none was applied)."""
        return self.terms[name] / self.minibatches if self.minibatches else None


def _step(
    model: ActorCritic,
    optim: torch.optim.Optimizer,
    mb: Minibatch,
    routing: str,
    temperature: float,
    s: PPOSettings,
    stats: UpdateStats,
    dist: DistContext | None = None,
) -> bool:
    """One gradient step; returns False when the update must stop (non-finite or target KL).

    With several ranks (``dist``), the loss terms are averaged over the ranks before the tests
    (so every rank stops on the same step) and the gradients before the clip."""
    out = act(model, mb.obs, routing, temperature, action=mb.actions).out
    prior = None
    if s.coefficients.get("routing_prior", 0.0) > 0 and out.operator_scores is not None:
        prior = model.expert_prior(out.operator_scores)
    batch = LossBatch(mb.actions, mb.old_logp, mb.old_values, mb.advantages, mb.returns, prior,
                      mb.teacher_actions, mb.greedy)  # fmt: skip
    loss, terms = ppo_loss(
        out, batch, s.coefficients, s.clip_coef, s.vf_coef, s.clip_vloss, s.norm_adv
    )
    vals = (
        {k: float(v.detach()) for k, v in terms.items()}
        if dist is None
        else dist.mean_values(terms)
    )
    optim.zero_grad(set_to_none=True)
    bad = [k for k, v in vals.items() if not math.isfinite(v)]
    if bad:
        stats.skipped, stats.nonfinite_term = True, bad[0]
        return False
    loss.backward()
    if dist is not None:
        dist.average_gradients(model.parameters())
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
    if not torch.isfinite(gn):
        optim.zero_grad(set_to_none=True)
        stats.skipped, stats.nonfinite_term = True, "gradients"
        return False
    optim.step()
    stats.grad_norm = float(gn)
    for k, v in vals.items():
        stats.terms[k] = stats.terms.get(k, 0.0) + v
    stats.minibatches += 1
    if s.target_kl is not None and vals["approx_kl"] > s.target_kl:
        stats.early_stop = True
        return False
    return True


def ppo_update(
    model: ActorCritic,
    optim: torch.optim.Optimizer,
    storage: RolloutStorage,
    routing: str,
    temperature: float,
    s: PPOSettings,
    gen: torch.Generator,
    dist: DistContext | None = None,
) -> UpdateStats:
    """``s.epochs`` passes of ``s.minibatches`` shuffled minibatches (order drawn from ``gen``);
    ``dist``: several ranks, gradients averaged over them (:mod:`nethack_moe.ppo.distributed`)."""
    stats = UpdateStats()
    model.train()
    for _ in range(s.epochs):
        for mb in storage.minibatches(s.minibatches, gen):
            if not _step(model, optim, mb, routing, temperature, s, stats, dist):
                return stats
    return stats
