"""Held-out evaluation of checkpoints (protocol E200 of ``PROTOCOL.md``).

* :func:`load_policy`: safe load of a checkpoint, the model rebuilt from its own config, with the
  routing kind and temperature in force at the checkpoint's episode count;
* :func:`rollout`: plays exactly ``episodes`` games on the evaluation seeds
  ``core = disp = seed_start + i`` (``i = 0 .. episodes-1``) over a :class:`VectorEnv`;
* :func:`evaluate`: one or more checkpoints → the evaluation JSON object (written to a file and, for a
  checkpoint in ``RUN/checkpoints/``, to ``RUN/eval/<stem>_E<n>[_greedy].json`` for the report);
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

from nethack_moe.analysis.routing import routing_figures, scenario_table, verdict
from nethack_moe.analysis.scenarios import SCENARIOS, label_scenarios, moved_from_trajectory
from nethack_moe.analysis.stats import summarize
from nethack_moe.checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint
from nethack_moe.config import TrainConfig, config_from_dict
from nethack_moe.envs.accounting import EpisodeRecord
from nethack_moe.envs.factory import EnvConfig, make_env, seed_env
from nethack_moe.envs.vector import SeedPlan, VectorEnv, WorkerError
from nethack_moe.features import FeatureSpec, compute_features, new_memory
from nethack_moe.models.policy import ActorCritic, build_model

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

    The routing kind and temperature in force at the checkpoint's episode count
    (``cfg.curriculum``) become the model's defaults (``model.cfg.routing`` /
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
    episode = checkpoint_episode(ckpt)
    r = routing if routing is not None else cfg.curriculum.phase_at(episode).routing
    t = float(temperature) if temperature is not None else cfg.curriculum.temperature_at(episode)
    try:
        model.cfg = dataclasses.replace(model.cfg, routing=r, temperature=t).validate()
    except ValueError as e:
        raise CheckpointError(f"routing {r!r} / temperature {t!r}: {e}") from e
    model.to(_resolve_device(device))
    model.eval()
    return model, cfg, ckpt


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


def _episode_generator(policy_seed: int, seed: int) -> torch.Generator:
    ss = np.random.SeedSequence([int(policy_seed) & 0xFFFFFFFF, int(seed) & 0xFFFFFFFFFFFF])
    g = torch.Generator(device="cpu")
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return g


def _select_actions(
    logits: torch.Tensor, gens: Sequence[torch.Generator | None], greedy: bool
) -> np.ndarray:
    """Gumbel-max sample per row with that row's generator (argmax when greedy or no generator)."""
    lg = logits.detach().float().cpu()
    if greedy:
        return lg.argmax(-1).numpy().astype(np.int64)
    noise = torch.zeros_like(lg)
    for i, g in enumerate(gens):
        if g is not None:
            u = torch.rand(lg.shape[1], generator=g)
            noise[i] = -torch.log(-torch.log(u.clamp_min(1e-10)))
    return (lg + noise).argmax(-1).numpy().astype(np.int64)


# ------------------------------------------------------------------------------------------ results
@dataclass
class StateLog:
    """Per-step data of the played episodes, rows grouped by episode (seed order), time order
    within an episode. ``expert_probs_sum[e, a]``: sum over the rows of expert e's softmax."""

    alpha: np.ndarray
    atoms: np.ndarray
    x: np.ndarray
    y: np.ndarray
    depth: np.ndarray
    action: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    expert_probs_sum: np.ndarray
    policy_probs_sum: np.ndarray

    @property
    def n(self) -> int:
        return int(self.alpha.shape[0])

    def expert_action_distribution(self) -> np.ndarray:
        """``[E, A]``: each expert's softmax over actions, averaged over the states."""
        return self.expert_probs_sum / max(self.n, 1)

    def policy_action_distribution(self) -> np.ndarray:
        """``[A]``: the mixed policy's softmax, averaged over the states."""
        return self.policy_probs_sum / max(self.n, 1)


@dataclass
class RolloutResult:
    """What :func:`rollout` returns; ``records`` are ordered by seed."""

    records: list[dict[str, Any]]
    seed_start: int
    episodes: int
    greedy: bool
    policy_seed: int
    routing: str
    temperature: float
    expert_names: list[str]
    action_names: list[str]
    search_action: int | None
    descend_action: int | None
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

    rows: list[tuple[Any, ...]] = field(default_factory=list)
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


class _Pass:
    """One VectorEnv playing the seed indices ``first + i + k * stride`` (< ``limit``) in slot i."""

    def __init__(
        self,
        model: ActorCritic,
        env_cfg: EnvConfig,
        seed_start: int,
        first: int,
        limit: int,
        n_envs: int,
        stride: int,
        n_workers: int,
        *,
        greedy: bool,
        policy_seed: int,
        collect: bool,
        routing: str | None,
        temperature: float | None,
        step_timeout: float,
        max_restarts: int,
    ) -> None:
        self.model, self.env_cfg = model, env_cfg
        self.seed_start, self.first, self.limit = seed_start, first, limit
        self.n, self.stride, self.n_workers = n_envs, stride, n_workers
        self.greedy, self.policy_seed, self.collect = greedy, policy_seed, collect
        self.routing, self.temperature = routing, temperature
        self.step_timeout, self.max_restarts = step_timeout, max_restarts
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
                self.env_cfg,
                n,
                self.n_workers,
                SeedPlan("eval", base=self.seed_start + self.first, stride=self.stride),
                step_timeout=self.step_timeout,
                max_restarts=self.max_restarts,
            )
        except WorkerError as e:
            log.warning("could not start the env workers: %s", e)
            self.unplayed = list(range(self.first, self.limit))
            return
        dev = next(self.model.parameters()).device
        buf = venv.buf
        b_state, b_crop, b_atoms = (torch.from_numpy(a) for a in (buf.state, buf.crop, buf.atoms))
        eps: list[_Episode | None] = [None] * n
        gens: list[torch.Generator | None] = [None] * n

        def start(slot: int) -> None:
            i = self.idx(slot, int(k[slot]))
            if i < self.limit:
                eps[slot] = _Episode()
                gens[slot] = _episode_generator(self.policy_seed, self.seed_start + i)
            else:
                eps[slot] = None
                gens[slot] = None

        for s in range(n):
            start(s)
        try:
            while any(e is not None for e in eps):
                with torch.no_grad():
                    out = self.model(
                        b_state.to(dev), b_crop.to(dev), b_atoms.to(dev),
                        self.routing, self.temperature,
                    )  # fmt: skip
                act = _select_actions(out.logits, gens, self.greedy)
                if self.collect:
                    self._log_states(out, act, buf, eps)
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

    def _log_states(self, out: Any, act: np.ndarray, buf: Any, eps: list[_Episode | None]) -> None:
        live = [s for s, e in enumerate(eps) if e is not None]
        if not live:
            return
        alpha = out.alpha.detach().float().cpu().numpy()
        ex = torch.softmax(out.expert_logits.detach().float(), -1).cpu().numpy()
        pol = torch.softmax(out.logits.detach().float(), -1).cpu().numpy()
        bl = buf.blstats
        for s in live:
            ep = eps[s]
            assert ep is not None
            ep.rows.append(
                (
                    alpha[s].copy(),
                    buf.atoms[s].copy(),
                    int(bl[s, nh.NLE_BL_X]),
                    int(bl[s, nh.NLE_BL_Y]),
                    int(bl[s, nh.NLE_BL_DEPTH]),
                    int(act[s]),
                    len(ep.rows),
                )
            )
            ep.expert_sum = ex[s].astype(np.float64) + (
                ep.expert_sum if ep.expert_sum is not None else 0.0
            )
            ep.policy_sum = pol[s].astype(np.float64) + (
                ep.policy_sum if ep.policy_sum is not None else 0.0
            )


def _state_log(
    episodes: list[tuple[int, _Episode]], n_experts: int, n_actions: int, n_atoms: int
) -> StateLog:
    rows = [(seed, r) for seed, ep in episodes for r in ep.rows]
    S = len(rows)
    alpha = np.zeros((S, n_experts), np.float32)
    atoms = np.zeros((S, n_atoms), bool)
    ints = np.zeros((S, 6), np.int64)
    for j, (seed, r) in enumerate(rows):
        alpha[j] = r[0]
        atoms[j] = r[1]
        ints[j] = (r[2], r[3], r[4], r[5], seed, r[6])
    ex = np.zeros((n_experts, n_actions))
    pol = np.zeros(n_actions)
    for _, ep in episodes:
        if ep.expert_sum is not None:
            ex += ep.expert_sum
        if ep.policy_sum is not None:
            pol += ep.policy_sum
    return StateLog(
        alpha=alpha,
        atoms=atoms,
        x=ints[:, 0],
        y=ints[:, 1],
        depth=ints[:, 2],
        action=ints[:, 3],
        episode=ints[:, 4],
        step=ints[:, 5],
        expert_probs_sum=ex,
        policy_probs_sum=pol,
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
    progress: bool | None = None,
    step_timeout: float = 60.0,
    max_restarts: int = 5,
) -> RolloutResult:
    """Play exactly ``episodes`` episodes on seeds ``seed_start .. seed_start + episodes - 1``.

    Env slot i plays seed indices ``i, i + N, i + 2N ...`` (``SeedPlan("eval")``); a slot whose next
    index is ``>= episodes`` keeps stepping but its episodes are discarded. ``routing`` /
    ``temperature`` default to the model's (those in force at the checkpoint, see
    :func:`load_policy`). ``progress``: a tqdm bar (``None``: only on a terminal).
    """
    if episodes <= 0:
        raise ValueError(f"episodes={episodes} must be positive")
    n_envs = max(1, min(int(num_envs), episodes))
    n_workers = max(0, min(int(workers), n_envs))
    names, raw = action_names(cfg.env)
    from nle.nethack import actions as A

    t0 = time.monotonic()
    kw: dict[str, Any] = dict(
        greedy=greedy, policy_seed=policy_seed, collect=collect_states, routing=routing,
        temperature=temperature, step_timeout=step_timeout,
    )  # fmt: skip
    log.info(
        "evaluating %d episodes on seeds %d..%d (%s, routing %s, T=%.3g, %d envs, %d workers)",
        episodes, seed_start, seed_start + episodes - 1, "greedy" if greedy else "sampled",
        routing or model.cfg.routing, temperature or model.cfg.temperature, n_envs, n_workers,
    )  # fmt: skip
    from tqdm import tqdm

    pbar = tqdm(
        total=episodes, unit="ep", desc="evaluate", disable=(None if progress is None else not progress),
        dynamic_ncols=True, leave=False,
    )  # fmt: skip
    done: dict[int, tuple[EpisodeRecord, _Episode]] = {}
    errors: dict[int, list[str]] = {}
    env_steps = 0
    was_training = model.training
    model.eval()
    try:
        main = _Pass(model, cfg.env, seed_start, 0, episodes, n_envs, n_envs, n_workers,
                     max_restarts=max_restarts, **kw)  # fmt: skip
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
                single = _Pass(model, cfg.env, seed_start, i, i + 1, 1, 1, 1 if n_workers else 0,
                               max_restarts=0, **kw)  # fmt: skip
                single.run(on_done=lambda: pbar.update(1))
                env_steps += single.env_steps
                if i in single.completed:
                    done[i] = single.completed[i]
                else:
                    msg = single.crashed.get(i, "the env workers could not be started")
                    errors.setdefault(i, []).append(msg)
    finally:
        pbar.close()
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
            model.n_experts,
            model.n_actions,
            model.spec.n_atoms,
        )
    return RolloutResult(
        records=records,
        seed_start=seed_start,
        episodes=episodes,
        greedy=greedy,
        policy_seed=policy_seed,
        routing=routing or model.cfg.routing,
        temperature=float(temperature if temperature is not None else model.cfg.temperature),
        expert_names=list(model.expert_names),
        action_names=names,
        search_action=action_index(raw, A.Command.SEARCH),
        descend_action=action_index(raw, A.MiscDirection.DOWN),
        retried=retried,
        failed=failed,
        states=states,
        wall_s=time.monotonic() - t0,
        env_steps=env_steps,
    )


def state_scenarios(result: RolloutResult) -> np.ndarray:
    """Scenario label of every logged state (DESIGN.md, "Scenarios"): ``moved`` from a change of
    position or depth since the previous step of the episode, or the action search / descend."""
    st = result.states
    if st is None:
        raise ValueError("the rollout did not collect states (collect_states=False)")
    forced = np.zeros(st.n, bool)
    for a in (result.search_action, result.descend_action):
        if a is not None:
            forced |= st.action == a
    moved = moved_from_trajectory(st.x, st.y, st.depth, st.episode, forced)
    return label_scenarios(st.atoms, moved)


def routing_summary(result: RolloutResult) -> dict[str, Any]:
    """Routing figures over the logged states, with the scenario table and the verdict."""
    st = result.states
    if st is None:
        raise ValueError("the rollout did not collect states (collect_states=False)")
    fig = routing_figures(st.alpha, st.episode, result.expert_names)
    fig["scenario_table"] = scenario_table(
        st.alpha, state_scenarios(result), SCENARIOS, result.expert_names
    )
    fig["verdict"] = verdict(fig, len(result.expert_names))
    fig["routing"] = result.routing
    fig["temperature"] = result.temperature
    return fig


# ------------------------------------------------------------------------------------------ evaluate
def protocol_name(episodes: int, seed_start: int = E200_SEED_START) -> str:
    """``E200`` for 200 episodes from seed 100000; ``E<n>`` otherwise (``@<seed>`` when the seeds
    start elsewhere)."""
    name = f"E{int(episodes)}"
    return name if seed_start == E200_SEED_START else f"{name}@{seed_start}"


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
) -> dict[str, Any]:
    """Evaluate checkpoints; returns the evaluation JSON object (also written to ``out``).

    For a checkpoint in ``RUN/checkpoints/`` a copy holding that checkpoint alone is written to
    ``RUN/eval/<stem>_E<n>[_greedy].json`` (``write_run_copies``); the paths written are listed
    under the (non-format) key ``"written"`` of the returned object.
    """
    if not paths:
        raise ValueError("no checkpoint to evaluate")
    if episodes <= 0:
        raise ValueError(f"episodes={episodes} must be positive")
    proto = protocol_name(episodes, seed_start)
    base: dict[str, Any] = {
        "protocol": proto,
        "greedy": bool(greedy),
        "episodes": int(episodes),
        "seed_start": int(seed_start),
        "policy_seed": int(policy_seed),
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": _machine(),
    }
    names = checkpoint_names(paths)
    # load everything first: a bad file fails before any long rollout
    loaded = [load_policy(p, device) for p in paths]
    ckpts: dict[str, Any] = {}
    written: list[str] = []
    for name, path, (model, cfg, ck) in zip(names, paths, loaded, strict=True):
        res = rollout(
            model, cfg, episodes, seed_start, num_envs, workers, greedy, policy_seed,
            collect_states=True, progress=progress, step_timeout=step_timeout,
        )  # fmt: skip
        recs = res.records
        summary = summarize_episodes(recs)
        summary["routing"] = routing_summary(res)
        entry: dict[str, Any] = {
            "path": str(path),
            "episode": checkpoint_episode(ck),
            "greedy": bool(greedy),
            "routing": res.routing,
            "temperature": res.temperature,
            "summary": summary,
            "episodes": recs,
            "retried": res.retried,
            "failed": res.failed,
            "wall_s": res.wall_s,
            "env_steps": res.env_steps,
        }
        ckpts[name] = entry
        p = Path(path)
        if write_run_copies and p.parent.name == "checkpoints":
            dest = p.parent.parent / "eval" / f"{p.stem}_{proto}{'_greedy' if greedy else ''}.json"
            _write_json(dest, {**base, "checkpoints": {name: entry}})
            written.append(str(dest))
            log.info("evaluation of %s written to %s", p, dest)
    result = {**base, "checkpoints": ckpts}
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
) -> Iterator[dict[str, Any]]:
    """Play one episode in an in-process env (seeds ``core = disp = seed``) and yield one frame per
    step: ``step, screen`` (tty text before the action), ``alpha`` (list), ``expert_names``,
    ``action`` (index), ``action_name``, ``reward``, ``score`` (gain so far), ``done``.

    Samples exactly as :func:`rollout` does, so the episode is the evaluation episode of ``seed``.
    """
    env = make_env(cfg.env)
    names, _ = action_names(cfg.env)
    spec = FeatureSpec(crop_size=cfg.env.crop_size)
    cap = cfg.env.max_episode_steps if steps is None else min(int(steps), cfg.env.max_episode_steps)
    dev = next(model.parameters()).device
    gen = _episode_generator(policy_seed, seed)
    try:
        seed_env(env, seed, seed)
        obs, _ = env.reset()
        mem = new_memory(1)
        score0 = int(obs["blstats"][nh.NLE_BL_SCORE])
        score = 0
        for t in range(cap):
            st, cr, at = compute_features(
                obs["glyphs"][None], obs["blstats"][None], obs["message"][None],
                obs["tty_chars"][None], spec, memory=mem,
            )  # fmt: skip
            with torch.no_grad():
                out = model(
                    torch.from_numpy(st).to(dev), torch.from_numpy(cr).to(dev),
                    torch.from_numpy(at).to(dev),
                )  # fmt: skip
            a = int(_select_actions(out.logits, [gen], greedy)[0])
            screen = tty_text(obs["tty_chars"])
            obs, r, term, trunc, _info = env.step(a)
            done = bool(term or trunc) or t + 1 >= cap
            if not term:
                score = int(obs["blstats"][nh.NLE_BL_SCORE]) - score0
            yield {
                "step": t,
                "screen": screen,
                "alpha": [float(v) for v in out.alpha[0].cpu()],
                "expert_names": list(model.expert_names),
                "action": a,
                "action_name": names[a],
                "reward": float(r) * cfg.env.reward_scale,
                "score": score,
                "done": done,
                "died": bool(term),
                "final_screen": tty_text(obs["tty_chars"]) if done else None,
            }
            if done:
                break
    finally:
        env.close()
