"""The episode runner: players over the vector env on the evaluation seeds, with retries, the
episode records and the :class:`~nethack_moe.metrics.statelog.StateLog` of visited states."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.config.train import TrainConfig
from nethack_moe.envs.accounting import EpisodeRecord
from nethack_moe.envs.factory import EnvConfig, SeedPlan
from nethack_moe.envs.vector import VectorEnv, WorkerError
from nethack_moe.evaluation.loading import action_names
from nethack_moe.evaluation.players import Choice, ModelPlayer, Player, hint_actions
from nethack_moe.game.actions import action_index
from nethack_moe.metrics.routing import routing_figures, scenario_table
from nethack_moe.metrics.scenarios import SCENARIOS, label_scenarios, moved_from_trajectory
from nethack_moe.metrics.statelog import _INT_COLUMNS, _TEACHER_COLUMNS, StateLog
from nethack_moe.models.acting import Obs, Teacher
from nethack_moe.models.policy import ActorCritic

log = logging.getLogger(__name__)

#: E200 (PROTOCOL.md): 200 episodes on seeds 100000 .. 100199.
E200_EPISODES = 200
E200_SEED_START = 100000

RECORD_KEYS = ("seed", "score", "reward", "length", "depth", "died")


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
    model: ActorCritic | None = getattr(player, "model", None)
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        done, errors, env_steps = _play_passes(
            opts, episodes, n_envs, n_workers, max_restarts, on_done=lambda: pbar.update(1)
        )
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


def _play_passes(
    opts: _PassOptions,
    episodes: int,
    n_envs: int,
    n_workers: int,
    max_restarts: int,
    on_done: Callable[[], Any],
) -> tuple[dict[int, tuple[EpisodeRecord, _Episode]], dict[int, list[str]], int]:
    """The passes of :func:`play`: one over every episode, then each episode lost to a crashed
    worker (or not played) again in a fresh single-env pass, until it is done or has failed twice.
    Returns the finished episodes and the errors by episode index, and the env steps taken."""
    seed_start = opts.seed_start
    done: dict[int, tuple[EpisodeRecord, _Episode]] = {}
    errors: dict[int, list[str]] = {}
    env_steps = 0
    main = _Pass(opts, 0, episodes, n_envs, n_envs, n_workers, max_restarts)
    main.run(on_done=on_done)
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
            single.run(on_done=on_done)
            env_steps += single.env_steps
            if i in single.completed:
                done[i] = single.completed[i]
            else:
                msg = single.crashed.get(i, "the env workers could not be started")
                errors.setdefault(i, []).append(msg)
    return done, errors, env_steps


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
    build the routing verdict from them, :func:`nethack_moe.metrics.routing.verdict`)."""
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
