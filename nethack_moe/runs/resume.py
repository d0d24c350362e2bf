"""Resuming a run: which config it continues with, which run directory, and what may change.

Two ways to resume (``nethack-moe train --resume RUN``):

* **Resume alone** (no ``--config``): the run continues with its *own* saved config (the one in its
  newest loadable checkpoint) in its own directory. ``--set`` may change only the keys of
  :data:`RESUME_SETTABLE_KEYS`, which change how the run executes, not what it computes; any other key
  is refused in one line naming it.
* **Continue into a config** (``--config X --resume RUN``): the config is built from ``X`` and
  ``--set`` as for a fresh run (e.g. ``finetune_7000`` continues a finished S500 run into a new
  curriculum, in ``runs/finetune_7000/``), and :func:`check_resume_compat` refuses it if the seed, the
  env, the number of envs or the model differ from the checkpoint's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nethack_moe.config.train import TrainConfig, config_from_dict, make_config, parse_overrides
from nethack_moe.core.errors import ConfigError
from nethack_moe.runs.checkpoint import (
    CheckpointPayload,
    config_diffs,
    config_leaves,
    load_payload,
)
from nethack_moe.runs.rundir import RunDir, find_resume_checkpoint

#: The ``--set`` keys a resumed run may change: how it executes (workers, device, threads, output,
#: checkpoint cadence, limits, where the update runs), never what it computes. Results do not depend on any of them.
RESUME_SETTABLE_KEYS: tuple[str, ...] = (
    "run.num_workers",
    "run.device",
    "run.progress",
    "run.tensorboard",
    "run.torch_threads",
    "run.max_env_steps",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.max_worker_restarts",
    "run.dist_timeout_s",
    "ppo.learner",
)

#: The sections of a config compared in full by :func:`check_resume_compat`, and single keys.
_COMPAT_SECTIONS = ("env", "model")
_COMPAT_KEYS = ("run.seed", "ppo.num_envs")


@dataclass(frozen=True)
class ResumePlan:
    """What ``train --resume`` continues with."""

    cfg: TrainConfig
    """The config the run continues with (validated)."""
    checkpoint: Path
    """The checkpoint it continues from (the newest loadable one of a run directory)."""
    run_dir: Path
    """The directory it writes to: the run's own, or the one of the continued-into config."""
    continues_into: bool
    """True when ``--config`` named a config to continue into (not the run's own)."""


def resume_config(target: Path, config_arg: str | None, overrides: list[str]) -> ResumePlan:
    """The config, checkpoint and run directory of ``train --resume target``.

    ``config_arg`` None: the run's own saved config, changed only by allowed ``overrides``.
    Otherwise: ``config_arg`` with ``overrides`` (any key), checked against the checkpoint.
    Raises :class:`ConfigError` or :class:`~nethack_moe.checkpoint.CheckpointError` in one line.
    """
    ckpt_path = find_resume_checkpoint(Path(target))
    saved = _saved_config(load_payload(ckpt_path), ckpt_path)
    if config_arg is not None:
        cfg = make_config(config_arg, overrides)
        check_resume_compat(saved, cfg)
        return ResumePlan(cfg, ckpt_path, _named_run_dir(cfg), continues_into=True)
    cfg = _with_allowed_overrides(saved, overrides)
    return ResumePlan(cfg, ckpt_path, _own_run_dir(Path(target), ckpt_path, cfg), False)


def check_resume_compat(old: TrainConfig, new: TrainConfig) -> None:
    """Refuse (one-line :class:`ConfigError`) a config that would make resuming ``old`` wrong.

    Compared: ``run.seed`` (the saved action histories replay the seeded games), every ``env.*``
    and ``model.*`` key, and ``ppo.num_envs``. The message names the first differing key.
    """
    old_d, new_d = old.to_dict(), new.to_dict()
    pairs = [(k, _get(old_d, k), _get(new_d, k)) for k in _COMPAT_KEYS]
    for section in _COMPAT_SECTIONS:
        pairs += config_leaves(section, old_d[section], new_d[section])
    for key, was, now in config_diffs(pairs)[:1]:
        raise ConfigError(
            f"cannot resume: {key} differs (checkpoint {_show(was)}, now {_show(now)})"
        )


# ------------------------------------------------------------------ helpers
def _saved_config(ckpt: CheckpointPayload, path: Path) -> TrainConfig:
    """The config a checkpoint was trained with."""
    data = ckpt.config
    if not isinstance(data, dict):
        raise ConfigError(f"checkpoint {str(path)!r} holds no training config")
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"checkpoint {str(path)!r}: its config cannot be read here: {e}") from e


def _with_allowed_overrides(saved: TrainConfig, overrides: list[str]) -> TrainConfig:
    """``saved`` with ``key=value`` overrides of :data:`RESUME_SETTABLE_KEYS` only, validated."""
    data = saved.to_dict()
    for (key, value), text in zip(parse_overrides(overrides), overrides, strict=True):
        if key not in RESUME_SETTABLE_KEYS:
            raise ConfigError(
                f"--set {text.strip()}: cannot change an experiment key when resuming "
                f"(allowed: {', '.join(RESUME_SETTABLE_KEYS)}; to continue into another config, "
                "give --config)"
            )
        section, name = key.split(".", 1)
        data[section][name] = value
    cfg = config_from_dict(data)
    cfg.validate()
    return cfg


def _own_run_dir(target: Path, ckpt_path: Path, cfg: TrainConfig) -> Path:
    """The run a target belongs to: the directory given, the run holding a checkpoint file, or
    (a checkpoint outside any run, e.g. a shipped one) the directory its saved name points to."""
    if target.is_dir():
        return target
    run = RunDir.of_checkpoint(ckpt_path)
    if run is not None and run.is_run():
        return run.path
    return _named_run_dir(cfg)


def _named_run_dir(cfg: TrainConfig) -> Path:
    """``run.out_dir / run.name``: where a config's run is written."""
    return Path(cfg.run.out_dir) / cfg.run.name


def _get(d: dict[str, Any], dotted: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"``."""
    section, name = dotted.split(".", 1)
    return d[section].get(name)


def _show(v: Any) -> str:
    """A value as the message shows it (tuples as lists, like the YAML config)."""
    return repr(list(v) if isinstance(v, tuple) else v)
