"""Loading a checkpoint for play: the policy, its config, its routing at the checkpoint and the
task's action names."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nethack_moe.config.train import TrainConfig, config_from_dict
from nethack_moe.core.device import resolve_device
from nethack_moe.envs.factory import EnvConfig, make_env
from nethack_moe.features import FeatureSpec
from nethack_moe.game.actions import action_label
from nethack_moe.models.policy import ActorCritic, build_model
from nethack_moe.runs.checkpoint import CheckpointError, CheckpointPayload, load_payload

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ loading
def _resolve_device(device: str | torch.device) -> torch.device:

    return device if isinstance(device, torch.device) else resolve_device(str(device))


def load_policy(
    path: str | Path,
    device: str | torch.device = "cpu",
    routing: str | None = None,
    temperature: float | None = None,
) -> tuple[ActorCritic, TrainConfig, CheckpointPayload]:
    """Load a checkpoint safely and rebuild its policy (eval mode) from its own config.

    The routing kind and temperature the checkpoint was last trained with
    (:func:`checkpoint_routing`) become the model's defaults (``model.cfg.routing`` /
    ``model.cfg.temperature``) unless ``routing`` / ``temperature`` override them.

    Raises :class:`CheckpointError` (one line) for a missing, unsafe, corrupt or inconsistent file.
    """
    ckpt = load_payload(path, map_location="cpu")
    for key, value in (("config", ckpt.config), ("model", ckpt.model)):
        if value is None:
            raise CheckpointError(f"checkpoint {str(path)!r} has no {key!r} entry")
    assert ckpt.config is not None and ckpt.model is not None
    try:
        cfg = config_from_dict(ckpt.config)
        cfg.validate()
    except ValueError as e:  # ConfigError is a ValueError
        raise CheckpointError(f"checkpoint {str(path)!r} holds an unusable config ({e})") from e
    n_actions = ckpt.n_actions
    if n_actions is None:
        probe = make_env(cfg.env)
        n_actions = int(probe.action_space.n)  # type: ignore[attr-defined]
        probe.close()
    spec = FeatureSpec(crop_size=cfg.env.crop_size)
    model = build_model(cfg.model, spec, int(n_actions))
    try:
        model.load_state_dict(ckpt.model)
    except (RuntimeError, KeyError, TypeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        raise CheckpointError(
            f"checkpoint {str(path)!r}: its weights do not fit the model this version of "
            f"nethack-moe builds from its config ({why})"
        ) from e
    trained = checkpoint_routing(ckpt, cfg)
    if trained.source == "curriculum" and (routing is None or temperature is None):
        log.warning(
            "%s has no routing entry: using the curriculum's routing at episode %d (%s, T=%.3g), "
            "which at a phase boundary may differ from what the policy was trained with",
            path, checkpoint_episode(ckpt), trained.kind, trained.temperature,
        )  # fmt: skip
    r = routing if routing is not None else trained.kind
    t = float(temperature) if temperature is not None else trained.temperature
    try:
        model.cfg = dataclasses.replace(model.cfg, routing=r, temperature=t).validate()
    except ValueError as e:
        raise CheckpointError(f"routing {r!r} / temperature {t!r}: {e}") from e
    model.to(_resolve_device(device))
    model.eval()
    return model, cfg, ckpt


@dataclass(frozen=True)
class TrainedRouting:
    """The routing a checkpoint's policy was last trained with, and where that came from."""

    kind: str
    temperature: float
    source: str
    """``"checkpoint"``: the ``routing`` entry the trainer writes (the values in force during the
    last rollout); ``"curriculum"``: derived from the episode count (older checkpoints)."""


def checkpoint_routing(ckpt: CheckpointPayload, cfg: TrainConfig) -> TrainedRouting:
    """The routing kind and temperature of the checkpoint's last rollout.

    Read from ``ckpt.routing = {"kind", "temperature"}`` when the trainer wrote it. Older
    checkpoints fall back to the curriculum at the checkpoint's episode count, which is off at a
    phase boundary (the count is taken after the last rollout): a warning says so.
    """
    entry = ckpt.routing
    if isinstance(entry, dict) and "kind" in entry and "temperature" in entry:
        try:
            return TrainedRouting(str(entry["kind"]), float(entry["temperature"]), "checkpoint")
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint routing entry {entry!r} is unusable ({e})") from e
    episode = checkpoint_episode(ckpt)
    phase = cfg.curriculum.phase_at(episode)
    return TrainedRouting(phase.routing, cfg.curriculum.temperature_at(episode), "curriculum")


def checkpoint_episode(ckpt: CheckpointPayload) -> int:
    """Completed training episodes when the checkpoint was written (0 when unknown)."""
    return ckpt.episodes


# ------------------------------------------------------------------------------------------ actions
def action_names(env_cfg: EnvConfig) -> tuple[list[str], list[Any]]:
    """Readable names of the env's actions (``N``, ``far N``, ``DOWN``, ``SEARCH`` ...) and the
    raw action enums, in the env's action order."""
    env = make_env(env_cfg)
    try:
        raw = list(env.unwrapped.actions)  # type: ignore[attr-defined]
    finally:
        env.close()
    return [action_label(a) for a in raw], raw
