"""The torch device a run asks for (``auto``, ``cpu``, ``cuda[:N]``)."""

from __future__ import annotations

import logging

import torch

from nethack_moe.core.errors import ConfigError

log = logging.getLogger(__name__)


#: ``auto`` trains on a GPU only with at least this many envs: below it the acting calls are too
#: small to pay for the GPU's launches and copies (S500's 32 envs trained at 2,041 SPS on an H200
#: machine, slower than on 2 CPU cores; 256 envs at 6,127; benchmarks/README.md).
GPU_MIN_ENVS = 256


def resolve_device(name: str, num_envs: int | None = None) -> torch.device:
    """``auto`` → cuda when available (for training, ``num_envs``: only with at least
    :data:`GPU_MIN_ENVS` envs), else cpu."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if num_envs is not None and num_envs < GPU_MIN_ENVS:
            log.info("run.device=auto: cpu, since ppo.num_envs=%d < %d runs slower on the GPU "
                     "(for a GPU layout: --config s500_gpu)", num_envs, GPU_MIN_ENVS)  # fmt: skip
            return torch.device("cpu")
        return torch.device("cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={name!r} but CUDA is not available on this machine")
    return torch.device(name)
