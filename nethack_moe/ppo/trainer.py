"""PPO over the vector env under the routing curriculum: the ``nethack-moe train`` job.

:meth:`Trainer.run` is the loop: collect a rollout of T steps x N envs into the
:class:`~nethack_moe.ppo.storage.RolloutStorage` with the phase's routing and temperature
(:class:`~nethack_moe.ppo.collector.Collector`), GAE per env in time order, the PPO epochs
(:func:`~nethack_moe.ppo.update.ppo_update`), log (an ``update`` record), checkpoint
(:class:`~nethack_moe.ppo.checkpointing.Checkpointing`: cadence, best, retention, the state in and
out). The run directory is :class:`~nethack_moe.runs.rundir.RunDir`'s; timing, the run log and
signals are in :mod:`nethack_moe.ppo.hooks`.
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nethack_moe import __version__
from nethack_moe.config.loss_terms import LOSS_TERMS
from nethack_moe.config.train import TrainConfig, config_from_dict, dump_config
from nethack_moe.core.device import resolve_device
from nethack_moe.core.errors import ConfigError
from nethack_moe.envs.factory import SeedPlan
from nethack_moe.envs.vector import VectorEnv, WorkerError
from nethack_moe.metrics.routing import routing_figures_torch
from nethack_moe.models.policy import ActorCritic, build_model
from nethack_moe.ppo.checkpointing import BEST, FINAL, PERIODIC, Checkpointing, TrainingState
from nethack_moe.ppo.collector import Collector, RolloutContext
from nethack_moe.ppo.dist_log import DistRunLog, RolloutSync, wrap_log
from nethack_moe.ppo.distributed import (
    DistContext,
    RankFailure,
    check_world_size,
    failure_message,
    init_distributed,
)
from nethack_moe.ppo.hooks import RunLog, SignalGuard, Timing
from nethack_moe.ppo.learner import (
    InlineLearner,
    LearnerDist,
    LearnerError,
    LearnerInit,
    ProcessLearner,
    ThreadLearner,
    UpdateJob,
    UpdateResult,
    make_optimizer,
)
from nethack_moe.ppo.reward_norm import RunningMeanStd
from nethack_moe.ppo.storage import RolloutStorage
from nethack_moe.ppo.update import PPOSettings, UpdateStats
from nethack_moe.runs.checkpoint import (
    CheckpointError,
    CheckpointPayload,
    Counters,
    check_model_compat,
    load_payload,
)
from nethack_moe.runs.records import RunStartLine, UpdateLine
from nethack_moe.runs.resume import check_resume_compat
from nethack_moe.runs.rundir import RunDir, find_resume_checkpoint

#: Re-exported: the trainer's parts tests and tools reach through this module.
__all__ = ["Counters", "LearnerError", "NonFiniteError", "RolloutContext", "RunningMeanStd",
           "Trainer", "TrainingInterrupted", "train"]  # fmt: skip

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM: a checkpoint was written; ``signum`` tells which signal."""

    def __init__(self, msg: str, signum: int, checkpoint: Path | None):
        super().__init__(msg)
        self.signum = signum
        self.checkpoint = checkpoint


class NonFiniteError(RuntimeError):
    """Too many consecutive updates with NaN/Inf; a checkpoint was written."""


class Trainer:
    """One training run (fresh or resumed). Use :meth:`run`.

    The loop (:meth:`run`) is SB3's ``learn``: :meth:`collect_rollout` fills the
    :class:`RolloutStorage`, :func:`ppo_update` learns from it, :meth:`log_update` writes the
    metrics and :meth:`after_update` checkpoints and stops on signals or non-finite streaks.
    """

    pending: RolloutContext | None
    """A collected rollout not yet learned (overlap mode, between updates)."""
    log: RunLog | DistRunLog
    rollout_sync: RolloutSync
    """torchrun: the global progress all ranks agree on."""

    def __init__(
        self,
        cfg: TrainConfig,
        resume: str | Path | None = None,
        overwrite: bool = False,
        run_dir: str | Path | None = None,
        stop_after_updates: int | None = None,
        learn: bool = True,
        dist: DistContext | None = None,
    ):
        """``stop_after_updates``: behave as if SIGINT arrived during that update (for tests);
        ``learn=False`` collects rollouts without updating the model (``bench rollout``);
        ``dist``: this process's rank (default: from torchrun's environment, or one process)."""
        cfg.validate()
        self.cfg, self.learn, self.stop_after_updates = cfg, learn, stop_after_updates
        self.rundir = RunDir(run_dir if run_dir else Path(cfg.run.out_dir) / cfg.run.name)
        self.run_dir, self.ckpt_dir = self.rundir.path, self.rundir.checkpoints
        self.device = resolve_device(cfg.run.device, cfg.ppo.num_envs)
        self.dist = dist or init_distributed(self.device, cfg.run.dist_timeout_s)
        self.device = self.dist.device
        self.learner_kind = cfg.ppo.learner
        if self.learner_kind == "process" and self.device.type != "cpu":
            log.warning("ppo.learner=process runs on the CPU only; the update runs in a thread "
                        "on %s (same results)", self.device)  # fmt: skip
            self.learner_kind = "thread"
        # torchrun: this rank's share of the envs and workers; a bad split fails before any file
        self.dist.check_workers(cfg.run.num_workers, self.dist.local_ppo(cfg.ppo).num_envs)
        # learning uses run.torch_threads (0 = all cores); acting uses one thread: small batches
        # gain nothing from more, and spinning OpenMP threads fight the env workers for the CPU.
        # With ppo.overlap the learner thread and the acting thread use one thread each.
        cores_per_rank = max(1, (os.cpu_count() or 1) // self.dist.local_world_size)
        self.learn_threads = 1 if cfg.ppo.overlap else cfg.run.torch_threads or cores_per_rank
        # torchrun: rank 0 alone prepares the run directory; the others get what it loaded
        self.resume_ckpt: CheckpointPayload | None
        self.resume_path: Path | None
        self.resume_ckpt, self.resume_path = self.dist.on_main(
            lambda: self._prepare_run_dir(resume, overwrite)
        )
        self.timing = Timing()
        self.signals = SignalGuard()

    def _prepare_run_dir(
        self, resume: str | Path | None, overwrite: bool
    ) -> tuple[CheckpointPayload | None, Path | None]:
        """Open the checkpoint to resume, or start (or refuse) a fresh run directory."""
        if resume is None:
            self.rundir.prepare_fresh(overwrite)
            return None, None
        path = find_resume_checkpoint(Path(resume))
        ckpt = load_payload(path)
        check_world_size(ckpt, self.dist.world_size, path)
        check_model_compat(ckpt, self.cfg.to_dict()["model"], path)
        try:
            check_resume_compat(config_from_dict(ckpt.config or {}), self.cfg)
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from e
        self.rundir.continue_from(RunDir(path.parent.parent), ckpt.metrics_offset)
        self.rundir.make()
        return ckpt, path

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train until the curriculum's ``total_episodes``; returns a summary dict."""
        try:
            self._setup()
        except BaseException:  # e.g. Ctrl-C during start-up: stop what was started
            self._close_started()
            raise
        exit_reason, final = "finished", None
        try:
            with self.signals:
                ctx = self.pending or self.next_rollout(slot=0)
                while ctx is not None:
                    ctx = self.learn_and_collect(ctx)
            final = self._save(FINAL)
        except WorkerError as e:
            exit_reason = "worker_failure"
            self._on_worker_failure(e)
        except RankFailure as e:
            raise RankFailure(failure_message(e, self.ckpt_dir, self.run_dir)) from e
        except LearnerError as e:
            self.log.event("learner_failure", episode=self.C.episodes, error=str(e))
            raise LearnerError(failure_message(e, self.ckpt_dir, self.run_dir,
                                               self.dist.world_size)) from e  # fmt: skip
        finally:
            self._close_started()
        return self._summary(final, exit_reason)

    def _close_started(self) -> None:
        """Stop the learner, close the run log and the env workers (those that were started)."""
        for name in ("learner", "log", "venv"):
            part = getattr(self, name, None)
            if part is not None:
                getattr(part, "shutdown" if name == "learner" else "close")()

    def learn_and_collect(self, ctx: RolloutContext) -> RolloutContext | None:
        """Learn from ``ctx``'s rollout and collect the next one (returned; ``None`` at the end).

        In overlap mode the learning runs in a background thread while the next rollout is
        collected with the policy before this update; the checkpoint then carries that rollout.
        """
        nxt = None
        job = self.learner.submit(self.update_job(ctx))
        if self.overlap:
            try:
                nxt = self.next_rollout(slot=1 - ctx.slot)
            finally:
                res = job.result()
            self.learner.publish(self.acting_model)
        else:
            res = job.result()
        stats = self.count_update(res)
        self.pending = nxt
        self.log_update(ctx, stats)
        self.after_update(stats)
        return nxt if self.overlap else self.next_rollout(slot=0)

    def next_rollout(self, slot: int) -> RolloutContext | None:
        """Collect a rollout into storage ``slot`` unless the budget is spent."""
        if self._done():
            return None
        ctx = self.begin_rollout(slot)
        self.collect_rollout(ctx)
        self._sync_rollout(ctx)
        return ctx

    def _sync_rollout(self, ctx: RolloutContext) -> None:
        """torchrun: every rank's episodes of the rollout, numbered globally; global counters."""
        if self.dist.distributed:
            self.recent[:] = self.rollout_sync.merge(self.log, self.C, ctx.finished)

    def _done(self) -> bool:
        C, cap = self.C, self.cfg.run.max_env_steps
        return C.episodes >= self.cfg.curriculum.total_episodes or bool(cap and C.env_steps >= cap)

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        """Env workers, model, optimizer, storage, state (fresh or from the checkpoint), log."""
        cfg, p = self.cfg, self.dist.local_ppo(self.cfg.ppo)  # torchrun: this rank's envs
        if self.device.type == "cpu":  # the model's init (orthogonal: QR) depends on the threads
            torch.set_num_threads(self.learn_threads)
        torch.manual_seed(cfg.run.seed)
        np.random.seed(cfg.run.seed % 2**32)
        if self.dist.is_main:
            self.rundir.config.write_text(dump_config(cfg))
        self._build(p)
        self.C = Counters()
        self.recent: list[float] = []
        if self.resume_ckpt is not None:
            self._load_state(self.resume_ckpt)
        self.dist.broadcast_module(self.model, self.acting_model)  # the same on every rank, as DDP
        self.learner.push_state()  # a learner process starts from this state
        self.log = wrap_log(self.dist, lambda: RunLog(self.rundir, cfg.run.tensorboard,
                            cfg.run.progress, cfg.curriculum.total_episodes, self.C.episodes))  # fmt: skip
        self.rollout_sync = RolloutSync(self.dist, p.num_envs, cfg.run.best_window, self.C.episodes,
                                        self.C.env_steps, list(self.recent))  # fmt: skip
        self.collector = Collector(cfg, self.venv, self.acting_model, self.device, self.storages,
                                   self.rnorm, self.C, self.recent, self.log, self.state.gen,
                                   self.timing, p.num_envs)  # fmt: skip
        if self.resume_ckpt is not None:
            self.collector.load_greedy_policy(self.resume_ckpt.greedy_policy)
        self.checkpoints = Checkpointing(self.rundir, cfg, self.dist, self.C.episodes)
        if self.resume_ckpt is None:
            self.log.write(RunStartLine(__version__, cfg.to_dict(), str(self.device),
                                        platform.node(), torch.__version__, self.dist.world_size))  # fmt: skip
        else:
            self.log.event("resumed", episode=self.C.episodes, **{"from": str(self.resume_path)})
        self.t_start, self.steps_at_start = time.monotonic(), self.C.env_steps
        self.feat0 = self.venv.feature_seconds()

    def _build(self, p: Any) -> None:
        """The env workers, the model (and its acting copy in overlap mode), the optimizer, the
        generators, the reward normaliser and the rollout storages (``p``: this rank's ppo)."""
        cfg = self.cfg
        plan = SeedPlan("train", cfg.run.seed, offset=self.dist.rank * p.num_envs)
        self.venv = VectorEnv(
            cfg.env, p.num_envs, cfg.run.num_workers, plan,
            max_restarts=cfg.run.max_worker_restarts,
        )  # fmt: skip
        self.model: ActorCritic = build_model(cfg.model, self.venv.spec, self.venv.n_actions)
        self.model.to(self.device)
        self.optim = make_optimizer(self.model, cfg)
        self.gen = torch.Generator(device="cpu")  # acting (Gumbel noise)
        self.gen.manual_seed(self.dist.rank_seed(cfg.run.seed))
        self.gen_learn = torch.Generator(device="cpu")  # minibatch order
        self.gen_learn.manual_seed(cfg.run.seed + 1)
        self.overlap = p.overlap
        self.acting_model = copy.deepcopy(self.model) if p.overlap else self.model
        self.pending = None
        self.rnorm = RunningMeanStd(p.num_envs, p.gamma)
        self.routing_now = ("softmax", 1.0)
        self.storages = [  # two in overlap mode: one learned from while the other is filled
            RolloutStorage(p.rollout_steps, p.num_envs, self.venv.spec, self.model.n_experts,
                           self.device)
            for _ in range(2 if p.overlap else 1)
        ]  # fmt: skip
        self.learner = self._make_learner(p)
        self.state = TrainingState(cfg, self.model, self.optim, self.gen, self.gen_learn,
                                   self.rnorm, self.venv)  # fmt: skip

    def _make_learner(self, p: Any) -> InlineLearner | ProcessLearner:
        """Where the update runs (:mod:`nethack_moe.ppo.learner`)."""
        parts = (self.model, self.optim, self.gen_learn, self.storages, self.dist,
                 self.learn_threads)  # fmt: skip
        if not p.overlap:
            return InlineLearner(*parts)
        if self.learner_kind == "thread":
            return ThreadLearner(*parts)
        init = LearnerInit(self.cfg.to_dict(), self.venv.spec, self.venv.n_actions,
                           self.learn_threads, self._learner_dist())  # fmt: skip
        return ProcessLearner(init, self.model, self.optim, self.gen_learn, self.storages)

    def _learner_dist(self) -> LearnerDist | None:
        """torchrun: where the ranks' learner processes meet (a free port of rank 0's host)."""
        if not self.dist.distributed:
            return None
        addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = self.dist.on_main(_free_port)
        return LearnerDist(addr, port, self.dist.rank, self.dist.world_size, self.dist.timeout_s)

    def _load_state(self, ck: CheckpointPayload) -> None:
        ck = self.dist.rank_state(ck)  # torchrun: this rank's envs, RNGs, reward statistics
        self.C, self.recent = self.state.restore(ck, self.acting_model)
        if ck.pending is not None:
            self._load_pending(ck.pending)

    def _load_pending(self, pend: dict) -> None:
        """The rollout collected but not yet learned when the checkpoint was taken."""
        if not self.overlap:
            raise CheckpointError(
                "checkpoint holds an unlearned rollout of an overlap run; resume with ppo.overlap=true"
            )
        c = pend["context"]
        ctx = RolloutContext(self.cfg.curriculum.phases[c["phase"]], c["routing"], c["temperature"],
                             c["lr"], c["slot"], [], float(c.get("teacher", 0.0)))  # fmt: skip
        self.storages[ctx.slot].load_arrays(pend["storage"])
        self.pending = ctx
        self.routing_now = (ctx.routing, ctx.temperature)

    # ------------------------------------------------------------------ rollout
    def begin_rollout(self, slot: int) -> RolloutContext:
        """The curriculum in force now: phase, routing, temperature, learning rate."""
        cur, episodes = self.cfg.curriculum, self.C.episodes
        phase = cur.phases[cur.phase_index(episodes)]
        ctx = RolloutContext(phase, phase.routing, cur.temperature_at(episodes), phase.lr, slot, [],
                             cur.teacher_at(episodes))  # fmt: skip
        self.routing_now = (ctx.routing, ctx.temperature)
        return ctx

    def collect_rollout(self, ctx: RolloutContext) -> None:
        """T steps of every env into the storage (:meth:`Collector.collect_rollout`)."""
        self.collector.collect_rollout(ctx)

    # ------------------------------------------------------------------ learning
    def update_job(self, ctx: RolloutContext) -> UpdateJob:
        """The PPO epochs on ``ctx``'s rollout (none when ``learn=False``), for the learner."""
        p = self.cfg.ppo
        settings = PPOSettings(
            epochs=p.update_epochs if self.learn else 0, minibatches=p.num_minibatches,
            clip_coef=p.clip_coef, vf_coef=p.vf_coef, clip_vloss=p.clip_vloss, norm_adv=p.norm_adv,
            max_grad_norm=p.max_grad_norm, target_kl=p.target_kl,
            coefficients={**ctx.phase.coefficients, "teacher": ctx.teacher},
        )  # fmt: skip
        return UpdateJob(ctx.slot, ctx.routing, ctx.temperature, ctx.lr, settings)

    def count_update(self, res: UpdateResult) -> UpdateStats:
        """Count a finished update (and its non-finite skip, if any); its stats."""
        stats = res.stats
        self.timing.add("learning", res.seconds)
        self.C.updates += 1
        if stats.skipped:
            self.C.nonfinite_streak += 1
            self.C.nonfinite_total += 1
            log.warning("update %d skipped: non-finite %s", self.C.updates, stats.nonfinite_term)
            self.log.event("nonfinite_skip", episode=self.C.episodes, update=self.C.updates,
                           term=stats.nonfinite_term)  # fmt: skip
        else:
            self.C.nonfinite_streak = 0
        return stats

    # ------------------------------------------------------------------ logging
    def log_update(self, ctx: RolloutContext, stats: UpdateStats) -> None:
        """One ``update`` record: curriculum, loss terms, routing figures, speed, time split."""
        C, st = self.C, self.storages[ctx.slot]
        sps = (C.env_steps - self.steps_at_start) / max(time.monotonic() - self.t_start, 1e-9)
        rec = UpdateLine(update=C.updates, episode=C.episodes, env_steps=C.env_steps,
                         phase=ctx.phase.name, routing=ctx.routing, temperature=ctx.temperature,
                         lr=ctx.lr, losses={k: stats.mean(k) for k in LOSS_TERMS})  # fmt: skip
        if self.collector.teacher_now is not None:
            rec.put({"teacher/coef": ctx.teacher, **st.teacher_agreement()})
        else:
            rec.losses["teacher"] = None  # no teacher: the term is not measured
        rec.put(dict(approx_kl=stats.mean("approx_kl"), clip_frac=stats.mean("clip_frac"),
                     explained_var=st.explained_variance(), grad_norm=stats.grad_norm,
                     skipped=stats.skipped, nonfinite_term=stats.nonfinite_term))  # fmt: skip
        rec.put(routing_figures_torch(st.alpha.flatten(0, 1)))
        rec.put(self.dist.rollout_figures(st))  # torchrun: over every rank's rollout
        feats = self.venv.feature_seconds()
        self.timing.add("features", feats - self.feat0)
        self.feat0 = feats
        rec.sps, rec.times, rec.wall = sps, self.timing.pop(), time.time()
        score = f"{np.mean(self.recent) if self.recent else 0:.1f}"
        self.log.update(rec, len(ctx.finished), {"phase": ctx.phase.name, "sps": f"{sps:.0f}",
                                                 "score": score, "T": f"{ctx.temperature:.2f}"})  # fmt: skip

    # ------------------------------------------------------------------ checkpoints and stops
    def after_update(self, stats: UpdateStats) -> None:
        """Periodic and best checkpoints; stop (with a checkpoint) on a non-finite streak or a
        signal."""
        C = self.C
        if self.checkpoints.periodic_due(C.episodes):
            self._save(PERIODIC)
        if self.checkpoints.best_due(C, self.recent):
            self._save(BEST)
        if C.nonfinite_streak >= self.cfg.run.max_nonfinite:
            self._save(PERIODIC)
            raise NonFiniteError(
                f"{C.nonfinite_streak} consecutive updates had non-finite values "
                f"(last: {stats.nonfinite_term}); stopped with a checkpoint in {self.ckpt_dir}"
            )
        if self.stop_after_updates is not None and C.updates >= self.stop_after_updates:
            self.signals.signum = self.signals.signum or signal.SIGINT
        # torchrun: a signal on any rank stops every rank; the parameters must agree
        self.signals.signum = self.dist.agree_after_update(
            self.signals.signum, self.model, C.updates
        )
        if self.signals.signum is not None:
            self._stop_on_signal(self.signals.signum)

    def _stop_on_signal(self, signum: int) -> None:
        path = self._save(PERIODIC)
        self.log.event("interrupted", episode=self.C.episodes, signal=signum)
        self.log.flush(sync=True)
        raise TrainingInterrupted(
            f"interrupted by signal {signum} at episode {self.C.episodes}; "
            f"checkpoint {path}; continue with --resume {self.run_dir}",
            signum,
            path,
        )

    def _on_worker_failure(self, e: WorkerError) -> None:
        self.collector.note_worker_restarts()  # restarts during the failing step
        self.log.event("worker_failure", episode=self.C.episodes,
                       error=str(e).strip().splitlines()[0])  # fmt: skip
        if self.dist.distributed:  # the other ranks are not in a checkpoint: keep the last one
            raise WorkerError(f"{e}; rank {self.dist.rank} stopped; the last checkpoint in "
                              f"{self.ckpt_dir} stays usable") from e  # fmt: skip
        self._save(PERIODIC)
        raise WorkerError(f"{e}; stopped with a checkpoint in {self.ckpt_dir}") from e

    def _pending_payload(self) -> dict | None:
        """The collected, not yet learned rollout (overlap mode), so that resume is exact."""
        if self.pending is None:
            return None
        index = self.cfg.curriculum.phases.index(self.pending.phase)
        return {"context": self.pending.to_dict(index),
                "storage": self.storages[self.pending.slot].arrays()}  # fmt: skip

    def _save(self, kind: str) -> Path:
        """A checkpoint of ``kind`` (periodic, best, final) of the state now."""
        self.learner.pull_state()  # a learner process: its model, optimizer and generator
        payload = self.state.capture(self.C, self.recent, self.routing_now, self._pending_payload())
        payload.greedy_policy = self.collector.greedy_policy_state()
        return self.checkpoints.write(kind, payload, self.log, self.C.episodes)

    def _summary(self, final: Path | None, exit_reason: str) -> dict[str, Any]:
        wall = time.monotonic() - self.t_start
        return {
            "run_dir": str(self.run_dir), "episodes": self.C.episodes, "env_steps": self.C.env_steps,
            "wall_s": wall, "train_sps": (self.C.env_steps - self.steps_at_start) / max(wall, 1e-9),
            "final": str(final), "best_mean_score": self.C.best_score, "exit": exit_reason,
            "device": str(self.device), "world_size": self.dist.world_size,
        }  # fmt: skip


def _free_port() -> int:
    """A TCP port free on this host now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def train(
    cfg: TrainConfig, resume: str | Path | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Run (or resume) a training run; see :class:`Trainer`."""
    return Trainer(cfg, resume=resume, overwrite=overwrite).run()
