"""The torch device a run asks for (``auto``, ``cpu``, ``cuda[:N]``)."""

from __future__ import annotations

import logging

import torch

from nethack_moe.core.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={name!r} but CUDA is not available on this machine")
    return torch.device(name)
