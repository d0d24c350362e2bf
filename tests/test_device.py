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
