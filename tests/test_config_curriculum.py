"""Config presets, overrides, validation errors and the curriculum schedule."""

import pytest

from nethack_moe.config.curriculum import CurriculumConfig, Phase
from nethack_moe.config.train import config_from_dict, dump_config, make_config, preset_names
from nethack_moe.core.errors import ConfigError


def test_presets_load_and_validate():
    assert {"s500", "smoke", "finetune_7000"} <= set(preset_names())
    for name in ("s500", "smoke", "finetune_7000"):
        make_config(name)


def test_s500_reproduces_the_reference_curriculum():
    c = make_config("s500").curriculum
    assert c.total_episodes == 5000
    assert [(p.name, p.start_episode, p.routing) for p in c.phases] == [
        ("warmup", 0, "softmax"),
        ("transition", 1000, "sparsemax"),
        ("finetune", 3000, "sparsemax"),
    ]
    assert c.phases[2].lr == 1e-5 and c.phases[2].coef("entropy") == 0.01
    ft = make_config("finetune_7000").curriculum
    assert ft.total_episodes == 7000 and ft.phases[-1].temperature == [0.5, 0.3]


def test_phase_temperature_and_lr_at_given_episodes():
    c = make_config("s500").curriculum
    assert c.phase_at(0).name == "warmup" and c.phase_at(999).name == "warmup"
    assert c.phase_at(1000).name == "transition" and c.phase_at(4999).name == "finetune"
    assert c.temperature_at(500) == 1.0
    assert c.temperature_at(1000) == 1.0
    assert c.temperature_at(2000) == pytest.approx(0.75)
    assert c.temperature_at(3000) == 0.5 and c.temperature_at(4500) == 0.5
    assert [c.lr_at(e) for e in (0, 999, 1000, 2999, 3000, 4999)] == [
        3e-4,
        3e-4,
        1e-4,
        1e-4,
        1e-5,
        1e-5,
    ]
    ft = make_config("finetune_7000").curriculum
    assert ft.temperature_at(6000) == pytest.approx(0.4)


def test_overrides_and_round_trip():
    cfg = make_config("smoke", ["ppo.num_envs=8", "run.seed=7", "model.variant=mlp_single"])
    assert cfg.ppo.num_envs == 8 and cfg.run.seed == 7 and cfg.model.variant == "mlp_single"
    import yaml

    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    "override, match",
    [
        ("ppo.num_envz=3", "ppo.num_envz"),
        ("nope.x=1", "'nope'"),
        ("ppo.gamma=abc", "ppo.gamma"),
        ("ppo.gamma=1.5", "ppo.gamma"),
        ("ppo.num_envs=0", "ppo.num_envs"),
        ("env.task=NetHackFoo-v0", "NetHackFoo-v0"),
        ("env.character=abc-hum-neu-mal", "role 'abc'"),
        ("env.max_episode_steps=-1", "max_episode_steps"),
        ("run.device=tpu", "run.device"),
        ("model.variant=big_moe", "variant"),
        ("ppo.num_minibatches=3", "num_minibatches"),
        ("run.num_workers=99", "num_workers"),
        ("ppo.clip_vloss=maybe", "ppo.clip_vloss"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        make_config("smoke", [override])


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="s500"):
        make_config("s5000")


def test_curriculum_validation():
    with pytest.raises(ValueError, match="routing='topk'"):
        CurriculumConfig([Phase("a", 0, "topk")], 10).validate()
    with pytest.raises(ValueError, match="start_episode"):
        CurriculumConfig([Phase("a", 0), Phase("b", 0)], 10).validate()
    with pytest.raises(ValueError, match="unknown coefficient 'entropi'"):
        CurriculumConfig([Phase("a", 0, coefficients={"entropi": 0.1})], 10).validate()
