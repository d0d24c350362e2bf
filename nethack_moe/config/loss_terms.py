"""The PPO loss's named terms: the one list of their names (``ppo/loss.py`` computes them and
documents each formula and sign; the trainer logs each as ``loss/<name>``)."""

from __future__ import annotations

#: The loss itself (the sum of the weighted terms).
TOTAL = "total"
#: Every term the loss returns, in logging order (``total`` first).
LOSS_TERMS: tuple[str, ...] = (
    TOTAL, "policy", "value", "entropy", "alpha_entropy", "load_balance", "diversity",
    "routing_prior", "teacher",
)  # fmt: skip
#: The terms a curriculum phase weights with a coefficient of its own (the teacher's λ has a
#: schedule of its own, ``Phase.teacher``; ``value`` is weighted by ``ppo.vf_coef``).
COEFFICIENT_NAMES: tuple[str, ...] = (
    "entropy", "alpha_entropy", "load_balance", "diversity", "routing_prior",
)  # fmt: skip
#: Detached diagnostics the loss returns beside its terms (never in the total).
DIAGNOSTICS: tuple[str, ...] = ("approx_kl", "clip_frac")
