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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.config.train import TrainConfig
from nethack_moe.core.io import atomic_write_bytes
from nethack_moe.core.machine import machine_info
from nethack_moe.envs.factory import TEACHER_TASKS, EnvConfig
from nethack_moe.evaluation.loading import (
    action_names,
    checkpoint_episode,
    checkpoint_routing,
    load_policy,
)
from nethack_moe.evaluation.players import (
    BASELINES,
    ModelPlayer,
    Player,
    make_baseline,
)
from nethack_moe.evaluation.runner import (
    E200_EPISODES,
    E200_SEED_START,
    RolloutResult,
    play,
    routing_summary,
    state_scenarios,
)
from nethack_moe.game.actions import check_action_set
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.motion import motion_figures
from nethack_moe.metrics.state_report import SpecializationReport, state_report
from nethack_moe.metrics.stats import summarize
from nethack_moe.models.policy import ActorCritic
from nethack_moe.runs.checkpoint import CheckpointPayload
from nethack_moe.runs.rundir import RunDir

log = logging.getLogger(__name__)

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
            run = RunDir.owner_dir(p).name
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
    when read (:func:`nethack_moe.metrics.verdict.verdict_of`)."""
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

    ``summary`` holds the E200 figures and, when states were logged, ``hint`` (``follow_share``),
    ``motion`` (where the steps take the hero: :mod:`nethack_moe.metrics.motion`)
    and for a mixture of experts ``routing`` (usage balance, sharpness, scenario table),
    ``specialization`` (scenario information and its baselines), ``reliance`` (on the logged
    states; needs ``model`` and kept observations; ``{}`` with ``reliance_measured`` false
    otherwise) and ``n_experts``, and, when the env ran with ``env.teacher``, ``teacher`` (branch
    information, per-branch interventions, agreement), keyed as in ``analysis.json``. Figures only: no verdict sentence
    is stored (readers build it, :func:`nethack_moe.metrics.verdict.verdict_of`).
    """
    summary = summarize_episodes(res.records)
    st = res.states
    if st is not None:
        if res.expert_names:
            summary[mn.ROUTING] = routing_summary(res)
        blocks = specialization_summary(res, model).to_json()
        summary[mn.HINT] = blocks[mn.HINT]
        motion = motion_figures(st)
        if motion is not None:
            summary[mn.MOTION] = motion.to_json()
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
    loaded: tuple[ActorCritic, TrainConfig, CheckpointPayload],
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
    """The evaluation JSON of the baseline ``name`` (:data:`nethack_moe.evaluation.players.BASELINES`) on the
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
    ``baselines``: names from :data:`nethack_moe.evaluation.players.BASELINES`, each one more entry (keyed by
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
        run_dir = RunDir.of_checkpoint(p)
        if write_run_copies and run_dir is not None and run_dir.is_run():
            dest = run_dir.eval_file(p.stem, proto, greedy=mode == "greedy")
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
