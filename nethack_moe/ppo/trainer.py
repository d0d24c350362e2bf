"""PPO over the vector env under the routing curriculum: the ``nethack-moe train`` job.

:meth:`Trainer.run` is the loop: collect a rollout of T steps x N envs into the
:class:`~nethack_moe.ppo.storage.RolloutStorage` with the phase's routing and temperature
(acting through :func:`~nethack_moe.ppo.acting.act`), GAE per env in time order, the PPO epochs
(:func:`~nethack_moe.ppo.update.ppo_update`, the same ``act`` on the stored inputs), log,
checkpoint. The pieces around it (timing, run log, signals) are in :mod:`nethack_moe.ppo.hooks`.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import platform
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nethack_moe import __version__
from nethack_moe.config.curriculum import Phase
from nethack_moe.config.train import TrainConfig, config_from_dict, dump_config
from nethack_moe.core.device import resolve_device
from nethack_moe.core.errors import ConfigError
from nethack_moe.envs.accounting import EpisodeRecord
from nethack_moe.envs.factory import SeedPlan
from nethack_moe.envs.vector import VectorEnv, WorkerError
from nethack_moe.metrics.routing import routing_figures_torch
from nethack_moe.models.acting import Obs, Teacher, act, gumbel_noise
from nethack_moe.models.policy import ActorCritic, build_model
from nethack_moe.ppo.dist_log import DistRunLog, RolloutSync, wrap_log
from nethack_moe.ppo.distributed import (
    DistContext,
    RankFailure,
    check_world_size,
    failure_message,
    init_distributed,
)
from nethack_moe.ppo.hooks import RunLog, SignalGuard, Timing
from nethack_moe.ppo.storage import RolloutStorage
from nethack_moe.ppo.update import LOSS_TERMS, PPOSettings, UpdateStats, ppo_update
from nethack_moe.runs.checkpoint import (
    CheckpointError,
    check_model_compat,
    load_checkpoint,
    save_checkpoint,
)
from nethack_moe.runs.resume import check_resume_compat
from nethack_moe.runs.rundir import RunDirExists, find_resume_checkpoint, repair_metrics

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM: a checkpoint was written; ``signum`` tells which signal."""

    def __init__(self, msg: str, signum: int, checkpoint: Path | None):
        super().__init__(msg)
        self.signum = signum
        self.checkpoint = checkpoint


class NonFiniteError(RuntimeError):
    """Too many consecutive updates with NaN/Inf; a checkpoint was written."""


class RunningMeanStd:
    """Running variance of the discounted return, for reward scaling (as in SB3 VecNormalize)."""

    def __init__(self, n: int, gamma: float):
        self.gamma = gamma
        self.ret = np.zeros(n, np.float64)
        self.mean = 0.0
        self.var = 1.0
        self.count = 1e-4

    def scale(
        self, reward: np.ndarray, done: np.ndarray, lo: int = 0, hi: int | None = None
    ) -> np.ndarray:
        """Scale the rewards of envs ``lo..hi-1`` and update the running statistics."""
        ret = self.ret[lo:hi]
        ret *= self.gamma
        ret += reward
        b_mean, b_var, b_n = float(ret.mean()), float(ret.var()), ret.size
        delta = b_mean - self.mean
        tot = self.count + b_n
        self.mean += delta * b_n / tot
        m2 = self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / tot
        self.var = m2 / tot
        self.count = tot
        ret[done] = 0.0
        return reward / math.sqrt(self.var + 1e-8)

    def state(self) -> dict:
        return {
            "ret": torch.from_numpy(self.ret.copy()),
            "mean": self.mean,
            "var": self.var,
            "count": self.count,
        }

    def load(self, s: dict) -> None:
        self.ret = s["ret"].numpy().astype(np.float64)
        self.mean, self.var, self.count = float(s["mean"]), float(s["var"]), float(s["count"])


@dataclass
class Counters:
    """Progress counters saved in every checkpoint."""

    episodes: int = 0
    env_steps: int = 0
    updates: int = 0
    best_score: float = -math.inf
    nonfinite_streak: int = 0
    nonfinite_total: int = 0
    dropped_episodes: int = 0
    worker_restarts: int = 0


@dataclass
class RolloutContext:
    """What one rollout acts under: the curriculum at its start."""

    phase: Phase
    routing: str
    temperature: float
    lr: float
    slot: int
    """Which of the (one or two) rollout storages this rollout is in."""
    finished: list[EpisodeRecord]
    teacher: float = 0.0
    """The kickstarting coefficient λ at the rollout's start (``curriculum.teacher_at``)."""

    def to_dict(self, phase_index: int) -> dict[str, Any]:
        """For a checkpoint taken while this rollout waits to be learned (overlap mode)."""
        return {"phase": phase_index, "routing": self.routing, "temperature": self.temperature,
                "lr": self.lr, "slot": self.slot, "finished": len(self.finished),
                "teacher": self.teacher}  # fmt: skip


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
        self.run_dir = Path(run_dir) if run_dir else Path(cfg.run.out_dir) / cfg.run.name
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = resolve_device(cfg.run.device)
        self.dist = dist or init_distributed(self.device, cfg.run.dist_timeout_s)
        self.device = self.dist.device
        # torchrun: this rank's share of the envs and workers; a bad split fails before any file
        self.dist.check_workers(cfg.run.num_workers, self.dist.local_ppo(cfg.ppo).num_envs)
        # learning uses run.torch_threads (0 = all cores); acting uses one thread: small batches
        # gain nothing from more, and spinning OpenMP threads fight the env workers for the CPU.
        # With ppo.overlap the learner thread and the acting thread use one thread each.
        cores_per_rank = max(1, (os.cpu_count() or 1) // self.dist.local_world_size)
        self.learn_threads = 1 if cfg.ppo.overlap else cfg.run.torch_threads or cores_per_rank
        self.resume_ckpt: dict | None = None
        self.resume_path: Path | None = None
        # torchrun: rank 0 alone prepares the run directory; the others get what it loaded
        self.resume_ckpt, self.resume_path = self.dist.on_main(
            lambda: self._prepare_run_dir(resume, overwrite)
        )
        self.timing = Timing()
        self.signals = SignalGuard()

    def _prepare_run_dir(
        self, resume: str | Path | None, overwrite: bool
    ) -> tuple[dict | None, Path | None]:
        """Open the checkpoint to resume, or start (or refuse) a fresh run directory."""
        if resume is not None:
            self._open_resume(Path(resume))
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            if not overwrite:
                raise RunDirExists(
                    f"run directory {str(self.run_dir)!r} exists; pass --resume {self.run_dir} to "
                    "continue it or --overwrite to start again"
                )
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(exist_ok=True)
        return self.resume_ckpt, self.resume_path

    def _open_resume(self, target: Path) -> None:

        self.resume_path = find_resume_checkpoint(target)
        self.resume_ckpt = load_checkpoint(self.resume_path)
        check_world_size(self.resume_ckpt, self.dist.world_size, self.resume_path)
        check_model_compat(self.resume_ckpt, self.cfg.to_dict()["model"], self.resume_path)
        try:
            check_resume_compat(config_from_dict(self.resume_ckpt["config"]), self.cfg)
        except ConfigError as e:
            raise CheckpointError(f"{self.resume_path}: {e}") from e
        self._prepare_resumed_dir(self.resume_path.parent.parent)

    def _prepare_resumed_dir(self, src_run: Path) -> None:
        assert self.resume_ckpt is not None
        offset = self.resume_ckpt.get("metrics_offset")
        if src_run.resolve() == self.run_dir.resolve():
            repair_metrics(self.run_dir / "metrics.jsonl", offset)
            return
        # continuing into a new run directory (e.g. finetune_7000 from s500): carry the history
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise RunDirExists(
                f"run directory {str(self.run_dir)!r} exists; choose another run.name or remove it"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        src = src_run / "metrics.jsonl"
        if src.exists():
            data = src.read_bytes()
            (self.run_dir / "metrics.jsonl").write_bytes(data if offset is None else data[:offset])

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train until the curriculum's ``total_episodes``; returns a summary dict."""
        self._setup()
        exit_reason, final = "finished", None
        try:
            with self.signals:
                ctx = self.pending or self.next_rollout(slot=0)
                while ctx is not None:
                    ctx = self.learn_and_collect(ctx)
            final = self._save("final.pt", "final")
        except WorkerError as e:
            exit_reason = "worker_failure"
            self._on_worker_failure(e)
        except RankFailure as e:
            raise RankFailure(failure_message(e, self.ckpt_dir, self.run_dir)) from e
        finally:
            if self.learner is not None:
                self.learner.shutdown()
            self.log.close()
            self.venv.close()
        return self._summary(final, exit_reason)

    def learn_and_collect(self, ctx: RolloutContext) -> RolloutContext | None:
        """Learn from ``ctx``'s rollout and collect the next one (returned; ``None`` at the end).

        In overlap mode the learning runs in a background thread while the next rollout is
        collected with the policy before this update; the checkpoint then carries that rollout.
        """
        nxt = None
        if self.learner is None:
            stats = self.learn_from_rollout(ctx)
        else:
            job = self.learner.submit(self.learn_from_rollout, ctx)
            try:
                nxt = self.next_rollout(slot=1 - ctx.slot)
            finally:
                stats = job.result()
            self.acting_model.load_state_dict(self.model.state_dict())
        self.pending = nxt
        self.log_update(ctx, stats)
        self.after_update(stats)
        return nxt if self.learner is not None else self.next_rollout(slot=0)

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
            (self.run_dir / "config.yaml").write_text(dump_config(cfg))
        plan = SeedPlan("train", cfg.run.seed, offset=self.dist.rank * p.num_envs)
        self.venv = VectorEnv(
            cfg.env, p.num_envs, cfg.run.num_workers, plan,
            max_restarts=cfg.run.max_worker_restarts,
        )  # fmt: skip
        self.model: ActorCritic = build_model(cfg.model, self.venv.spec, self.venv.n_actions)
        self.model.to(self.device)
        self.optim = torch.optim.Adam(
            self.model.parameters(), lr=cfg.curriculum.lr_at(0), eps=p.adam_eps
        )
        self.gen = torch.Generator(device="cpu")  # acting (Gumbel noise)
        self.gen.manual_seed(self.dist.rank_seed(cfg.run.seed))
        self.gen_learn = torch.Generator(device="cpu")  # minibatch order
        self.gen_learn.manual_seed(cfg.run.seed + 1)
        self.acting_model = self.model
        self.learner: ThreadPoolExecutor | None = None
        if p.overlap:
            self.acting_model = copy.deepcopy(self.model)
            self.learner = ThreadPoolExecutor(1, thread_name_prefix="learner")
        self.pending = None
        self.rnorm = RunningMeanStd(p.num_envs, p.gamma)
        self.C = Counters()
        self.recent: list[float] = []
        self.routing_now = ("softmax", 1.0)
        n_experts, spec = self.model.n_experts, self.venv.spec
        self.storages = [  # two in overlap mode: one learned from while the other is filled
            RolloutStorage(p.rollout_steps, p.num_envs, spec, n_experts, self.device)
            for _ in range(2 if p.overlap else 1)
        ]
        buf = self.venv.buf  # zero-copy views of the shared arrays
        self.obs_now = Obs(*(torch.from_numpy(a) for a in (buf.state, buf.crop, buf.atoms)))
        self.teacher_now = (  # env.teacher: the advice on obs_now (zero-copy views)
            Teacher(torch.from_numpy(buf.teacher_action), torch.from_numpy(buf.teacher_branch))
            if cfg.env.teacher
            else None
        )
        gsz = p.num_envs // p.env_groups
        self.groups = [(g * gsz, (g + 1) * gsz) for g in range(p.env_groups)]
        self.noise = {lo: torch.empty(hi - lo, self.venv.n_actions) for lo, hi in self.groups}
        if self.resume_ckpt is not None:
            self._load_state(self.resume_ckpt)
        self.dist.broadcast_module(self.model, self.acting_model)  # the same on every rank, as DDP
        self.log = wrap_log(self.dist, lambda: RunLog(self.run_dir, cfg.run.tensorboard,
                            cfg.run.progress, cfg.curriculum.total_episodes, self.C.episodes))  # fmt: skip
        self.rollout_sync = RolloutSync(self.dist, p.num_envs, cfg.run.best_window, self.C.episodes,
                                        self.C.env_steps, list(self.recent))  # fmt: skip
        if self.resume_ckpt is None:
            self.log.write({"type": "run_start", "version": __version__, "config": cfg.to_dict(),
                            "device": str(self.device), "machine": platform.node(),
                            "torch": torch.__version__, "world_size": self.dist.world_size})  # fmt: skip
        else:
            self.log.event("resumed", episode=self.C.episodes, **{"from": str(self.resume_path)})
        self.t_start, self.steps_at_start = time.monotonic(), self.C.env_steps
        self.feat0 = self.venv.feature_seconds()
        self.last_ckpt_bucket = self.C.episodes // cfg.run.checkpoint_every

    def _load_state(self, ck: dict) -> None:
        ck = self.dist.rank_state(ck)  # torchrun: this rank's envs, RNGs, reward statistics
        self.model.load_state_dict(ck["model"])
        self.acting_model.load_state_dict(ck["model"])
        self.optim.load_state_dict(ck["optimizer"])
        self.gen.set_state(ck["rng"]["sample"])
        self.gen_learn.set_state(ck["rng"]["learn"])
        torch.set_rng_state(ck["rng"]["torch"])
        self.rnorm.load(ck["reward_norm"])
        self.C = Counters(**ck["counters"])
        self.recent = [float(x) for x in ck["recent_scores"]]
        self.venv.set_state({k: v.numpy() for k, v in ck["env_state"].items()})
        if ck.get("pending") is not None:
            self._load_pending(ck["pending"])

    def _load_pending(self, pend: dict) -> None:
        """The rollout collected but not yet learned when the checkpoint was taken."""
        if self.learner is None:
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
        """T steps of every env into the storage. Envs are split into contiguous groups: while
        the workers step one group, this process computes the next group's actions."""
        self.acting_model.eval()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        T, p = self.cfg.ppo.rollout_steps, self.cfg.ppo
        for t in range(T + 1):
            for lo, hi in self.groups:
                if t > 0:
                    with self.timing.add_time("env"):
                        self.venv.step_wait(lo, hi)
                    self._record_step(t - 1, lo, hi, ctx)
                if t < T:
                    with self.timing.add_time("inference"):
                        actions = self._act(t, lo, hi, ctx)
                    self.venv.step_async(actions, lo, hi)
        self._note_worker_restarts()
        with torch.no_grad():
            obs = self.obs_now.to(self.device)
            last_v = self.acting_model(*obs, ctx.routing, ctx.temperature).value
        self.storages[ctx.slot].compute_returns(last_v, p.gamma, p.gae_lambda)

    @torch.no_grad()
    def _act(self, t: int, lo: int, hi: int, ctx: RolloutContext) -> np.ndarray:
        obs = self.obs_now.rows(slice(lo, hi)).to(self.device, non_blocking=True)
        noise = gumbel_noise((hi - lo, self.venv.n_actions), self.gen, out=self.noise[lo])
        res = act(self.acting_model, obs, ctx.routing, ctx.temperature, noise=noise)
        st = self.storages[ctx.slot]
        st.store_act(t, lo, hi, obs, res)
        if self.teacher_now is not None:  # the advice on the same observations, never an input
            st.store_teacher(t, lo, hi, *self.teacher_now.rows(slice(lo, hi)).to(self.device))
        return res.action.cpu().numpy()

    def _record_step(self, t: int, lo: int, hi: int, ctx: RolloutContext) -> None:
        """Reward (scaled; truncation bootstrapped with V of the last observation) and done."""
        buf, p = self.venv.buf, self.cfg.ppo
        done = buf.terminated[lo:hi] | buf.truncated[lo:hi]
        r = buf.reward[lo:hi].astype(np.float64)
        if p.reward_norm:
            r = self.rnorm.scale(r, done, lo, hi)
        r_t = torch.as_tensor(r, dtype=torch.float32)
        # only a truncated episode has a future; a death flagged truncated too stays a death
        trunc = np.flatnonzero(buf.truncated[lo:hi] & ~buf.terminated[lo:hi]) + lo
        if trunc.size:
            final = Obs(
                *(
                    torch.from_numpy(a[trunc])
                    for a in (buf.final_state, buf.final_crop, buf.final_atoms)
                )
            )
            with torch.no_grad():
                v = self.acting_model(*final.to(self.device), ctx.routing, ctx.temperature).value
            r_t[trunc - lo] += p.gamma * v.float().cpu()
        done_t = torch.as_tensor(done, dtype=torch.float32)
        self.storages[ctx.slot].store_step(t, lo, hi, r_t.to(self.device), done_t.to(self.device))
        self.C.env_steps += hi - lo
        for e in self.venv.finished(lo, hi):
            self._episode(e, ctx)

    def _episode(self, e: EpisodeRecord, ctx: RolloutContext) -> None:
        C = self.C
        C.episodes += 1
        self.recent.append(float(e.score))
        del self.recent[: -self.cfg.run.best_window]
        ctx.finished.append(e)
        self.log.episode({"type": "episode", "episode": C.episodes, "env_steps": C.env_steps,
                          "score": e.score, "reward": e.reward, "length": e.length, "depth": e.depth,
                          "died": e.died, "phase": ctx.phase.name, "temperature": ctx.temperature,
                          "routing": ctx.routing, "seed_core": e.seed_core, "seed_disp": e.seed_disp,
                          "env_index": e.env_index, "wall": time.time()})  # fmt: skip

    def _note_worker_restarts(self) -> None:
        venv, C = self.venv, self.C
        if venv.worker_restarts != C.worker_restarts:
            self.log.event("worker_restart", episode=C.episodes, dropped_total=venv.dropped_episodes,
                           count=venv.worker_restarts - C.worker_restarts)  # fmt: skip
            C.dropped_episodes, C.worker_restarts = venv.dropped_episodes, venv.worker_restarts

    # ------------------------------------------------------------------ learning
    def learn_from_rollout(self, ctx: RolloutContext) -> UpdateStats:
        """The PPO epochs on ``ctx``'s rollout (none when ``learn=False``)."""
        p = self.cfg.ppo
        for g in self.optim.param_groups:
            g["lr"] = ctx.lr
        settings = PPOSettings(
            epochs=p.update_epochs if self.learn else 0, minibatches=p.num_minibatches,
            clip_coef=p.clip_coef, vf_coef=p.vf_coef, clip_vloss=p.clip_vloss, norm_adv=p.norm_adv,
            max_grad_norm=p.max_grad_norm, target_kl=p.target_kl,
            coefficients={**ctx.phase.coefficients, "teacher": ctx.teacher},
        )  # fmt: skip
        if self.device.type == "cpu":  # per OS thread: the learner thread sets its own
            torch.set_num_threads(self.learn_threads)
        with self.timing.add_time("learning"):
            stats = ppo_update(self.model, self.optim, self.storages[ctx.slot], ctx.routing,
                               ctx.temperature, settings, self.gen_learn, self.dist)  # fmt: skip
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
        rec: dict[str, Any] = {
            "type": "update", "update": C.updates, "episode": C.episodes, "env_steps": C.env_steps,
            "phase": ctx.phase.name, "routing": ctx.routing, "temperature": ctx.temperature,
            "lr": ctx.lr,
        }  # fmt: skip
        for k in LOSS_TERMS:
            rec[f"loss/{k}"] = stats.mean(k)
        if self.teacher_now is not None:
            rec["teacher/coef"] = ctx.teacher
            rec.update(st.teacher_agreement())
        else:
            rec["loss/teacher"] = None  # no teacher: the term is not measured
        rec.update(approx_kl=stats.mean("approx_kl"), clip_frac=stats.mean("clip_frac"),
                   explained_var=st.explained_variance(), grad_norm=stats.grad_norm,
                   skipped=stats.skipped, nonfinite_term=stats.nonfinite_term)  # fmt: skip
        rec.update(routing_figures_torch(st.alpha.flatten(0, 1)))
        rec.update(self.dist.rollout_figures(st))  # torchrun: over every rank's rollout
        feats = self.venv.feature_seconds()
        self.timing.add("features", feats - self.feat0)
        self.feat0 = feats
        rec["sps"] = sps
        rec.update({f"time/{k}": v for k, v in self.timing.pop().items()})
        rec["wall"] = time.time()
        score = f"{np.mean(self.recent) if self.recent else 0:.1f}"
        self.log.update(rec, len(ctx.finished), {"phase": ctx.phase.name, "sps": f"{sps:.0f}",
                                                 "score": score, "T": f"{ctx.temperature:.2f}"})  # fmt: skip

    # ------------------------------------------------------------------ checkpoints and stops
    def after_update(self, stats: UpdateStats) -> None:
        """Periodic and best checkpoints; stop (with a checkpoint) on a non-finite streak or a
        signal."""
        cfg, C = self.cfg, self.C
        bucket = C.episodes // cfg.run.checkpoint_every
        if bucket > self.last_ckpt_bucket:
            self.last_ckpt_bucket = bucket
            self._save(f"ep_{C.episodes:06d}.pt", "periodic")
        recent = float(np.mean(self.recent)) if len(self.recent) >= cfg.run.best_window else None
        if recent is not None and recent > C.best_score:
            C.best_score = recent
            self._save("best.pt", "best")
        if C.nonfinite_streak >= cfg.run.max_nonfinite:
            self._save(f"ep_{C.episodes:06d}.pt", "periodic")
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
        path = self._save(f"ep_{self.C.episodes:06d}.pt", "periodic")
        self.log.event("interrupted", episode=self.C.episodes, signal=signum)
        self.log.flush(sync=True)
        raise TrainingInterrupted(
            f"interrupted by signal {signum} at episode {self.C.episodes}; "
            f"checkpoint {path}; continue with --resume {self.run_dir}",
            signum,
            path,
        )

    def _on_worker_failure(self, e: WorkerError) -> None:
        self._note_worker_restarts()  # restarts during the failing step
        self.log.event("worker_failure", episode=self.C.episodes,
                       error=str(e).strip().splitlines()[0])  # fmt: skip
        if self.dist.distributed:  # the other ranks are not in a checkpoint: keep the last one
            raise WorkerError(f"{e}; rank {self.dist.rank} stopped; the last checkpoint in "
                              f"{self.ckpt_dir} stays usable") from e  # fmt: skip
        self._save(f"ep_{self.C.episodes:06d}.pt", "periodic")
        raise WorkerError(f"{e}; stopped with a checkpoint in {self.ckpt_dir}") from e

    def _payload(self) -> dict:
        """Everything needed to resume exactly, and the routing the policy last acted with."""
        env_state = {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.venv.get_state().items()
        }
        return {
            "version": __version__, "config": self.cfg.to_dict(), "config_yaml": dump_config(self.cfg),
            "model": self.model.state_dict(), "optimizer": self.optim.state_dict(),
            "rng": {"sample": self.gen.get_state(), "learn": self.gen_learn.get_state(),
                    "torch": torch.get_rng_state()},
            "reward_norm": self.rnorm.state(), "counters": dict(self.C.__dict__),
            "recent_scores": list(self.recent), "env_state": env_state,
            "n_actions": int(self.venv.n_actions), "torch": str(torch.__version__),
            "routing": {"kind": self.routing_now[0], "temperature": float(self.routing_now[1])},
            "pending": self._pending_payload(),
        }  # fmt: skip

    def _pending_payload(self) -> dict | None:
        """The collected, not yet learned rollout (overlap mode), so that resume is exact."""
        if self.pending is None:
            return None
        index = self.cfg.curriculum.phases.index(self.pending.phase)
        return {"context": self.pending.to_dict(index),
                "storage": self.storages[self.pending.slot].arrays()}  # fmt: skip

    def _save(self, name: str, kind: str) -> Path:
        # torchrun: every rank's envs and RNGs to rank 0, which alone writes the file
        payload = self.dist.gather_rank_state(self._payload())
        if payload is None:
            return self.ckpt_dir / name
        self.log.flush(sync=True)
        payload["metrics_offset"] = self.log.offset()
        path = self.ckpt_dir / name
        save_checkpoint(path, payload)
        self.log.write({"type": "checkpoint", "episode": self.C.episodes, "kind": kind,
                        "path": str(path.relative_to(self.run_dir))})  # fmt: skip
        if kind == "periodic" and self.cfg.run.keep_checkpoints > 0:
            for old in sorted(self.ckpt_dir.glob("ep_*.pt"))[: -self.cfg.run.keep_checkpoints]:
                old.unlink(missing_ok=True)
        return path

    def _summary(self, final: Path | None, exit_reason: str) -> dict[str, Any]:
        wall = time.monotonic() - self.t_start
        return {
            "run_dir": str(self.run_dir), "episodes": self.C.episodes, "env_steps": self.C.env_steps,
            "wall_s": wall, "train_sps": (self.C.env_steps - self.steps_at_start) / max(wall, 1e-9),
            "final": str(final), "best_mean_score": self.C.best_score, "exit": exit_reason,
            "device": str(self.device), "world_size": self.dist.world_size,
        }  # fmt: skip


def train(
    cfg: TrainConfig, resume: str | Path | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Run (or resume) a training run; see :class:`Trainer`."""
    return Trainer(cfg, resume=resume, overwrite=overwrite).run()
