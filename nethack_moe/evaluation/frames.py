"""One seeded episode played step by step as :class:`Frame` records, for the HTML replay and ``watch``.

:func:`play_frames` plays one episode in an in-process env (game seeds ``core = disp = seed``,
PROTOCOL.md) with any :class:`~nethack_moe.evaluation.players.Player` and yields a :class:`Frame`
per step: the 24x80 terminal (characters and colours) before the action, the experts' weights,
the policy's top :data:`TOP_K` actions, the hinted move, score, depth, HP and the step's reward;
:class:`EpisodeMeta` describes the episode as a whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nle import nethack as nh

from nethack_moe.envs import teacher as T
from nethack_moe.envs.factory import EnvConfig, make_env, seed_env
from nethack_moe.envs.shaping import hint_action
from nethack_moe.envs.teacher_memory import new_teacher_memory
from nethack_moe.evaluation.players import Player
from nethack_moe.features import FeatureSpec, MoveMemory, compute_features, new_memory
from nethack_moe.models.acting import Obs, Teacher

#: Actions listed per step (the policy's most probable).
TOP_K = 5


@dataclass
class Frame:
    """One step of an episode: what the player saw and did."""

    step: int
    chars: np.ndarray
    """``[24, 80]`` uint8 terminal characters before the action."""
    colors: np.ndarray
    """``[24, 80]`` int8 NetHack colours (0..15) of those characters."""
    action: int
    top: list[tuple[int, float]]
    """The policy's ``TOP_K`` most probable actions with their probabilities (rule players: the
    action taken with probability 1)."""
    alpha: list[float]
    """Expert weights (empty for rule players)."""
    hint: int
    """The action the navigation hint advises (-1: none)."""
    teacher: int
    """The scripted teacher's (diver's) action (-1: no teacher)."""
    branch: str
    """Why the teacher chose it (``fight``, ``explore``, ...; empty without a teacher)."""
    reward: float
    score: int
    """Score gained since the episode's start, after this step."""
    depth: int
    hp: int
    hp_max: int
    done: bool
    died: bool
    final_chars: np.ndarray | None = None
    """``[24, 80]`` the screen after the last step (``final_screen=True``, last frame only)."""


@dataclass
class EpisodeMeta:
    """What the replay page shows about the whole episode."""

    player: str
    seed: int
    greedy: bool
    expert_names: list[str]
    routing: str | None
    temperature: float | None
    action_names: list[str]
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _top(logits: torch.Tensor | None, action: int) -> list[tuple[int, float]]:
    if logits is None:
        return [(action, 1.0)]
    p = torch.softmax(logits.float(), dim=-1)
    v, i = torch.topk(p, min(TOP_K, p.numel()))
    return [(int(a), float(q)) for a, q in zip(i, v, strict=True)]


def play_frames(
    player: Player,
    env_cfg: EnvConfig,
    seed: int,
    steps: int | None = None,
    ttyrec_dir: str | Path | None = None,
    final_screen: bool = False,
    teacher: bool = False,
) -> Iterator[Frame]:
    """Play the episode of ``seed`` with ``player`` in one in-process env; a :class:`Frame` per
    step. ``ttyrec_dir``: NLE also records the game there as ttyrec files (its ``savedir``).
    ``final_screen``: the last frame also carries the screen after its step. ``teacher``: compute
    the scripted teacher's advice beside the features, as the env workers do with ``env.teacher``
    (always on for a player that needs it)."""
    teach = teacher or bool(getattr(player, "needs_teacher", False))
    tmem = new_teacher_memory(1) if teach else None
    env = make_env(env_cfg, extra_keys=("tty_colors",), savedir=ttyrec_dir)
    spec = FeatureSpec(crop_size=env_cfg.crop_size)
    cap = env_cfg.max_episode_steps if steps is None else min(int(steps), env_cfg.max_episode_steps)
    player.start_episode(0, seed)
    try:
        seed_env(env, seed, seed)
        obs, _ = env.reset()
        mem = new_memory(1)
        moves = MoveMemory(1, env.unwrapped.actions)  # as the env workers keep it
        score0 = int(obs["blstats"][nh.NLE_BL_SCORE])
        score = 0
        for t in range(cap):
            st, cr, at = compute_features(
                obs["glyphs"][None], obs["blstats"][None], obs["message"][None],
                obs["tty_chars"][None], spec, memory=mem,
            )  # fmt: skip
            moves.write(st, slice(0, 1))
            advice = None
            if tmem is not None:  # after the features: it reads their level memory
                ta, tb = T.compute_teacher(
                    obs["glyphs"][None], obs["blstats"][None], obs["message"][None], at, mem, tmem
                )
                advice = Teacher(torch.from_numpy(ta), torch.from_numpy(tb))
            choice = player.choose(Obs(*(torch.from_numpy(x) for x in (st, cr, at))), advice)
            a = int(choice.action[0])
            if tmem is not None:
                tmem.taken[0] = a  # the teacher learns what its last advice led to
            out = choice.out
            before = (obs["tty_chars"].copy(), obs["tty_colors"].copy(), obs["blstats"].copy())
            obs, r, term, trunc, _ = env.step(a)
            moves.record(0, a, before[2], obs["blstats"])
            done = bool(term or trunc) or t + 1 >= cap
            bl = before[2] if term else obs["blstats"]  # NLE zeroes blstats after the game ends
            if not term:
                score = int(obs["blstats"][nh.NLE_BL_SCORE]) - score0
            yield Frame(
                step=t,
                chars=before[0],
                colors=before[1],
                action=a,
                top=_top(None if out is None else out.logits[0], a),
                alpha=[] if out is None else [float(v) for v in out.alpha[0].cpu()],
                hint=int(hint_action(st)[0]),
                teacher=-1 if advice is None else int(advice.action[0]),
                branch="" if advice is None else T.branch_names(advice.branch.numpy())[0],
                reward=float(r) * env_cfg.reward_scale,
                score=score,
                depth=int(bl[nh.NLE_BL_DEPTH]),
                hp=int(bl[nh.NLE_BL_HP]),
                hp_max=int(bl[nh.NLE_BL_HPMAX]),
                done=done,
                died=bool(term),
                final_chars=obs["tty_chars"].copy() if done and final_screen else None,
            )
            if done:
                break
    finally:
        env.close()
