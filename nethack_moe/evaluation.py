"""Held-out evaluation of checkpoints (protocol E200 of ``PROTOCOL.md``).

* :func:`load_policy`: safe load of a checkpoint, the model rebuilt from its own config, with the
  routing kind and temperature in force at the checkpoint's episode count;
* :func:`rollout`: plays exactly ``episodes`` games on the evaluation seeds
  ``core = disp = seed_start + i`` (``i = 0 .. episodes-1``) over a :class:`VectorEnv`;
* :func:`evaluate`: one or more checkpoints → the evaluation JSON object (written to a file and, for a
  checkpoint in ``RUN/checkpoints/`` of a run directory (one with ``metrics.jsonl``), to ``RUN/eval/<stem>_E<n>[_greedy].json`` for the report);
* :func:`watch_frames`: one episode in an in-process env, frame by frame (``nethack-moe watch``).

**Sampling.** Actions are sampled by Gumbel-max with one ``torch.Generator`` per *episode*, seeded
from ``(policy_seed, seed)``: an episode's actions depend only on the checkpoint, its seed and the
policy seed, not on how many envs or workers play the evaluation, nor on whether the episode is a
retry. ``greedy=True`` takes the argmax instead.

**Robustness.** The vector env restarts a worker that dies or stops answering (``step_timeout``); the
episodes it was playing are lost there. They are detected (the env's episode counter jumps without
a finished record), reported, and played again once with the same seed in a fresh single-env
:class:`VectorEnv`. An episode that fails twice is listed in :attr:`RolloutResult.failed` (and in
the evaluation JSON): never silently left out of the statistics.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.analysis import metric_names as mn
from nethack_moe.analysis.routing import routing_figures, scenario_table
from nethack_moe.analysis.scenarios import SCENARIOS, label_scenarios, moved_from_trajectory
from nethack_moe.analysis.specialization import SpecializationReport, state_report
from nethack_moe.analysis.stats import summarize
from nethack_moe.checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint
from nethack_moe.config import TrainConfig, config_from_dict
from nethack_moe.envs.accounting import EpisodeRecord
from nethack_moe.envs.factory import TEACHER_TASKS, EnvConfig, make_env
from nethack_moe.envs.vector import SeedPlan, VectorEnv, WorkerError
from nethack_moe.features import FeatureSpec
from nethack_moe.models.policy import ActorCritic, build_model
from nethack_moe.players import (
    BASELINES,
    Choice,
    ModelPlayer,
    Player,
    check_action_set,
    hint_actions,
    make_baseline,
)
from nethack_moe.ppo.acting import Obs, Teacher
from nethack_moe.replay import play_frames

log = logging.getLogger(__name__)

#: E200 (PROTOCOL.md): 200 episodes on seeds 100000 .. 100199.
E200_EPISODES = 200
E200_SEED_START = 100000

RECORD_KEYS = ("seed", "score", "reward", "length", "depth", "died")


# ------------------------------------------------------------------------------------------ loading
def _resolve_device(device: str | torch.device) -> torch.device:
    from nethack_moe.ppo.trainer import resolve_device

    return device if isinstance(device, torch.device) else resolve_device(str(device))


def load_policy(
    path: str | Path,
    device: str | torch.device = "cpu",
    routing: str | None = None,
    temperature: float | None = None,
) -> tuple[ActorCritic, TrainConfig, dict[str, Any]]:
    """Load a checkpoint safely and rebuild its policy (eval mode) from its own config.

    The routing kind and temperature the checkpoint was last trained with
    (:func:`checkpoint_routing`) become the model's defaults (``model.cfg.routing`` /
    ``model.cfg.temperature``) unless ``routing`` / ``temperature`` override them.

    Raises :class:`CheckpointError` (one line) for a missing, unsafe, corrupt or inconsistent file.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    for key in ("config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {str(path)!r} has no {key!r} entry")
    try:
        cfg = config_from_dict(ckpt["config"])
        cfg.validate()
    except ValueError as e:  # ConfigError is a ValueError
        raise CheckpointError(f"checkpoint {str(path)!r} holds an unusable config ({e})") from e
    n_actions = ckpt.get("n_actions")
    if n_actions is None:
        probe = make_env(cfg.env)
        n_actions = int(probe.action_space.n)  # type: ignore[attr-defined]
        probe.close()
    spec = FeatureSpec(crop_size=cfg.env.crop_size)
    model = build_model(cfg.model, spec, int(n_actions))
    try:
        model.load_state_dict(ckpt["model"])
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


def checkpoint_routing(ckpt: dict[str, Any], cfg: TrainConfig) -> TrainedRouting:
    """The routing kind and temperature of the checkpoint's last rollout.

    Read from ``ckpt["routing"] = {"kind", "temperature"}`` when the trainer wrote it. Older
    checkpoints fall back to the curriculum at the checkpoint's episode count, which is off at a
    phase boundary (the count is taken after the last rollout): a warning says so.
    """
    entry = ckpt.get("routing")
    if isinstance(entry, dict) and "kind" in entry and "temperature" in entry:
        try:
            return TrainedRouting(str(entry["kind"]), float(entry["temperature"]), "checkpoint")
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint routing entry {entry!r} is unusable ({e})") from e
    episode = checkpoint_episode(ckpt)
    phase = cfg.curriculum.phase_at(episode)
    return TrainedRouting(phase.routing, cfg.curriculum.temperature_at(episode), "curriculum")


def checkpoint_episode(ckpt: dict[str, Any]) -> int:
    """Completed training episodes when the checkpoint was written (0 when unknown)."""
    counters = ckpt.get("counters") or {}
    try:
        return int(counters.get("episodes", 0))
    except (TypeError, ValueError):
        return 0


# ------------------------------------------------------------------------------------------ actions
def action_names(env_cfg: EnvConfig) -> tuple[list[str], list[Any]]:
    """Readable names of the env's actions (``N``, ``far N``, ``DOWN``, ``SEARCH`` ...) and the
    raw action enums, in the env's action order."""
    env = make_env(env_cfg)
    try:
        raw = list(env.unwrapped.actions)  # type: ignore[attr-defined]
    finally:
        env.close()
    names = []
    for a in raw:
        kind = type(a).__name__
        name = getattr(a, "name", str(a))
        names.append(f"far {name}" if kind == "CompassDirectionLonger" else name)
    return names, raw


def action_index(raw_actions: Sequence[Any], action: Any) -> int | None:
    """Index of ``action`` (an ``nle.nethack.actions`` enum) in the env's list, ``None`` if absent."""
    for i, a in enumerate(raw_actions):
        if a == action and type(a) is type(action):
            return i
    return None


# ------------------------------------------------------------------------------------------ results
#: Integer columns logged per state (:class:`StateLog`), in this order.
_INT_COLUMNS = ("x", "y", "depth", "action", "step", "hp", "exp", "visited", "hint")
#: The teacher's columns (:class:`StateLog`; ``-1`` where the env ran without ``env.teacher``).
_TEACHER_COLUMNS = ("teacher_action", "teacher_branch")


@dataclass
class StateLog:
    """Per-step data of the played episodes, rows grouped by episode (seed order), time order
    within an episode; row ``t`` is the state before the action of step ``t``.

    ``alpha`` is ``[S, E]`` (``E = 0`` for rule players). ``hp`` / ``exp``: hit points and experience
    points (blstats); ``visited``: cells of the current level the hero has stood on (the feature
    memory); ``hint``: the action the navigation hint advises (``-1``: none). ``state`` / ``crop``:
    the policy inputs, kept only with ``keep_obs`` (reliance figures). ``expert_probs_sum[e, a]``:
    sum over the rows of expert e's softmax. ``teacher_action`` / ``teacher_branch``: the scripted
    teacher's advice for the state and why (an index into :data:`nethack_moe.teacher.BRANCHES`),
    ``-1`` where the env ran without ``env.teacher`` (``None``: not logged at all).
    """

    alpha: np.ndarray
    atoms: np.ndarray
    x: np.ndarray
    y: np.ndarray
    depth: np.ndarray
    action: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    hp: np.ndarray
    exp: np.ndarray
    visited: np.ndarray
    hint: np.ndarray
    expert_probs_sum: np.ndarray
    policy_probs_sum: np.ndarray
    state: np.ndarray | None = None
    crop: np.ndarray | None = None
    teacher_action: np.ndarray | None = None
    teacher_branch: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.alpha.shape[0])

    def expert_action_distribution(self) -> np.ndarray:
        """``[E, A]``: each expert's softmax over actions, averaged over the states."""
        return self.expert_probs_sum / max(self.n, 1)

    def policy_action_distribution(self) -> np.ndarray:
        """``[A]``: the mixed policy's softmax, averaged over the states."""
        return self.policy_probs_sum / max(self.n, 1)

    def obs(self) -> Obs:
        """The logged policy inputs as an :class:`Obs` (needs ``keep_obs``)."""
        if self.state is None or self.crop is None:
            raise ValueError("the rollout did not keep the observations (keep_obs=False)")
        return Obs(
            torch.from_numpy(self.state), torch.from_numpy(self.crop), torch.from_numpy(self.atoms)
        )

    def select(self, rows: np.ndarray) -> StateLog:
        """The rows ``rows`` (bool mask or indices); the action-distribution sums are kept whole."""
        kw = {
            f.name: (v[rows] if isinstance(v, np.ndarray) and f.name not in _SUM_FIELDS else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }
        return StateLog(**kw)


_SUM_FIELDS = ("expert_probs_sum", "policy_probs_sum")


@dataclass
class RolloutResult:
    """What :func:`play` returns; ``records`` are ordered by seed."""

    records: list[dict[str, Any]]
    seed_start: int
    episodes: int
    greedy: bool
    policy_seed: int
    routing: str | None
    temperature: float | None
    expert_names: list[str]
    action_names: list[str]
    search_action: int | None
    descend_action: int | None
    player: str = "policy"
    retried: list[int] = field(default_factory=list)
    """Seeds whose first attempt crashed (played again once)."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """``{"seed", "errors"}`` of episodes that failed twice (not in ``records``)."""
    states: StateLog | None = None
    wall_s: float = 0.0
    env_steps: int = 0


@dataclass
class _Episode:
    """Per-step rows of one episode in progress."""

    ints: list[np.ndarray] = field(default_factory=list)
    alpha: list[np.ndarray] = field(default_factory=list)
    atoms: list[np.ndarray] = field(default_factory=list)
    state: list[np.ndarray] = field(default_factory=list)
    crop: list[np.ndarray] = field(default_factory=list)
    expert_sum: np.ndarray | None = None
    policy_sum: np.ndarray | None = None


def _record(idx: int, seed_start: int, e: EpisodeRecord, retried: bool) -> dict[str, Any]:
    if e.seed_core != seed_start + idx:
        raise RuntimeError(f"episode record has seed {e.seed_core}, expected {seed_start + idx}")
    return {
        "seed": int(e.seed_core),
        "score": int(e.score),
        "reward": float(e.reward),
        "length": int(e.length),
        "depth": int(e.depth),
        "died": bool(e.died),
        "retried": bool(retried),
    }


@dataclass
class _PassOptions:
    """What every :class:`_Pass` of one :func:`play` call shares."""

    player: Player
    env_cfg: EnvConfig
    seed_start: int
    collect: bool
    keep_obs: bool
    step_timeout: float


class _Pass:
    """One VectorEnv playing the seed indices ``first + i + k * stride`` (< ``limit``) in slot i."""

    def __init__(
        self, o: _PassOptions, first: int, limit: int, n_envs: int, stride: int, n_workers: int,
        max_restarts: int,
    ) -> None:  # fmt: skip
        self.o, self.player = o, o.player
        self.seed_start, self.first, self.limit = o.seed_start, first, limit
        self.n, self.stride, self.n_workers = n_envs, stride, n_workers
        self.max_restarts = max_restarts
        self.completed: dict[int, tuple[EpisodeRecord, _Episode]] = {}
        self.crashed: dict[int, str] = {}
        self.unplayed: list[int] = []
        self.env_steps = 0

    def idx(self, slot: int, k: int) -> int:
        return self.first + slot + k * self.stride

    def run(self, on_done: Any = None) -> None:
        """Play until every slot is past ``limit``; fills completed / crashed / unplayed."""
        n = self.n
        k = np.zeros(n, np.int64)  # episode number of each slot (the env's episode_count)
        try:
            venv = VectorEnv(
                self.o.env_cfg,
                n,
                self.n_workers,
                SeedPlan("eval", base=self.seed_start + self.first, stride=self.stride),
                step_timeout=self.o.step_timeout,
                max_restarts=self.max_restarts,
            )
        except WorkerError as e:
            log.warning("could not start the env workers: %s", e)
            self.unplayed = list(range(self.first, self.limit))
            return
        buf = venv.buf
        obs = Obs(*(torch.from_numpy(a) for a in (buf.state, buf.crop, buf.atoms)))
        teacher = None  # the teacher's advice beside the observation, when the env computes it
        if self.o.env_cfg.teacher:
            teacher = Teacher(
                torch.from_numpy(buf.teacher_action), torch.from_numpy(buf.teacher_branch)
            )
        eps: list[_Episode | None] = [None] * n

        def start(slot: int) -> None:
            i = self.idx(slot, int(k[slot]))
            live = i < self.limit
            eps[slot] = _Episode() if live else None
            self.player.start_episode(slot, self.seed_start + i if live else None)

        for s in range(n):
            start(s)
        try:
            while any(e is not None for e in eps):
                choice = self.player.choose(obs, teacher)
                act = choice.action
                if self.o.collect:
                    self._log_states(choice, buf, eps)
                venv.step(act)
                self.env_steps += n
                ended = {r.env_index: r for r in venv.finished()}
                counts = buf.episode_count
                for s in range(n):
                    new_k = int(counts[s])
                    if new_k == k[s]:
                        continue
                    rec = ended.get(s)
                    lost = range(int(k[s]) + (1 if rec is not None else 0), new_k)
                    if rec is not None:
                        i = self.idx(s, int(k[s]))
                        ep = eps[s]
                        if i < self.limit and ep is not None:
                            self.completed[i] = (rec, ep)
                            if on_done is not None:
                                on_done()
                    for kk in lost:
                        i = self.idx(s, kk)
                        if i < self.limit:
                            self.crashed[i] = (
                                f"env worker restarted (restart #{venv.worker_restarts}); "
                                "the episode was lost"
                            )
                            log.warning(
                                "episode on seed %d lost to an env worker crash or timeout; "
                                "it will be played again",
                                self.seed_start + i,
                            )
                    k[s] = new_k
                    start(s)
        except WorkerError as e:
            msg = str(e).strip().splitlines()[0]
            log.warning("env workers failed (%s); remaining episodes go to single-env runs", msg)
            for s in range(n):
                i = self.idx(s, int(k[s]))
                if i < self.limit and eps[s] is not None:
                    self.crashed[i] = msg
                kk = int(k[s]) + 1
                while self.idx(s, kk) < self.limit:
                    self.unplayed.append(self.idx(s, kk))
                    kk += 1
        finally:
            venv.close()

    def _log_states(self, choice: Choice, buf: Any, eps: list[_Episode | None]) -> None:
        live = [s for s, e in enumerate(eps) if e is not None]
        if not live:
            return
        out = choice.out
        alpha = ex = pol = None
        if out is not None and self.player.expert_names:
            alpha = out.alpha.detach().float().cpu().numpy()
            ex = torch.softmax(out.expert_logits.detach().float(), -1).cpu().numpy()
            pol = torch.softmax(out.logits.detach().float(), -1).cpu().numpy()
        bl = buf.blstats
        hint = hint_actions(buf.state)
        ints = np.stack(
            [bl[:, nh.NLE_BL_X], bl[:, nh.NLE_BL_Y], bl[:, nh.NLE_BL_DEPTH], choice.action,
             np.zeros(len(hint), np.int64), bl[:, nh.NLE_BL_HP], bl[:, nh.NLE_BL_EXP],
             buf.mem_n_visited, hint, buf.teacher_action, buf.teacher_branch],
            axis=1,
        ).astype(np.int64)  # fmt: skip
        for s in live:
            ep = eps[s]
            assert ep is not None
            row = ints[s].copy()
            row[_INT_COLUMNS.index("step")] = len(ep.ints)
            ep.ints.append(row)
            ep.atoms.append(buf.atoms[s].copy())
            if alpha is not None:
                ep.alpha.append(alpha[s].copy())
                assert ex is not None and pol is not None
                ep.expert_sum = ex[s].astype(np.float64) + (
                    ep.expert_sum if ep.expert_sum is not None else 0.0
                )
                ep.policy_sum = pol[s].astype(np.float64) + (
                    ep.policy_sum if ep.policy_sum is not None else 0.0
                )
            if self.o.keep_obs:
                ep.state.append(buf.state[s].copy())
                ep.crop.append(buf.crop[s].copy())


def _state_log(
    episodes: list[tuple[int, _Episode]],
    n_experts: int,
    n_actions: int,
    n_atoms: int,
    keep_obs: bool,
) -> StateLog:
    """Concatenate the episodes' rows (in the given order) into one :class:`StateLog`."""
    eps = [ep for _, ep in episodes]
    S = sum(len(ep.ints) for ep in eps)
    ints = np.concatenate([np.stack(ep.ints) for ep in eps if ep.ints]) if S else None
    if ints is None:
        ints = np.zeros((0, len(_INT_COLUMNS) + len(_TEACHER_COLUMNS)), np.int64)
    seeds = np.concatenate([np.full(len(ep.ints), seed, np.int64) for seed, ep in episodes] or
                           [np.zeros(0, np.int64)])  # fmt: skip
    alpha_rows = [a for ep in eps for a in ep.alpha]
    alpha = (np.stack(alpha_rows).astype(np.float32) if alpha_rows and n_experts
             else np.zeros((S, n_experts if alpha_rows else 0), np.float32))  # fmt: skip
    atoms = np.stack([a for ep in eps for a in ep.atoms]) if S else np.zeros((0, n_atoms), bool)
    ex = np.zeros((alpha.shape[1], n_actions))
    pol = np.zeros(n_actions)
    for ep in eps:
        if ep.expert_sum is not None:
            ex += ep.expert_sum
        if ep.policy_sum is not None:
            pol += ep.policy_sum
    col = {c: ints[:, j] for j, c in enumerate(_INT_COLUMNS + _TEACHER_COLUMNS)}
    state = crop = None
    if keep_obs and S:
        state = np.stack([a for ep in eps for a in ep.state])
        crop = np.stack([a for ep in eps for a in ep.crop])
    return StateLog(
        alpha=alpha, atoms=atoms.astype(bool), episode=seeds, expert_probs_sum=ex,
        policy_probs_sum=pol, state=state, crop=crop, **col,
    )  # fmt: skip


def play(
    player: Player,
    env_cfg: EnvConfig,
    episodes: int,
    seed_start: int = E200_SEED_START,
    num_envs: int = 16,
    workers: int = 2,
    *,
    collect_states: bool = False,
    keep_obs: bool = False,
    progress: bool | None = None,
    step_timeout: float = 60.0,
    max_restarts: int = 5,
) -> RolloutResult:
    """Play exactly ``episodes`` episodes with ``player`` on seeds ``seed_start .. + episodes - 1``.

    Env slot i plays seed indices ``i, i + N, i + 2N ...`` (``SeedPlan("eval")``); a slot whose next
    index is ``>= episodes`` keeps stepping but its episodes are discarded. ``collect_states`` logs
    every visited state (:class:`StateLog`), ``keep_obs`` with the policy inputs. ``progress``: a
    tqdm bar (``None``: only on a terminal). Episodes lost to a crashed worker are played again once
    in a fresh single-env pass (module docstring).
    """
    if episodes <= 0:
        raise ValueError(f"episodes={episodes} must be positive")
    n_envs = max(1, min(int(num_envs), episodes))
    n_workers = max(0, min(int(workers), n_envs))
    names, raw = action_names(env_cfg)
    from nle.nethack import actions as A

    t0 = time.monotonic()
    opts = _PassOptions(player, env_cfg, seed_start, collect_states, keep_obs, step_timeout)
    greedy = bool(getattr(player, "greedy", False))
    log.info(
        "playing %d episodes on seeds %d..%d with %s (%s, %d envs, %d workers)",
        episodes, seed_start, seed_start + episodes - 1, player.name,
        "greedy" if greedy else "sampled", n_envs, n_workers,
    )  # fmt: skip
    from tqdm import tqdm

    pbar = tqdm(
        total=episodes, unit="ep", desc=player.name, disable=(None if progress is None else not progress),
        dynamic_ncols=True, leave=False,
    )  # fmt: skip
    done: dict[int, tuple[EpisodeRecord, _Episode]] = {}
    errors: dict[int, list[str]] = {}
    env_steps = 0
    model: ActorCritic | None = getattr(player, "model", None)
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        main = _Pass(opts, 0, episodes, n_envs, n_envs, n_workers, max_restarts)
        main.run(on_done=lambda: pbar.update(1))
        env_steps += main.env_steps
        done.update(main.completed)
        queue = sorted(set(main.crashed) | set(main.unplayed))
        for i, msg in main.crashed.items():
            errors.setdefault(i, []).append(msg)
        if queue:
            log.warning("%d episode(s) to play in single-env runs: seeds %s", len(queue),
                        ", ".join(str(seed_start + i) for i in queue))  # fmt: skip
        for i in queue:
            while i not in done and len(errors.get(i, [])) < 2:
                single = _Pass(opts, i, i + 1, 1, 1, 1 if n_workers else 0, 0)
                single.run(on_done=lambda: pbar.update(1))
                env_steps += single.env_steps
                if i in single.completed:
                    done[i] = single.completed[i]
                else:
                    msg = single.crashed.get(i, "the env workers could not be started")
                    errors.setdefault(i, []).append(msg)
    finally:
        pbar.close()
        if model is not None:
            model.train(was_training)
    retried = sorted(seed_start + i for i in errors if i in done)
    failed: list[dict[str, Any]] = [
        {"seed": seed_start + i, "errors": errs}
        for i, errs in sorted(errors.items())
        if i not in done
    ]
    for f in failed:
        log.error("episode on seed %d failed twice and is missing: %s", f["seed"], f["errors"][-1])
    records = [_record(i, seed_start, done[i][0], i in errors) for i in sorted(done)]
    states = None
    if collect_states:
        states = _state_log(
            [(seed_start + i, done[i][1]) for i in sorted(done)],
            len(player.expert_names), len(names), F.N_ATOMS, keep_obs,
        )  # fmt: skip
    return RolloutResult(
        records=records,
        seed_start=seed_start,
        episodes=episodes,
        greedy=greedy,
        policy_seed=int(getattr(player, "policy_seed", 0)),
        routing=player.routing,
        temperature=player.temperature,
        expert_names=list(player.expert_names),
        action_names=names,
        search_action=action_index(raw, A.Command.SEARCH),
        descend_action=action_index(raw, A.MiscDirection.DOWN),
        player=player.name,
        retried=retried,
        failed=failed,
        states=states,
        wall_s=time.monotonic() - t0,
        env_steps=env_steps,
    )


def rollout(
    model: ActorCritic,
    cfg: TrainConfig,
    episodes: int,
    seed_start: int = E200_SEED_START,
    num_envs: int = 16,
    workers: int = 2,
    greedy: bool = False,
    policy_seed: int = 0,
    collect_states: bool = False,
    routing: str | None = None,
    temperature: float | None = None,
    *,
    keep_obs: bool = False,
    progress: bool | None = None,
    step_timeout: float = 60.0,
    max_restarts: int = 5,
) -> RolloutResult:
    """:func:`play` with the checkpoint's policy (:class:`ModelPlayer`); ``routing`` /
    ``temperature`` default to the model's (those of the checkpoint, see :func:`load_policy`)."""
    player = ModelPlayer(model, greedy=greedy, policy_seed=policy_seed, routing=routing,
                         temperature=temperature)  # fmt: skip
    return play(
        player, cfg.env, episodes, seed_start, num_envs, workers, collect_states=collect_states,
        keep_obs=keep_obs, progress=progress, step_timeout=step_timeout, max_restarts=max_restarts,
    )  # fmt: skip


def state_scenarios(result: RolloutResult) -> np.ndarray:
    """Scenario label of every logged state (DESIGN.md, "Scenarios").

    ``moved`` refers to one time step, the one that led into the state: the position or depth
    changed since the previous step of the episode, or the previous action was search / descend
    (see :func:`moved_from_trajectory`). The label does not depend on the action chosen in the
    state, so it cannot encode the decision of the expert whose routing it is compared with.
    """
    st = result.states
    if st is None:
        raise ValueError("the rollout did not collect states (collect_states=False)")
    forced = np.zeros(st.n, bool)
    for a in (result.search_action, result.descend_action):
        if a is not None:
            forced |= st.action == a
    moved = moved_from_trajectory(st.x, st.y, st.depth, st.episode, forced_action=forced)
    return label_scenarios(st.atoms, moved)


def routing_summary(result: RolloutResult) -> dict[str, Any]:
    """Routing figures over the logged states, with the scenario table (figures only: readers
    build the routing verdict from them, :func:`nethack_moe.analysis.routing.verdict`)."""
    st = result.states
    if st is None:
        raise ValueError("the rollout did not collect states (collect_states=False)")
    fig = routing_figures(st.alpha, st.episode, result.expert_names)
    fig["scenario_table"] = scenario_table(
        st.alpha, state_scenarios(result), SCENARIOS, result.expert_names
    )
    fig["routing"] = result.routing
    fig["temperature"] = result.temperature
    return fig


# ------------------------------------------------------------------------------------------ evaluate
#: ``evaluate --actions``: which action modes a checkpoint is played with.
ACTION_MODES: tuple[str, ...] = ("both", "sampled", "greedy")


def protocol_name(
    episodes: int, seed_start: int = E200_SEED_START, max_steps: int | None = None
) -> str:
    """``E200`` for 200 episodes from seed 100000; ``E<n>`` otherwise (``@<seed>`` when the seeds
    start elsewhere, ``-<m>steps`` when the episode cap was set to ``m`` for the evaluation)."""
    name = f"E{int(episodes)}"
    if seed_start != E200_SEED_START:
        name += f"@{seed_start}"
    return name if max_steps is None else f"{name}-{int(max_steps)}steps"


def checkpoint_names(paths: Sequence[str | Path]) -> list[str]:
    """Names for the checkpoints: the file stem (``final``, ``ep_003000``), prefixed by the run
    name when two files share a stem, with ``_2``, ``_3`` ... for what is still equal."""
    ps = [Path(p) for p in paths]
    stems = [p.stem for p in ps]
    names = []
    for p, s in zip(ps, stems, strict=True):
        if stems.count(s) > 1:
            run = p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name
            names.append(f"{run}:{s}" if run else s)
        else:
            names.append(s)
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def _machine() -> dict[str, Any]:
    from nethack_moe.bench import machine_info

    return machine_info()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def summarize_episodes(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """E200 statistics of per-episode records (score, died, depth, length, mean reward)."""
    summary = summarize(
        [r["score"] for r in recs],
        died=[r["died"] for r in recs],
        depth=[r["depth"] for r in recs],
        length=[r["length"] for r in recs],
    )
    summary["reward"] = float(np.mean([r["reward"] for r in recs])) if recs else None
    return summary


def specialization_summary(
    res: RolloutResult, model: ActorCritic | None = None
) -> SpecializationReport:
    """The specialization figures that need no extra play (PROTOCOL.md): scenario information
    with its permutation baselines, reliance on the logged states (when the rollout kept the
    observations and ``model`` is given), the hint follow share and, when the env ran with
    ``env.teacher``, the figures against the teacher's branches; the verdict is built from them
    when read (:func:`nethack_moe.analysis.verdict.verdict_of`)."""
    st = res.states
    if st is None:
        raise ValueError("the rollout did not collect states (collect_states=False)")
    labels = state_scenarios(res)
    report, _ = state_report(model, st, labels, res.routing, res.temperature,
                             actions="greedy" if res.greedy else "sampled")  # fmt: skip
    return report


def teacher_env(env_cfg: EnvConfig) -> EnvConfig:
    """``env_cfg`` with the scripted teacher computed in the env workers (``env.teacher``), where
    the task has the teacher's 23 actions; unchanged otherwise. The teacher changes neither the
    game nor the policy's inputs: it only adds its advice and branch to the state log."""
    if env_cfg.task not in TEACHER_TASKS:
        return env_cfg
    return dataclasses.replace(env_cfg, teacher=True)


def run_entry(res: RolloutResult, model: ActorCritic | None = None) -> dict[str, Any]:
    """The evaluation JSON of one played set of episodes: ``greedy``, ``summary``, ``episodes``
    (per-episode records), ``retried``, ``failed``, ``wall_s``, ``env_steps``.

    ``summary`` holds the E200 figures and, when states were logged, ``hint`` (``follow_share``)
    and for a mixture of experts ``routing`` (usage balance, sharpness, scenario table),
    ``specialization`` (scenario information and its baselines), ``reliance`` (on the logged
    states; needs ``model`` and kept observations; ``{}`` with ``reliance_measured`` false
    otherwise) and ``n_experts``, and, when the env ran with ``env.teacher``, ``teacher`` (branch
    information, per-branch interventions, agreement), keyed as in ``analysis.json``. Figures only: no verdict sentence
    is stored (readers build it, :func:`nethack_moe.analysis.verdict.verdict_of`).
    """
    summary = summarize_episodes(res.records)
    st = res.states
    if st is not None:
        if res.expert_names:
            summary[mn.ROUTING] = routing_summary(res)
        blocks = specialization_summary(res, model).to_json()
        summary[mn.HINT] = blocks[mn.HINT]
        if res.expert_names:
            for key in (mn.N_EXPERTS, mn.SPECIALIZATION, mn.RELIANCE, mn.RELIANCE_MEASURED):
                summary[key] = blocks[key]
        if blocks[mn.TEACHER] is not None:
            summary[mn.TEACHER] = blocks[mn.TEACHER]
    return {
        mn.GREEDY: bool(res.greedy),
        mn.SUMMARY: summary,
        mn.EPISODES: res.records,
        "retried": res.retried,
        "failed": res.failed,
        "wall_s": res.wall_s,
        "env_steps": res.env_steps,
    }


@dataclass
class EvalOptions:
    """How :func:`evaluate` plays every player (the same seeds for all)."""

    episodes: int = E200_EPISODES
    seed_start: int = E200_SEED_START
    workers: int = 2
    num_envs: int = 16
    policy_seed: int = 0
    progress: bool | None = None
    step_timeout: float = 60.0
    max_steps: int | None = None
    """Episode cap for this evaluation (default: the checkpoint's, 500 for the baselines)."""

    def env(self, env_cfg: EnvConfig) -> EnvConfig:
        """``env_cfg`` with the evaluation's episode cap."""
        if self.max_steps is None:
            return env_cfg
        return dataclasses.replace(env_cfg, max_episode_steps=int(self.max_steps))

    def play(self, player: Player, env_cfg: EnvConfig, *, keep_obs: bool = False) -> RolloutResult:
        """:func:`play` on the evaluation seeds, every state logged."""
        return play(
            player, self.env(env_cfg), self.episodes, self.seed_start, self.num_envs, self.workers,
            collect_states=True, keep_obs=keep_obs, progress=self.progress,
            step_timeout=self.step_timeout,
        )  # fmt: skip


def checkpoint_entry(
    path: str | Path,
    loaded: tuple[ActorCritic, TrainConfig, dict[str, Any]],
    opts: EvalOptions,
    actions: str = "both",
) -> dict[str, Any]:
    """The evaluation JSON of one checkpoint: the sampled run (or the greedy one, for
    ``actions="greedy"``) at the top level, and with ``actions="both"`` the greedy run beside it
    under ``greedy_result``."""
    if actions not in ACTION_MODES:
        raise ValueError(f"actions={actions!r}; choose from {', '.join(ACTION_MODES)}")
    model, cfg, ck = loaded
    first_greedy = actions == "greedy"
    env = teacher_env(cfg.env)  # the teacher's advice logged beside every state
    res = opts.play(
        ModelPlayer(model, greedy=first_greedy, policy_seed=opts.policy_seed), env, keep_obs=True
    )
    entry: dict[str, Any] = {
        mn.PLAYER: mn.POLICY,
        "path": str(path),
        "episode": checkpoint_episode(ck),
        "routing": res.routing,
        "temperature": res.temperature,
        "routing_source": checkpoint_routing(ck, cfg).source,
        **run_entry(res, model),
    }
    if actions == "both":
        greedy = opts.play(ModelPlayer(model, greedy=True, policy_seed=opts.policy_seed), env)
        entry[mn.GREEDY_RESULT] = run_entry(greedy)
    return entry


def baseline_entry(name: str, env_cfg: EnvConfig, opts: EvalOptions) -> dict[str, Any]:
    """The evaluation JSON of the baseline ``name`` (:data:`nethack_moe.players.BASELINES`) on the
    evaluation seeds, in the same format as a checkpoint's (``player`` names the baseline)."""
    names, raw = action_names(env_cfg)
    check_action_set(raw)
    player = make_baseline(name, len(names), opts.policy_seed)
    if player.needs_teacher:  # the diver: the env workers compute the teacher's action
        env_cfg = dataclasses.replace(env_cfg, teacher=True)
    res = opts.play(player, env_cfg)
    return {
        mn.PLAYER: name,
        "path": None,
        "episode": None,
        "routing": None,
        "temperature": None,
        **run_entry(res),
    }


def evaluate(
    paths: Sequence[str | Path],
    episodes: int = E200_EPISODES,
    seed_start: int = E200_SEED_START,
    greedy: bool = False,
    workers: int = 2,
    num_envs: int = 16,
    out: str | Path | None = None,
    device: str = "cpu",
    *,
    policy_seed: int = 0,
    progress: bool | None = None,
    step_timeout: float = 60.0,
    write_run_copies: bool = True,
    actions: str | None = None,
    baselines: Sequence[str] = (),
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Evaluate checkpoints and baselines on the same seeds; returns the evaluation JSON object
    (also written to ``out``).

    ``actions``: ``both`` (default: sampled at the top level of each checkpoint's entry, greedy
    under ``greedy_result``), ``sampled`` or ``greedy`` (``greedy=True`` is ``actions="greedy"``).
    ``baselines``: names from :data:`nethack_moe.players.BASELINES`, each one more entry (keyed by
    its name) played on the env of the first checkpoint, or NetHackScore-v0's defaults without one.
    For a checkpoint in ``RUN/checkpoints/`` of a run (``RUN/metrics.jsonl`` exists) a copy holding that checkpoint alone is written to
    ``RUN/eval/<stem>_E<n>[_greedy].json`` (``write_run_copies``); the paths written are listed
    under the (non-format) key ``"written"`` of the returned object.
    """
    mode = actions or ("greedy" if greedy else "both")
    if mode not in ACTION_MODES:
        raise ValueError(f"actions={mode!r}; choose from {', '.join(ACTION_MODES)}")
    if not paths and not baselines:
        raise ValueError("nothing to evaluate: give a checkpoint or a baseline")
    if episodes <= 0:
        raise ValueError(f"episodes={episodes} must be positive")
    for b in baselines:
        if b not in BASELINES:
            raise ValueError(f"unknown baseline {b!r}; choose from {', '.join(BASELINES)}")
    opts = EvalOptions(episodes, seed_start, workers, num_envs, policy_seed, progress,
                       step_timeout, max_steps)  # fmt: skip
    proto = protocol_name(episodes, seed_start, max_steps)
    base: dict[str, Any] = {
        "protocol": proto,
        "greedy": mode == "greedy",
        "actions": mode,
        "episodes": int(episodes),
        "seed_start": int(seed_start),
        "policy_seed": int(policy_seed),
        "max_steps": max_steps,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": _machine(),
    }
    names = checkpoint_names(paths)
    # load everything first: a bad file fails before any long rollout
    loaded = [load_policy(p, device) for p in paths]
    ckpts: dict[str, Any] = {}
    written: list[str] = []
    for name, path, ld in zip(names, paths, loaded, strict=True):
        entry = checkpoint_entry(path, ld, opts, mode)
        ckpts[name] = entry
        p = Path(path)
        run_dir = p.parent.parent
        if (
            write_run_copies
            and p.parent.name == "checkpoints"
            and (run_dir / "metrics.jsonl").exists()
        ):
            suffix = "_greedy" if mode == "greedy" else ""
            dest = run_dir / "eval" / f"{p.stem}_{proto}{suffix}.json"
            _write_json(dest, {**base, mn.CHECKPOINTS: {name: entry}})
            written.append(str(dest))
            log.info("evaluation of %s written to %s", p, dest)
    env_cfg = loaded[0][1].env if loaded else EnvConfig()
    for b in baselines:
        ckpts[b if b not in ckpts else f"baseline:{b}"] = baseline_entry(b, env_cfg, opts)
    result = {**base, mn.CHECKPOINTS: ckpts}
    if out is not None:
        _write_json(Path(out), result)
        written.insert(0, str(out))
    return {**result, "written": written}


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

    The frames of :func:`nethack_moe.replay.play_frames`, acting through the same
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
