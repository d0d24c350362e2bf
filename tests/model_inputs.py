"""Random policy inputs of the real feature shapes, for model tests."""

from __future__ import annotations

import torch

import nethack_moe.features as F


def random_inputs(n: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(state [n, STATE_DIM], crop [n, 9, 9], atoms [n, N_ATOMS])``, seeded."""
    g = torch.Generator().manual_seed(0)
    state = torch.rand(n, F.STATE_DIM, generator=g)
    crop = torch.randint(0, int(F.N_GLYPH_GROUPS), (n, 9, 9), generator=g)
    atoms = (torch.rand(n, F.N_ATOMS, generator=g) > 0.7).float()
    return state, crop, atoms
