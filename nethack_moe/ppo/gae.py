"""Generalized advantage estimation, per env in time order."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns for a rollout.

    Args:
        rewards: ``[T, N]`` rewards; for a step that *truncated* an episode the caller has already
            added ``gamma * V(last observation)`` (bootstrap), so truncation and death are both
            cut here with ``dones = 1``, but only death loses the future value.
        values: ``[T, N]`` V(s_t) from acting.
        dones: ``[T, N]`` 1.0 where the episode ended after step t (death or truncation).
        last_value: ``[N]`` V(s_T) of the observation after the rollout.

    Returns:
        ``(advantages [T, N], returns [T, N])``.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in range(T - 1, -1, -1):
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        next_adv = delta + gamma * lam * nonterminal * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values
