"""Watching a policy play: its screens, frame by frame (``nethack-moe watch``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.config.train import TrainConfig
from nethack_moe.evaluation.frames import play_frames
from nethack_moe.evaluation.loading import action_names
from nethack_moe.evaluation.players import ModelPlayer
from nethack_moe.evaluation.runner import E200_SEED_START
from nethack_moe.models.policy import ActorCritic

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ watch
def tty_text(tty_chars: np.ndarray) -> str:
    """The terminal screen (``[24, 80]`` bytes) as text lines."""
    rows = np.asarray(tty_chars, dtype=np.uint8)
    return "\n".join(bytes(r).decode("latin-1").rstrip() for r in rows)


def watch_frames(
    model: ActorCritic,
    cfg: TrainConfig,
    seed: int = E200_SEED_START,
    steps: int | None = None,
    greedy: bool = False,
    policy_seed: int = 0,
    ttyrec_dir: str | Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Play one episode in an in-process env (seeds ``core = disp = seed``) and yield one frame per
    step: ``step, screen`` (tty text before the action), ``alpha`` (list), ``expert_names``,
    ``action`` (index), ``action_name``, ``reward``, ``score`` (gain so far), ``done``.

    The frames of :func:`nethack_moe.evaluation.frames.play_frames`, acting through the same
    :class:`ModelPlayer` as :func:`rollout`, so the episode is the evaluation episode of ``seed``.
    """
    names, _ = action_names(cfg.env)
    player = ModelPlayer(model, greedy=greedy, policy_seed=policy_seed)
    frames = play_frames(
        player, cfg.env, seed, steps=steps, ttyrec_dir=ttyrec_dir, final_screen=True
    )
    for fr in frames:
        yield {
            "step": fr.step,
            "screen": tty_text(fr.chars),
            "alpha": fr.alpha,
            "expert_names": list(model.expert_names),
            "action": fr.action,
            "action_name": names[fr.action],
            "reward": fr.reward,
            "score": fr.score,
            "done": fr.done,
            "died": fr.died,
            "final_screen": tty_text(fr.final_chars) if fr.final_chars is not None else None,
        }
