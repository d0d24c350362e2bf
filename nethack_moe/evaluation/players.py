"""Players: whatever chooses the actions in the evaluation rollout loop.

A :class:`Player` is told when an env slot starts an episode (with the episode's seed) and then
maps a batch of observations to actions. The rollout loop of :mod:`nethack_moe.evaluation` plays
any player on exactly the evaluation seeds, so a learned policy and the baselines are measured on
the same games:

* :class:`ModelPlayer`: a checkpoint's policy through :func:`nethack_moe.models.acting.act` (the acting
  function the trainer uses), sampled with one Gumbel generator per episode or greedy; optionally
  with the router forced to one expert (interventions), the encoding edited (reliance: ``h_graph``
  or ``h_state`` replaced while playing) or the observation edited (hint inputs zeroed);
* :class:`RandomPlayer`: uniform over the actions (PROTOCOL.md, "Baselines");
* :class:`HintFollower`: the navigation hint's move, ``>`` on the known stairs, prompts answered,
  5 % uniformly random moves (PROTOCOL.md, "Baselines");
* :class:`DiverPlayer`: the scripted teacher (:mod:`nethack_moe.envs.teacher`), whose action the env
  workers compute beside the hint (``env.teacher``); players receive it as a :class:`Teacher`.

Every random choice comes from a generator seeded by ``(policy_seed, episode seed)``, so an
episode's actions depend only on the player, its seed and the policy seed, not on how many envs
play the evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from nethack_moe import features as F
from nethack_moe.envs.shaping import hint_action
from nethack_moe.game.actions import MORE_ACTION, SEARCH_ACTION, WAIT_ACTION
from nethack_moe.models.acting import Obs, Teacher, act, gumbel_noise_rows
from nethack_moe.models.policy import ActorCritic, Encoded, PolicyOutput

#: Names accepted by ``evaluate --baseline``.
BASELINES: tuple[str, ...] = ("random", "hint-follower", "diver")

#: Columns of the state vector that carry the navigation hint (the ``nav_*`` features).
HINT_COLUMNS: np.ndarray = np.array(F.HINT_STATE_COLUMNS, dtype=np.int64)

#: Share of the hint follower's steps that are uniformly random moves.
FOLLOWER_RANDOM_SHARE = 0.05


def episode_seed_sequence(policy_seed: int, seed: int) -> np.random.SeedSequence:
    """The seed sequence of one episode's random choices (policy seed, episode seed)."""
    return np.random.SeedSequence([int(policy_seed) & 0xFFFFFFFF, int(seed) & 0xFFFFFFFFFFFF])


def episode_generator(policy_seed: int, seed: int) -> torch.Generator:
    """The torch generator of one episode's Gumbel noise (sampled actions)."""
    ss = episode_seed_sequence(policy_seed, seed)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return g


#: ``[B]`` action id the navigation hint advises (``-1`` without a hint; the hint's 9th entry,
#: "descend here", is ``>``): the shaping module's function, under the name players use.
hint_actions = hint_action


def zero_hint(obs: Obs) -> Obs:
    """``obs`` with the hint columns of the state vector (``nav_*``) set to zero."""
    state = obs.state.clone()
    state[:, torch.from_numpy(HINT_COLUMNS).to(state.device)] = 0
    return obs._replace(state=state)


@dataclass
class Choice:
    """What a player returns for one batch: the actions, and the forward pass of a learned
    policy (``None`` for rule players)."""

    action: np.ndarray
    """``[B]`` int64 actions."""
    out: PolicyOutput | None = None


class Player(Protocol):
    """Chooses the actions of a batch of env slots (see the module docstring)."""

    name: str
    expert_names: list[str]
    """The experts whose weights :attr:`Choice.out` carries (empty for rule players)."""
    routing: str | None
    temperature: float | None
    needs_teacher: bool
    """Whether :meth:`choose` needs the teacher's advice (the env must run with ``env.teacher``)."""

    def start_episode(self, slot: int, seed: int | None) -> None:
        """Slot ``slot`` starts the episode of ``seed`` (``None``: the slot's episodes are
        discarded from now on)."""

    def choose(self, obs: Obs, teacher: Teacher | None = None) -> Choice:
        """Actions for every slot of ``obs`` (CPU tensors); ``teacher``: the teacher's advice for
        the same observations, when the env computes it."""


class _SlotGenerators:
    """One generator per env slot, reseeded at the start of each episode."""

    def __init__(self, make: Callable[[int, int], Any], policy_seed: int) -> None:
        self.make, self.policy_seed = make, policy_seed
        self.gens: list[Any] = []

    def start(self, slot: int, seed: int | None) -> None:
        """Fresh generator for ``slot`` (None when the slot idles)."""
        while len(self.gens) <= slot:
            self.gens.append(None)
        self.gens[slot] = None if seed is None else self.make(self.policy_seed, seed)

    def rows(self, n: int) -> list[Any]:
        """The generators of slots ``0 .. n-1``."""
        return [self.gens[i] if i < len(self.gens) else None for i in range(n)]


def _np_episode_generator(policy_seed: int, seed: int) -> np.random.Generator:
    return np.random.default_rng(episode_seed_sequence(policy_seed, seed))


@dataclass
class ModelPlayer:
    """A learned policy, acting through :func:`nethack_moe.models.acting.act`.

    ``greedy``: argmax actions, else Gumbel-max samples with one generator per episode seeded by
    ``(policy_seed, seed)``. ``expert``: the router forced to this one expert (one-hot α).
    ``edit``: applied to the encoding before the heads (reliance while playing). ``obs_edit``:
    applied to the observation (e.g. :func:`zero_hint`).
    """

    model: ActorCritic
    greedy: bool = False
    policy_seed: int = 0
    routing: str | None = None
    temperature: float | None = None
    expert: int | None = None
    edit: Callable[[Encoded], Encoded] | None = None
    obs_edit: Callable[[Obs], Obs] | None = None
    name: str = "policy"
    expert_names: list[str] = field(default_factory=list)
    needs_teacher: bool = False
    _gens: _SlotGenerators = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.routing = self.routing or self.model.cfg.routing
        t = self.temperature
        self.temperature = float(t if t is not None else self.model.cfg.temperature)
        self.expert_names = list(self.model.expert_names)
        if self.expert is not None and not 0 <= self.expert < self.model.n_experts:
            raise ValueError(f"expert {self.expert} of {self.model.n_experts}")
        self._gens = _SlotGenerators(episode_generator, self.policy_seed)

    def start_episode(self, slot: int, seed: int | None) -> None:
        """New Gumbel generator for the slot's episode."""
        self._gens.start(slot, seed)

    def _alpha_override(self, n: int, device: torch.device) -> Tensor | None:
        if self.expert is None:
            return None
        a = torch.zeros(n, self.model.n_experts, device=device)
        a[:, self.expert] = 1.0
        return a

    def choose(self, obs: Obs, teacher: Teacher | None = None) -> Choice:
        """One :func:`act` call on the batch (the teacher's advice is not an input)."""
        dev = next(self.model.parameters()).device
        o = obs.to(dev)
        if self.obs_edit is not None:
            o = self.obs_edit(o)
        n = int(o.state.shape[0])
        noise = None if self.greedy else gumbel_noise_rows(self.model.n_actions, self._gens.rows(n))
        with torch.no_grad():
            r = act(self.model, o, self.routing, self.temperature, noise=noise,
                    alpha_override=self._alpha_override(n, dev), edit=self.edit)  # fmt: skip
        return Choice(r.action.cpu().numpy().astype(np.int64), r.out)


@dataclass
class RandomPlayer:
    """Uniform over the ``n_actions`` actions, one generator per episode."""

    n_actions: int
    policy_seed: int = 0
    name: str = "random"
    expert_names: list[str] = field(default_factory=list)
    routing: str | None = None
    temperature: float | None = None
    needs_teacher: bool = False
    _gens: _SlotGenerators = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._gens = _SlotGenerators(_np_episode_generator, self.policy_seed)

    def start_episode(self, slot: int, seed: int | None) -> None:
        """New generator for the slot's episode."""
        self._gens.start(slot, seed)

    def choose(self, obs: Obs, teacher: Teacher | None = None) -> Choice:
        """A uniform action per live slot (0 for idle slots)."""
        gens = self._gens.rows(int(obs.state.shape[0]))
        return Choice(np.array([0 if g is None else int(g.integers(self.n_actions)) for g in gens]))


@dataclass
class HintFollower:
    """The rule the features already encode (PROTOCOL.md, "Baselines").

    In order, later rules override earlier ones: the hinted move (``SEARCH`` without a hint); ``>``
    on the known stairs (the hint's 9th entry); with probability ``random_share`` a uniformly
    random move (one of the 8 directions); a ``--More--`` prompt answered with ``MORE`` (Enter) and
    a question with ``WAIT`` (``.``), the keys of the test follower in ``tests/test_navigation.py``.
    Action ids are those of NetHackScore-v0's 23 actions.
    """

    policy_seed: int = 0
    random_share: float = FOLLOWER_RANDOM_SHARE
    name: str = "hint-follower"
    expert_names: list[str] = field(default_factory=list)
    routing: str | None = None
    temperature: float | None = None
    needs_teacher: bool = False
    _gens: _SlotGenerators = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._gens = _SlotGenerators(_np_episode_generator, self.policy_seed)

    def start_episode(self, slot: int, seed: int | None) -> None:
        """New generator for the slot's episode."""
        self._gens.start(slot, seed)

    def choose(self, obs: Obs, teacher: Teacher | None = None) -> Choice:
        """The follower's action per slot."""
        state = obs.state.cpu().numpy()
        atoms = obs.atoms.cpu().numpy().astype(bool)
        hint = hint_actions(state)
        a = np.where(hint >= 0, hint, SEARCH_ACTION).astype(np.int64)
        for i, g in enumerate(self._gens.rows(len(a))):
            if g is not None:
                u, move = g.random(), int(g.integers(1, 9))  # two draws every step: reproducible
                if u < self.random_share:
                    a[i] = move
        a = np.where(atoms[:, F.ATOM_INDEX["more_prompt"]], MORE_ACTION, a)
        a = np.where(atoms[:, F.ATOM_INDEX["question_prompt"]], WAIT_ACTION, a)
        return Choice(a)


@dataclass
class DiverPlayer:
    """The scripted stair-diver (:mod:`nethack_moe.envs.teacher`): plays the teacher's action, which
    the env workers compute from each observation (``env.teacher``). Deterministic."""

    name: str = "diver"
    expert_names: list[str] = field(default_factory=list)
    routing: str | None = None
    temperature: float | None = None
    needs_teacher: bool = True

    def start_episode(self, slot: int, seed: int | None) -> None:
        """Nothing to do: the teacher's memory lives in the env workers."""

    def choose(self, obs: Obs, teacher: Teacher | None = None) -> Choice:
        """The teacher's action per slot."""
        if teacher is None:
            raise ValueError("the diver plays the teacher's action: run the env with env.teacher")
        a = teacher.action.cpu().numpy().astype(np.int64)
        if (a < 0).any():
            raise ValueError("the teacher gave no action for some slot (is env.teacher on?)")
        return Choice(a)


def make_baseline(name: str, n_actions: int, policy_seed: int = 0) -> Player:
    """The baseline player ``name`` (one of :data:`BASELINES`)."""
    if name == "random":
        return RandomPlayer(n_actions, policy_seed)
    if name == "hint-follower":
        return HintFollower(policy_seed)
    if name == "diver":
        return DiverPlayer()
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
