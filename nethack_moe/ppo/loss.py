"""The PPO loss with routing terms. Every term is returned by name.

Terms (all minimized; ``c_x`` is the phase coefficient of term ``x``):

* ``policy``: clipped surrogate ``-min(r A, clip(r, 1-ε, 1+ε) A)`` (mean).
* ``value``: ``0.5 (V - R)^2``, optionally clipped around the old value; weight ``vf_coef``.
* ``entropy``: mean entropy ``H(π)`` of the mixed policy; enters as ``-c_entropy * H``
  (a positive coefficient *raises* policy entropy).
* ``alpha_entropy``: mean router entropy ``H(α_s)``; enters as ``+c_alpha_entropy * H``
  (a positive coefficient *lowers* alpha entropy: sharper routing per state).
* ``load_balance``: ``KL(ᾱ || uniform) = Σ_i ᾱ_i log(E ᾱ_i)`` over the minibatch; enters as
  ``+c_load_balance * KL`` (pushes the marginal expert usage toward uniform).
* ``diversity``: mean pairwise Jensen–Shannon divergence between the experts' action
  distributions (in [0, ln 2]); enters as ``-c_diversity * JS`` (a positive coefficient makes the
  experts act differently).
* ``routing_prior``: ``KL(p_graph || α)`` toward the expert mass of the knowledge graph's operators
  (``softmax`` of the operator scores, summed per expert); enters as ``+c_routing_prior * KL``.
  The prior is not detached: the gradient reaches the router *and* the graph's operator scores.
* ``teacher``: kickstarting (Schmitt et al. 2018): the cross-entropy ``-log π(a_T | s)`` of the
  scripted teacher's action ``a_T`` under the mixed policy, mean over the rows that have advice
  (``a_T >= 0``; 0 when none has); enters as ``+c_teacher * CE`` (a positive coefficient pulls the
  policy toward the teacher). The actions PPO learns from stay the student's own.

Rows acted greedily (``LossBatch.greedy``, ``ppo.greedy_envs``: DAgger rows) are not samples of
π: ``policy``, ``value``, ``entropy`` and the ratio diagnostics are means over the other rows
(advantages normalized over them); the teacher and routing terms use every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

EPS = 1e-8


@dataclass
class LossBatch:
    """What one minibatch brings to the loss (flattened ``[M]`` rows)."""

    actions: torch.Tensor
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    prior: torch.Tensor | None = None
    """``[M, E]`` routing prior (rows summing to 1), ``None`` = no prior term."""
    teacher_actions: torch.Tensor | None = None
    """``[M]`` the teacher's action per row (-1: no advice), ``None`` = no teacher term."""
    greedy: torch.Tensor | None = None
    """``[M]`` bool: rows acted by argmax (out of PPO's terms); ``None`` = none."""


def entropy_of(p: torch.Tensor) -> torch.Tensor:
    """Entropy along the last axis with 0·log 0 = 0."""
    return -(p * torch.log(p.clamp_min(EPS))).sum(-1)


def expert_diversity(expert_logits: torch.Tensor) -> torch.Tensor:
    """Mean pairwise Jensen–Shannon divergence of the experts' policies. ``[M, E, A]`` → scalar."""
    E = expert_logits.shape[1]
    if E < 2:
        return expert_logits.new_zeros(())
    p = torch.softmax(expert_logits, dim=-1)  # [M, E, A]
    logp = torch.log_softmax(expert_logits, dim=-1)
    i, j = torch.triu_indices(E, E, offset=1, device=p.device)
    pi, pj = p[:, i], p[:, j]  # [M, P, A]
    m = 0.5 * (pi + pj)
    logm = torch.log(m.clamp_min(EPS))
    js = 0.5 * (pi * (logp[:, i] - logm)).sum(-1) + 0.5 * (pj * (logp[:, j] - logm)).sum(-1)
    return js.mean()


def teacher_term(logp_all: torch.Tensor, teacher_actions: torch.Tensor | None) -> torch.Tensor:
    """Mean ``-log π(a_T | s)`` over the rows with advice (``a_T >= 0``); 0 without any.
    ``logp_all [M, A]`` log-probabilities of the mixed policy, ``teacher_actions [M]``."""
    if teacher_actions is None:
        return logp_all.new_zeros(())
    valid = teacher_actions >= 0
    n = valid.sum()
    if not bool(n > 0):
        return logp_all.new_zeros(())
    picked = logp_all.gather(1, teacher_actions.clamp_min(0)[:, None]).squeeze(1)  # [M]
    return -(picked * valid).sum() / n


def _mean(x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x [M]`` over the rows with weight 1 (``w``: 0/1 floats, ``None`` = all rows;
    0 when no row has weight)."""
    if w is None:
        return x.mean()
    return (x * w).sum() / w.sum().clamp_min(1.0)


def ppo_loss(
    out,
    batch: LossBatch,
    coefs: Mapping[str, float],
    clip_coef: float,
    vf_coef: float,
    clip_vloss: bool,
    norm_adv: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its named terms (unweighted values, detached for logging except ``total``)."""
    logits = out.logits
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(1, batch.actions[:, None]).squeeze(1)
    w = None if batch.greedy is None else (~batch.greedy).to(logp.dtype)  # [M] sampled rows
    logratio = logp - batch.old_logp
    ratio = logratio.exp()
    adv = batch.advantages
    sampled = adv if batch.greedy is None else adv[~batch.greedy]  # what normalizes them
    if norm_adv and sampled.numel() > 1:
        adv = (adv - sampled.mean()) / (sampled.std() + 1e-8)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    policy = _mean(torch.max(pg1, pg2), w)

    v = out.value
    if clip_vloss:
        v_clipped = batch.old_values + torch.clamp(v - batch.old_values, -clip_coef, clip_coef)
        value = 0.5 * _mean(
            torch.max((v - batch.returns) ** 2, (v_clipped - batch.returns) ** 2), w
        )
    else:
        value = 0.5 * _mean((v - batch.returns) ** 2, w)

    entropy = _mean(entropy_of(logp_all.exp()), w)
    alpha = out.alpha  # [M, E]
    E = alpha.shape[1]
    alpha_entropy = entropy_of(alpha).mean()
    abar = alpha.mean(0)
    load_balance = (abar * torch.log((abar * E).clamp_min(EPS))).sum()
    diversity = expert_diversity(out.expert_logits)
    if batch.prior is not None and E > 1:
        pr = batch.prior  # [M, E], rows sum to 1; not detached: the graph's scores learn too
        routing_prior = (
            (pr * (torch.log(pr.clamp_min(EPS)) - torch.log(alpha.clamp_min(EPS)))).sum(-1).mean()
        )
    else:
        routing_prior = alpha.new_zeros(())
    teacher = teacher_term(logp_all, batch.teacher_actions)

    total = (
        policy
        + vf_coef * value
        - coefs.get("entropy", 0.0) * entropy
        + coefs.get("alpha_entropy", 0.0) * alpha_entropy
        + coefs.get("load_balance", 0.0) * load_balance
        - coefs.get("diversity", 0.0) * diversity
        + coefs.get("routing_prior", 0.0) * routing_prior
        + coefs.get("teacher", 0.0) * teacher
    )
    with torch.no_grad():
        approx_kl = _mean((ratio - 1) - logratio, w)
        clip_frac = _mean(((ratio - 1.0).abs() > clip_coef).to(ratio.dtype), w)
    terms = {
        "total": total,
        "policy": policy,
        "value": value,
        "entropy": entropy,
        "alpha_entropy": alpha_entropy,
        "load_balance": load_balance,
        "diversity": diversity,
        "routing_prior": routing_prior,
        "teacher": teacher,
        "approx_kl": approx_kl,
        "clip_frac": clip_frac,
    }
    return total, terms
