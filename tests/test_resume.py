"""``train --resume``: the run's own config and directory, allowed ``--set`` keys, and the one-line
refusals of a config that would make resuming wrong. Checkpoints here hold only what resuming reads
(config and counters), so no env or model is built."""

from __future__ import annotations

from pathlib import Path

import pytest

import nethack_moe.ppo.trainer as trainer_mod
from nethack_moe.cli import app as cli
from nethack_moe.config.train import TrainConfig, make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.runs.checkpoint import save_checkpoint
from nethack_moe.runs.resume import RESUME_SETTABLE_KEYS, check_resume_compat, resume_config

ALLOWED_SETS = {
    "run.num_workers": ("0", 0),
    "run.device": ("cpu", "cpu"),
    "run.progress": ("false", False),
    "run.tensorboard": ("false", False),
    "run.torch_threads": ("1", 1),
    "run.max_env_steps": ("1000", 1000),
    "run.checkpoint_every": ("2", 2),
    "run.keep_checkpoints": ("3", 3),
    "run.max_worker_restarts": ("9", 9),
    "run.dist_timeout_s": ("60", 60.0),
    "ppo.learner": ("process", "process"),
}


def _run(out: Path, *sets: str, config: str = "smoke", episodes: tuple[int, ...] = (4, 8)) -> Path:
    """A run directory as a kill would leave it: metrics.jsonl and checkpoints ``ep_*.pt``."""
    cfg = make_config(config, [f"run.out_dir={out}", *sets])
    run_dir = out / cfg.run.name
    (run_dir / "metrics.jsonl").parent.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("")
    for i, ep in enumerate(episodes):
        _ckpt(run_dir / "checkpoints" / f"ep_{ep:06d}.pt", cfg, ep, i + 1)
    return run_dir


def _ckpt(path: Path, cfg: TrainConfig, episodes: int, updates: int) -> None:
    save_checkpoint(
        path, {"config": cfg.to_dict(), "counters": {"episodes": episodes, "updates": updates}}
    )


# ------------------------------------------------------------------ the run's own config
def test_resume_alone_uses_the_runs_own_preset_name_and_directory(tmp_path):
    run_dir = _run(tmp_path / "out", "run.name=foo", "run.seed=7")
    plan = resume_config(run_dir, None, [])
    saved = make_config("smoke", [f"run.out_dir={tmp_path / 'out'}", "run.name=foo", "run.seed=7"])
    assert plan.cfg.to_dict() == saved.to_dict()  # smoke, not the s500 default
    assert (plan.cfg.run.name, plan.cfg.run.seed, plan.cfg.env.max_episode_steps) == ("foo", 7, 40)
    assert plan.run_dir == run_dir
    assert plan.checkpoint == run_dir / "checkpoints" / "ep_000008.pt"
    assert not plan.continues_into


def test_resume_alone_takes_the_newest_loadable_checkpoint(tmp_path):
    run_dir = _run(tmp_path / "out")
    (run_dir / "checkpoints" / "ep_000012.pt").write_bytes(b"torn")
    assert resume_config(run_dir, None, []).checkpoint.name == "ep_000008.pt"


def test_a_moved_run_continues_where_it_is(tmp_path):
    run_dir = _run(tmp_path / "out", "run.name=foo")
    moved = run_dir.rename(tmp_path / "elsewhere")
    assert resume_config(moved, None, []).run_dir == moved
    ckpt = moved / "checkpoints" / "ep_000004.pt"
    plan = resume_config(ckpt, None, [])
    assert (plan.run_dir, plan.checkpoint) == (moved, ckpt)


def test_a_checkpoint_outside_a_run_continues_into_its_saved_name(tmp_path):
    loose = tmp_path / "shipped" / "checkpoints" / "final.pt"
    _ckpt(loose, make_config("smoke", [f"run.out_dir={tmp_path / 'out'}"]), 12, 3)
    assert resume_config(loose, None, []).run_dir == tmp_path / "out" / "smoke"


@pytest.mark.parametrize("key", list(ALLOWED_SETS))
def test_allowed_set_keys_change_only_that_key(tmp_path, key):
    run_dir = _run(tmp_path / "out", "run.num_workers=1", "run.keep_checkpoints=0")
    text, value = ALLOWED_SETS[key]
    plan = resume_config(run_dir, None, [f"{key}={text}"])
    before = resume_config(run_dir, None, []).cfg.to_dict()
    after = plan.cfg.to_dict()
    section, name = key.split(".")
    assert after[section].pop(name) == value
    before[section].pop(name)
    assert after == before


def test_every_allowed_key_is_tested_and_documented():
    assert set(ALLOWED_SETS) == set(RESUME_SETTABLE_KEYS)
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    help_text = " ".join(sub.choices["train"].format_help().split())  # type: ignore[index]
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    for key in RESUME_SETTABLE_KEYS:
        assert key in help_text and key in readme, key


@pytest.mark.parametrize(
    "override",
    ["ppo.num_envs=64", "run.seed=2", "run.name=foo", "run.out_dir=/tmp/x",
     "curriculum.total_episodes=99", "model.variant=mlp_single", "env.task=NetHackStaircase-v0",
     "ppo.gamma=0.9"],
)  # fmt: skip
def test_experiment_keys_are_refused_in_one_line_naming_the_key(tmp_path, override):
    run_dir = _run(tmp_path / "out")
    with pytest.raises(ConfigError) as e:
        resume_config(run_dir, None, ["run.device=cpu", override])
    msg = str(e.value)
    assert msg.startswith(f"--set {override}: cannot change an experiment key when resuming")
    assert "\n" not in msg and all(k in msg for k in RESUME_SETTABLE_KEYS)


def test_an_allowed_key_with_a_bad_value_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="run.num_workers"):
        resume_config(_run(tmp_path / "out"), None, ["run.num_workers=99"])


# ------------------------------------------------------------------ continuing into a config
def test_config_given_continues_into_that_config_and_its_directory(tmp_path):
    out = tmp_path / "out"
    run_dir = _run(out, config="s500", episodes=(5000,))
    plan = resume_config(run_dir, "finetune_7000", [f"run.out_dir={out}"])
    assert plan.continues_into
    assert (plan.cfg.run.name, plan.cfg.curriculum.total_episodes) == ("finetune_7000", 7000)
    assert plan.run_dir == out / "finetune_7000"
    assert plan.checkpoint == run_dir / "checkpoints" / "ep_005000.pt"


def test_config_given_is_checked_against_the_checkpoint(tmp_path):
    out = tmp_path / "out"
    run_dir = _run(out, "run.seed=3", config="s500", episodes=(5000,))
    with pytest.raises(
        ConfigError, match=r"^cannot resume: run.seed differs \(checkpoint 3, now 1\)$"
    ):
        resume_config(run_dir, "finetune_7000", [f"run.out_dir={out}"])
    plan = resume_config(run_dir, "finetune_7000", [f"run.out_dir={out}", "run.seed=3"])
    assert plan.cfg.run.seed == 3


# ------------------------------------------------------------------ check_resume_compat
def _cfg(*sets: str) -> TrainConfig:
    return make_config("smoke", list(sets))


@pytest.mark.parametrize(
    "override, message",
    [
        ("env.task=NetHackStaircase-v0",
         "cannot resume: env.task differs (checkpoint 'NetHackScore-v0', now 'NetHackStaircase-v0')"),
        ("run.seed=2", "cannot resume: run.seed differs (checkpoint 1, now 2)"),
        ("ppo.num_envs=8", "cannot resume: ppo.num_envs differs (checkpoint 4, now 8)"),
        ("model.variant=mlp_single",
         "cannot resume: model.variant differs (checkpoint 'gat_moe', now 'mlp_single')"),
        ("model.conv_channels=[16]",
         "cannot resume: model.conv_channels differs (checkpoint [32], now [16])"),
        ("env.max_episode_steps=50",
         "cannot resume: env.max_episode_steps differs (checkpoint 40, now 50)"),
    ],
)  # fmt: skip
def test_mismatch_is_refused_in_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        check_resume_compat(_cfg(), _cfg(override))
    assert str(e.value) == message


def test_what_does_not_change_the_experiment_is_compatible():
    old = _cfg()
    new = _cfg("curriculum.total_episodes=99", "run.name=other", "run.num_workers=0",
               "ppo.rollout_steps=8", "run.device=cpu")  # fmt: skip
    check_resume_compat(old, new)
    new.model.expert_names = list(new.model.expert_names)  # type: ignore[assignment]
    check_resume_compat(old, new)  # a list and a tuple of the same names are the same


# ------------------------------------------------------------------ the command line
@pytest.fixture
def no_env(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("an env was started for bad input")

    monkeypatch.setattr(trainer_mod, "VectorEnv", refuse)


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--set", "ppo.num_envs=64"],
         ["--set ppo.num_envs=64: cannot change an experiment key when resuming"]),
        (["--name", "bar"], ["--set run.name=bar: cannot change an experiment key"]),
        (["--config", "smoke", "--set", "run.seed=5"],
         ["cannot resume: run.seed differs (checkpoint 1, now 5)"]),
        (["--config", "smoke", "--set", "env.task=NetHackStaircase-v0"],
         ["cannot resume: env.task differs (checkpoint 'NetHackScore-v0', now 'NetHackStaircase-v0')"]),
    ],
)  # fmt: skip
def test_cli_refuses_with_status_2_and_one_line(tmp_path, no_env, capsys, extra, words):
    out = tmp_path / "out"
    run_dir = _run(out, "run.name=foo")
    rc = cli.main(["train", "--resume", str(run_dir), "--set", f"run.out_dir={out}", *extra]
                  if "--config" in extra else ["train", "--resume", str(run_dir), *extra])  # fmt: skip
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and line.startswith("nethack-moe: error: ")
    for w in words:
        assert w in line, (w, line)
    assert sorted(p.name for p in out.iterdir()) == ["foo"]  # nothing else written
