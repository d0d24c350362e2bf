"""Creation and seeding of real NLE environments from :class:`EnvConfig`, and the
:class:`SeedPlan` by which each slot of a vector env seeds its episodes."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import nle  # noqa: F401  (registers the NetHack* gymnasium ids)
import numpy as np

log = logging.getLogger(__name__)

#: Observation keys the features read (nothing else is rendered or copied).
OBS_KEYS: tuple[str, ...] = ("glyphs", "blstats", "message", "tty_chars")

#: Tasks whose action set the hint bonus knows (NetHackScore's 23 actions).
_HINT_TASKS = ("NetHackScore-v0", "NetHackStaircase-v0", "NetHackStaircasePet-v0")
#: Tasks ``env.teacher`` can run on (the teacher's 23 actions).
TEACHER_TASKS: tuple[str, ...] = _HINT_TASKS
_ROLES = ("arc", "bar", "cav", "hea", "kni", "mon", "pri", "rog", "ran", "sam", "tou", "val", "wiz")
_RACES = ("hum", "elf", "dwa", "gno", "orc")
_ALIGNS = ("law", "neu", "cha")
_GENDERS = ("mal", "fem")
_CHAR_RE = re.compile(r"^(@|[a-z]{3})(-(@|[a-z]{3})){0,3}$")


def nle_task_ids() -> list[str]:
    """All NLE task ids registered with gymnasium (``NetHackScore-v0`` ...)."""
    return sorted(k for k in gym.envs.registry if k.startswith("NetHack"))


def validate_character(character: str) -> None:
    """Raise ``ValueError`` naming the bad part of an NLE character string (``mon-hum-neu-mal``)."""
    if not isinstance(character, str) or not _CHAR_RE.match(character):
        raise ValueError(
            f"env.character={character!r} is not of the form role-race-alignment-gender "
            f"(e.g. 'mon-hum-neu-mal', '@' for random parts)"
        )
    allowed = (_ROLES, _RACES, _ALIGNS, _GENDERS)
    what = ("role", "race", "alignment", "gender")
    for part, ok, name in zip(character.split("-"), allowed, what, strict=False):
        if part != "@" and part not in ok:
            raise ValueError(
                f"env.character={character!r}: unknown {name} {part!r}; allowed: {', '.join(ok)} or '@'"
            )


@dataclass
class EnvConfig:
    """Which NetHack task to play and how."""

    task: str = "NetHackScore-v0"
    """Registered NLE gymnasium id (NetHackScore-v0, NetHackChallenge-v0, NetHackStaircase-v0 ...)."""
    max_episode_steps: int = 500
    """Episode cap in env steps; hitting it truncates the episode (not death)."""
    character: str = "mon-hum-neu-mal"
    """NLE character string role-race-alignment-gender."""
    fix_moon_phase: bool = True
    """Fix the moon phase so that a seeded game is reproducible (PROTOCOL.md)."""
    crop_size: int = 9
    """Side of the egocentric glyph crop (odd)."""
    penalty_step: float = -0.01
    """NLE's penalty per step that does not advance the game clock (NetHackScore default)."""
    descend_bonus: float = 0.0
    """Reward shaping: extra reward for each new deepest level (documented; score is unaffected)."""
    reward_scale: float = 1.0
    """Multiplier on the env reward before shaping (score is unaffected)."""
    explore_bonus: float = 0.0
    """Reward shaping: reward per cell of a level the hero stands on for the first time."""
    hint_bonus: float = 0.0
    """Reward shaping: reward for taking the move the navigation hint advises."""
    stairs_bonus: float = 0.0
    """Reward shaping: reward per step of shortest-path progress toward the known down stairs
    (a potential difference: going back costs what going forward earned)."""
    teacher: bool = False
    """Compute the scripted teacher's action and branch for every observation in the env workers
    (``nethack_moe.envs.teacher``; the vector env's ``teacher_action``/``teacher_branch``). Never a
    policy input; off, nothing changes."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and the allowed values."""
        ids = nle_task_ids()
        if self.task not in ids:
            raise ValueError(
                f"env.task={self.task!r} is not a registered NLE task; allowed: {', '.join(ids)}"
            )
        if not isinstance(self.max_episode_steps, int) or self.max_episode_steps <= 0:
            raise ValueError(
                f"env.max_episode_steps={self.max_episode_steps!r} must be a positive integer"
            )
        validate_character(self.character)
        if self.crop_size < 3 or self.crop_size % 2 == 0:
            raise ValueError(f"env.crop_size={self.crop_size!r} must be an odd integer >= 3")
        if self.hint_bonus and self.task not in _HINT_TASKS:
            raise ValueError(
                f"env.hint_bonus needs the 23-action set of {', '.join(_HINT_TASKS)}; env.task={self.task!r}"
            )
        if self.teacher and self.task not in _HINT_TASKS:
            raise ValueError(
                f"env.teacher needs the 23-action set of {', '.join(_HINT_TASKS)}; env.task={self.task!r}"
            )
        if self.reward_scale <= 0:
            raise ValueError(f"env.reward_scale={self.reward_scale!r} must be > 0")


def make_env(
    cfg: EnvConfig, extra_keys: tuple[str, ...] = (), savedir: str | Path | None = None
) -> Any:
    """Create one NLE env from config (validated first).

    ``extra_keys``: observation keys besides :data:`OBS_KEYS` (e.g. ``tty_colors`` for replays).
    ``savedir``: NLE records every episode there as a ttyrec file (its own recorder).
    """
    cfg.validate()
    kwargs: dict = dict(
        observation_keys=OBS_KEYS + tuple(k for k in extra_keys if k not in OBS_KEYS),
        # one more than our cap: the vector env truncates first, while blstats are still valid
        max_episode_steps=cfg.max_episode_steps + 1,
        character=cfg.character,
        fix_moon_phase=cfg.fix_moon_phase,
    )
    if savedir is not None:
        Path(savedir).mkdir(parents=True, exist_ok=True)
        kwargs.update(savedir=str(savedir), save_ttyrec_every=1)
    if cfg.task in ("NetHackScore-v0", "NetHackStaircase-v0", "NetHackStaircasePet-v0"):
        kwargs["penalty_step"] = cfg.penalty_step
    # Build the NLE class directly: gym.make would swallow ``max_episode_steps`` into a TimeLimit
    # wrapper instead of NLE's own cap, and add checker wrappers to the hot path.
    spec = gym.spec(cfg.task)
    entry = spec.entry_point
    creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    assert creator is not None, f"{cfg.task} has no entry point"
    env: Any = creator(**{**spec.kwargs, **kwargs})
    nh_obj = env.unwrapped.nethack
    for name in ("set_initial_seeds", "set_current_seeds", "get_current_seeds"):
        # NetHackChallenge-v0 shadows the seeding methods with functions that raise (a competition
        # rule); drop the shadows so that training and evaluation stay reproducible.
        if name in vars(nh_obj):
            delattr(nh_obj, name)
    return env


def seed_env(env: gym.Env, core: int, disp: int) -> None:
    """Seed the game itself (``reset(seed=)`` alone does not seed NetHack in nle 1.3.0).

    NetHackChallenge-v0 refuses seed changes (a competition rule); for reproducible training and
    evaluation we seed it through the base NLE class like every other task.
    """
    from nle.env.base import NLE

    NLE.seed(env.unwrapped, int(core), int(disp), False)


_EVAL_LO, _EVAL_HI = 0, 2**32


def train_seeds(base_seed: int, env_index: int, episode: int) -> tuple[int, int]:
    """Core/disp seeds for the ``episode``-th game of env slot ``env_index`` in training.

    Derived with NumPy's SeedSequence, then shifted above 2**32, so they can never equal the
    evaluation seeds (``100000 + i``, PROTOCOL.md) and do not depend on how envs map to workers.
    """
    ss = np.random.SeedSequence([int(base_seed) & 0xFFFFFFFF, int(env_index), int(episode)])
    core, disp = ss.generate_state(2, dtype=np.uint32)
    return int(core) + 2**32, int(disp) + 2**32


def eval_seeds(seed_start: int, i: int) -> tuple[int, int]:
    """Evaluation seeds: ``core = disp = seed_start + i`` (E200: seed_start = 100000)."""
    return seed_start + i, seed_start + i


@dataclass(frozen=True)
class SeedPlan:
    """How env slot ``i`` seeds its ``k``-th episode.

    ``mode="train"``: :func:`train_seeds` of (base, i, k). ``mode="eval"``: the evaluation seed
    ``start + i + k * stride`` (stride = number of envs), so N envs share the E200 seed list.
    ``offset`` shifts the slots (slot ``i`` seeds as slot ``offset + i``): a torchrun rank with
    envs ``r*n .. r*n+n-1`` of the run's N plays the same games as those slots of one process.
    """

    mode: str = "train"
    base: int = 0
    stride: int = 1
    offset: int = 0

    def seeds(self, env_index: int, episode: int) -> tuple[int, int]:
        i = self.offset + env_index
        if self.mode == "train":
            return train_seeds(self.base, i, episode)
        if self.mode == "eval":
            return eval_seeds(self.base, i + episode * self.stride)
        raise ValueError(f"unknown seed mode {self.mode!r}")
