"""``model.hint_inputs=false`` (the no-hint ablation): the hint columns never reach the policy."""

from __future__ import annotations

import pytest
import torch
from model_inputs import random_inputs

import nethack_moe.features as F
from nethack_moe.config.train import make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.features import FeatureSpec
from nethack_moe.models.policy import build_model

NO_HINT = ["model.hint_inputs=false", "model.hint_to_logits=false", "env.hint_bonus=0"]


@pytest.mark.parametrize("variant", ["gat_moe", "mlp_single"])
def test_without_hint_inputs_the_hint_columns_change_nothing(variant):
    torch.manual_seed(0)
    cfg = make_config("s500", [*NO_HINT, f"model.variant={variant}"])
    model = build_model(cfg.model, FeatureSpec(), 23)
    state, crop, atoms = random_inputs()
    other = state.clone()
    other[:, list(F.HINT_STATE_COLUMNS)] = torch.rand(len(state), len(F.HINT_STATE_COLUMNS)) * 5
    a, b = model(state, crop, atoms), model(other, crop, atoms)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.value, b.value)
    # a column that is not the hint still matters
    moved = state.clone()
    moved[:, 0] += 1.0
    assert not torch.allclose(model(moved, crop, atoms).logits, a.logits)
    # and with the hint on, the same change of the hint columns does matter
    torch.manual_seed(0)
    on = build_model(make_config("s500", [f"model.variant={variant}"]).model, FeatureSpec(), 23)
    assert not torch.allclose(on(state, crop, atoms).logits, on(other, crop, atoms).logits)


def test_the_mask_is_not_saved_and_old_checkpoints_still_load():
    model = build_model(make_config("s500", NO_HINT).model, FeatureSpec(), 23)
    assert not any("state_mask" in k for k in model.state_dict())
    on = build_model(make_config("s500").model, FeatureSpec(), 23)
    assert set(model.state_dict()) == set(on.state_dict()) - {"hint_gain"}


def test_hint_skip_without_hint_inputs_is_refused():
    with pytest.raises(ConfigError, match="hint_to_logits: needs hint_inputs=true"):
        make_config("s500", ["model.hint_inputs=false"])


def test_a_checkpoint_written_before_the_field_existed_counts_as_its_default():
    from nethack_moe.runs.checkpoint import CheckpointError, CheckpointPayload, check_model_compat

    model = make_config("s500").model.to_dict()
    old = CheckpointPayload(
        config={"model": {k: v for k, v in model.items() if k != "hint_inputs"}}
    )
    check_model_compat(old, model, "old.pt")  # hint_inputs absent = true, as requested
    no_hint = make_config("s500", NO_HINT).model.to_dict()
    with pytest.raises(CheckpointError, match="hint_inputs: checkpoint True vs requested False"):
        check_model_compat(old, no_hint, "old.pt")
