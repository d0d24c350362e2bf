"""Routing functions: expert weights ``alpha`` from router logits.

``softmax`` is dense; ``sparsemax`` (Martins & Astudillo 2016) and ``entmax15`` (Peters et al. 2019)
are the exact projections from the ``entmax`` package and give exact zeros. Top-k softmax is *not*
sparsemax and is not offered.
"""

from __future__ import annotations

import torch
from entmax import entmax15, sparsemax
from torch import Tensor

#: Routing kinds accepted by :func:`route`.
ROUTING_KINDS: tuple[str, ...] = ("softmax", "sparsemax", "entmax15")


def check_routing(kind: str, temperature: float | None = None) -> None:
    """Raise ``ValueError`` for an unknown routing kind or a non-positive temperature."""
    if kind not in ROUTING_KINDS:
        raise ValueError(f"unknown routing kind {kind!r}; expected one of {ROUTING_KINDS}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"routing temperature must be > 0, got {temperature!r}")


def route(logits: Tensor, kind: str, temperature: float = 1.0) -> Tensor:
    """Expert weights ``alpha = kind(logits / temperature)`` over the last dimension.

    Args:
        logits: ``[..., E]`` router logits.
        kind: ``"softmax"``, ``"sparsemax"`` or ``"entmax15"``.
        temperature: > 0; small values sharpen towards the argmax, large ones flatten towards
            uniform.

    Returns:
        ``[..., E]`` non-negative weights summing to 1 (exact zeros for sparsemax / entmax15).
    """
    check_routing(kind, temperature)
    z = logits / temperature
    if kind == "softmax":
        return torch.softmax(z, dim=-1)
    if kind == "sparsemax":
        return sparsemax(z, dim=-1)
    return entmax15(z, dim=-1)
