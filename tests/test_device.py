"""Device selection: nothing requires a GPU; `auto` falls back to the CPU; `cuda` without CUDA fails clearly."""

import pytest
import torch

from nethack_moe.config.train import make_config
from nethack_moe.core.device import resolve_device
from nethack_moe.core.errors import ConfigError


def test_auto_picks_cuda_only_when_available():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_device_values_are_validated():
    assert make_config("smoke", ["run.device=auto"]).run.device == "auto"
    with pytest.raises(ConfigError, match="run.device"):
        make_config("smoke", ["run.device=gpu0"])


def test_auto_trains_on_the_gpu_only_with_a_gpu_layout(monkeypatch):
    """S500's 32 envs ran slower on a GPU machine than on 2 CPU cores: auto keeps them on the CPU."""
    from nethack_moe.core.device import GPU_MIN_ENVS

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", 32).type == "cpu"
    assert resolve_device("auto", GPU_MIN_ENVS).type == "cuda"
    assert resolve_device("auto").type == "cuda", "evaluation and analysis: no layout to judge"
    gpu = make_config("s500_gpu", [])
    assert gpu.run.device == "cuda" and gpu.ppo.num_envs >= GPU_MIN_ENVS
    s500 = make_config("s500", [])
    assert resolve_device("auto", s500.ppo.num_envs).type == "cpu"
    assert gpu.curriculum == s500.curriculum and gpu.env == s500.env and gpu.model == s500.model
