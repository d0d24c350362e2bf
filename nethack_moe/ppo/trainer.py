"""PPO over the vector env under the routing curriculum: the ``nethack-moe train`` job.

Reads top to bottom like CleanRL's ``ppo.py``: collect a rollout of T steps x N envs into
preallocated storage with the phase's routing and temperature, compute GAE per env in time order,
run minibatch epochs of the same ``model.forward`` on the same inputs, log, checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nethack_moe import __version__
from nethack_moe.analysis.routing import routing_figures_torch
from nethack_moe.checkpoint import (
    CheckpointError,
    check_model_compat,
    load_checkpoint,
    save_checkpoint,
)
from nethack_moe.config import ConfigError, TrainConfig, config_from_dict, dump_config
from nethack_moe.curriculum import Phase
from nethack_moe.envs.accounting import EpisodeRecord
from nethack_moe.envs.vector import SeedPlan, VectorEnv, WorkerError
from nethack_moe.models.policy import ActorCritic, build_model
from nethack_moe.ppo.gae import compute_gae
from nethack_moe.ppo.loss import LossBatch, ppo_loss

log = logging.getLogger(__name__)

TIME_KEYS = ("wall", "sps", "time/env", "time/inference", "time/learning", "time/features")


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM: a checkpoint was written; ``signum`` tells which signal."""

    def __init__(self, msg: str, signum: int, checkpoint: Path | None):
        super().__init__(msg)
        self.signum = signum
        self.checkpoint = checkpoint


class NonFiniteError(RuntimeError):
    """Too many consecutive updates with NaN/Inf; a checkpoint was written."""


class RunDirExists(FileExistsError):
    """The run directory exists and neither --resume nor --overwrite was given."""


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={name!r} but CUDA is not available on this machine")
    return torch.device(name)


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
class _RolloutContext:
    """What the current rollout acts under (set at the start of every rollout)."""

    phase: Phase
    routing: str
    temperature: float
    finished: list[EpisodeRecord]


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


class MetricsWriter:
    """Append-only JSONL; each record is one line, flushed at once."""

    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def flush(self, sync: bool = False) -> None:
        self.f.flush()
        if sync:
            os.fsync(self.f.fileno())

    def offset(self) -> int:
        self.f.flush()
        return self.f.tell()

    def close(self) -> None:
        self.f.close()


def repair_metrics(path: Path, offset: int | None) -> None:
    """Truncate ``metrics.jsonl`` to a checkpoint's offset (drops a torn line and any records
    written after the checkpoint, so nothing is counted twice on resume)."""
    if not path.exists():
        return
    size = path.stat().st_size
    if offset is None:
        # no offset known: drop only a torn last line
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        offset = cut
    if offset < size:
        with open(path, "r+b") as f:
            f.truncate(offset)
        log.info(
            "metrics.jsonl truncated from %d to %d bytes (records after the checkpoint dropped)",
            size,
            offset,
        )


def find_resume_checkpoint(target: Path) -> Path:
    """A checkpoint file, or the newest *loadable* checkpoint of a run directory."""
    if target.is_file():
        return target
    ck = target / "checkpoints"
    if not ck.is_dir():
        raise CheckpointError(
            f"{str(target)!r} is neither a checkpoint file nor a run directory with checkpoints/"
        )
    cands = []
    for p in ck.glob("*.pt"):
        if p.name == "best.pt":
            continue
        try:
            data = load_checkpoint(p)
        except CheckpointError as e:
            log.warning("skipping unusable checkpoint %s: %s", p, e)
            continue
        cands.append((int(data["counters"]["episodes"]), int(data["counters"]["updates"]), p))
    if not cands:
        raise CheckpointError(f"no complete checkpoint in {str(ck)!r}")
    return max(cands)[2]


class Trainer:
    """One training run (fresh or resumed). Use :meth:`run`."""

    def __init__(
        self,
        cfg: TrainConfig,
        resume: str | Path | None = None,
        overwrite: bool = False,
        run_dir: str | Path | None = None,
        stop_after_updates: int | None = None,
        learn: bool = True,
    ):
        """``stop_after_updates``: behave as if SIGINT arrived during that update (for tests);
        ``learn=False`` collects rollouts without updating the model (``bench rollout``)."""
        cfg.validate()
        self.stop_after_updates = stop_after_updates
        self.learn = learn
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir else Path(cfg.run.out_dir) / cfg.run.name
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = resolve_device(cfg.run.device)
        # learning uses run.torch_threads (0 = all cores); acting uses one thread: small batches
        # gain nothing from more, and spinning OpenMP threads fight the env workers for the CPU.
        # (Fixed whatever the number of workers, so results do not depend on it.)
        self.learn_threads = cfg.run.torch_threads or (os.cpu_count() or 1)
        self.act_threads = 1
        self.resume_ckpt: dict | None = None
        self.resume_path: Path | None = None
        if resume is not None:
            self.resume_path = find_resume_checkpoint(Path(resume))
            self.resume_ckpt = load_checkpoint(self.resume_path)
            check_model_compat(self.resume_ckpt, cfg.to_dict()["model"], self.resume_path)
            old = config_from_dict(self.resume_ckpt["config"])
            if old.ppo.num_envs != cfg.ppo.num_envs or old.env != cfg.env:
                raise CheckpointError(
                    f"checkpoint {str(self.resume_path)!r} was trained with other env settings "
                    f"(num_envs {old.ppo.num_envs} vs {cfg.ppo.num_envs}, env {old.env} vs {cfg.env})"
                )
            src_run = self.resume_path.parent.parent
            self._prepare_resumed_dir(src_run)
        else:
            if self.run_dir.exists() and any(self.run_dir.iterdir()):
                if not overwrite:
                    raise RunDirExists(
                        f"run directory {str(self.run_dir)!r} exists; pass --resume {self.run_dir} to "
                        "continue it or --overwrite to start again"
                    )
                shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(exist_ok=True)
        self._stop_signal: int | None = None

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
            if offset is not None:
                data = data[:offset]
            (self.run_dir / "metrics.jsonl").write_bytes(data)

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is None:
            log.warning(
                "signal %d received: finishing the current update, then checkpointing", signum
            )
        self._stop_signal = signum

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        """Train until the curriculum's ``total_episodes``; returns a summary dict."""
        cfg = self.cfg
        p = cfg.ppo
        cur = cfg.curriculum
        dev = self.device
        torch.manual_seed(cfg.run.seed)
        np.random.seed(cfg.run.seed % 2**32)
        (self.run_dir / "config.yaml").write_text(dump_config(cfg))

        venv = VectorEnv(
            cfg.env,
            p.num_envs,
            cfg.run.num_workers,
            SeedPlan("train", cfg.run.seed),
            max_restarts=cfg.run.max_worker_restarts,
        )
        spec = venv.spec
        model: ActorCritic = build_model(cfg.model, spec, venv.n_actions).to(dev)
        optim = torch.optim.Adam(model.parameters(), lr=cur.lr_at(0), eps=p.adam_eps)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(cfg.run.seed)
        rnorm = RunningMeanStd(p.num_envs, p.gamma)
        C = Counters()
        recent: list[float] = []
        if self.resume_ckpt is not None:
            ck = self.resume_ckpt
            model.load_state_dict(ck["model"])
            optim.load_state_dict(ck["optimizer"])
            gen.set_state(ck["rng"]["sample"])
            torch.set_rng_state(ck["rng"]["torch"])
            rnorm.load(ck["reward_norm"])
            C = Counters(**ck["counters"])
            recent = [float(x) for x in ck["recent_scores"]]
            venv.set_state({k: v.numpy() for k, v in ck["env_state"].items()})
        metrics = MetricsWriter(self.run_dir / "metrics.jsonl")
        tb = None
        if cfg.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(self.run_dir / "tb"))
        if self.resume_ckpt is None:
            metrics.write(
                {"type": "run_start", "version": __version__, "config": cfg.to_dict(), "device": str(dev),
                 "machine": platform.node(), "torch": torch.__version__}
            )  # fmt: skip
        else:
            metrics.write(
                {
                    "type": "event",
                    "kind": "resumed",
                    "episode": C.episodes,
                    "from": str(self.resume_path),
                }
            )

        # ---- preallocated rollout storage [T, N, ...] ----
        T, N = p.rollout_steps, p.num_envs
        Cc = spec.crop_size
        obs_state = torch.zeros((T, N, spec.state_dim), device=dev)
        obs_crop = torch.zeros((T, N, Cc, Cc), dtype=torch.int16, device=dev)
        obs_atoms = torch.zeros((T, N, spec.n_atoms), dtype=torch.bool, device=dev)
        actions = torch.zeros((T, N), dtype=torch.long, device=dev)
        logps = torch.zeros((T, N), device=dev)
        values = torch.zeros((T, N), device=dev)
        rewards = torch.zeros((T, N), device=dev)
        dones = torch.zeros((T, N), device=dev)
        E = model.n_experts
        alphas = torch.zeros((T, N, E), device=dev)
        buf = venv.buf
        gsz = N // p.env_groups
        groups = [(g * gsz, (g + 1) * gsz) for g in range(p.env_groups)]
        b_state = torch.from_numpy(buf.state)  # zero-copy views of the shared arrays
        b_crop = torch.from_numpy(buf.crop)
        b_atoms = torch.from_numpy(buf.atoms)

        old_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old_handlers:
            signal.signal(s, self._on_signal)
        pbar = None
        if cfg.run.progress:
            from tqdm import tqdm

            pbar = tqdm(total=cur.total_episodes, initial=C.episodes, unit="ep", dynamic_ncols=True)
        t_start = time.monotonic()
        steps_at_start = C.env_steps
        feat0 = venv.feature_seconds()
        last_ckpt_bucket = C.episodes // cfg.run.checkpoint_every
        exit_reason = "finished"
        try:
            ctx = _RolloutContext(cur.phases[0], "softmax", 1.0, [])

            def state() -> dict:
                return self._ckpt_payload(model, optim, gen, rnorm, C, recent, venv, metrics)

            def act_on(t: int, lo: int, hi: int) -> np.ndarray:
                with torch.no_grad():
                    s_t = b_state[lo:hi].to(dev, non_blocking=True)
                    c_t = b_crop[lo:hi].to(dev, non_blocking=True)
                    a_t = b_atoms[lo:hi].to(dev, non_blocking=True)
                    obs_state[t, lo:hi].copy_(s_t)
                    obs_crop[t, lo:hi].copy_(c_t)
                    obs_atoms[t, lo:hi].copy_(a_t)
                    out = model(s_t, c_t, a_t, ctx.routing, ctx.temperature)
                    logits = out.logits.float()
                    u = torch.rand(logits.shape, generator=gen).to(dev)
                    gumbel = -torch.log(-torch.log(u.clamp_min(1e-10)))
                    act = (logits + gumbel).argmax(-1)  # Gumbel-max sampling
                    logps[t, lo:hi] = (
                        torch.log_softmax(logits, -1).gather(1, act[:, None]).squeeze(1)
                    )
                    values[t, lo:hi] = out.value
                    actions[t, lo:hi] = act
                    alphas[t, lo:hi] = out.alpha
                    return act.cpu().numpy()

            def collect(t: int, lo: int, hi: int) -> None:
                r = buf.reward[lo:hi].astype(np.float64)
                done = buf.terminated[lo:hi] | buf.truncated[lo:hi]
                if p.reward_norm:
                    r = rnorm.scale(r, done, lo, hi)
                r_t = torch.as_tensor(r, dtype=torch.float32)
                trunc_idx = np.flatnonzero(buf.truncated[lo:hi]) + lo
                if trunc_idx.size:
                    with torch.no_grad():
                        fo = model(
                            torch.from_numpy(buf.final_state[trunc_idx]).to(dev),
                            torch.from_numpy(buf.final_crop[trunc_idx]).to(dev),
                            torch.from_numpy(buf.final_atoms[trunc_idx]).to(dev),
                            ctx.routing,
                            ctx.temperature,
                        )
                    r_t[trunc_idx - lo] += p.gamma * fo.value.float().cpu()
                rewards[t, lo:hi] = r_t.to(dev)
                dones[t, lo:hi] = torch.as_tensor(done, dtype=torch.float32).to(dev)
                C.env_steps += hi - lo
                for e in venv.finished(lo, hi):
                    C.episodes += 1
                    recent.append(float(e.score))
                    del recent[: -cfg.run.best_window]
                    rec = {"type": "episode", "episode": C.episodes, "env_steps": C.env_steps,
                           "score": e.score, "reward": e.reward, "length": e.length, "depth": e.depth,
                           "died": e.died, "phase": ctx.phase.name, "temperature": ctx.temperature,
                           "routing": ctx.routing, "seed_core": e.seed_core, "seed_disp": e.seed_disp,
                           "env_index": e.env_index, "wall": time.time()}  # fmt: skip
                    metrics.write(rec)
                    ctx.finished.append(e)
                    if tb is not None:
                        tb.add_scalar("episode/score", e.score, C.episodes)
                        tb.add_scalar("episode/reward", e.reward, C.episodes)
                        tb.add_scalar("episode/depth", e.depth, C.episodes)

            while C.episodes < cur.total_episodes and not (
                cfg.run.max_env_steps and C.env_steps >= cfg.run.max_env_steps
            ):
                phase_k = cur.phase_index(C.episodes)
                phase = cur.phases[phase_k]
                temperature = cur.temperature_at(C.episodes)
                routing = phase.routing
                lr = phase.lr
                for g in optim.param_groups:
                    g["lr"] = lr
                coefs = dict(phase.coefficients)
                ctx.phase, ctx.routing, ctx.temperature, ctx.finished = (
                    phase,
                    routing,
                    temperature,
                    [],
                )
                t_env = t_inf = 0.0
                t_roll = time.monotonic()
                # ------------------------------------------------ rollout
                # Envs are split into G contiguous groups; while the workers step one group, this
                # process computes the next group's actions (overlap of env stepping and inference).
                model.eval()
                if self.device.type == "cpu":
                    torch.set_num_threads(self.act_threads)

                for t in range(T + 1):
                    for lo, hi in groups:
                        if t > 0:
                            te = time.monotonic()
                            venv.step_wait(lo, hi)
                            t_env += time.monotonic() - te
                            collect(t - 1, lo, hi)
                        if t < T:
                            ti = time.monotonic()
                            act_np = act_on(t, lo, hi)
                            t_inf += time.monotonic() - ti
                            venv.step_async(act_np, lo, hi)
                if venv.worker_restarts != C.worker_restarts:
                    n_new = venv.worker_restarts - C.worker_restarts
                    C.dropped_episodes = venv.dropped_episodes
                    C.worker_restarts = venv.worker_restarts
                    metrics.write({"type": "event", "kind": "worker_restart", "episode": C.episodes,
                                   "count": n_new, "dropped_total": C.dropped_episodes})  # fmt: skip
                # ------------------------------------------------ GAE
                with torch.no_grad():
                    last_v = model(
                        b_state.to(dev), b_crop.to(dev), b_atoms.to(dev), routing, temperature
                    ).value
                adv, ret = compute_gae(rewards, values, dones, last_v, p.gamma, p.gae_lambda)
                # ------------------------------------------------ update
                tl = time.monotonic()
                model.train()
                if self.device.type == "cpu":
                    torch.set_num_threads(self.learn_threads)
                fs = obs_state.reshape(T * N, -1)
                fc = obs_crop.reshape(T * N, Cc, Cc)
                fa = obs_atoms.reshape(T * N, -1)
                f_act, f_logp, f_val = actions.reshape(-1), logps.reshape(-1), values.reshape(-1)
                f_adv, f_ret = adv.reshape(-1), ret.reshape(-1)
                use_prior = coefs.get("routing_prior", 0.0) > 0 and model.gat is not None
                sums: dict[str, float] = {}
                n_mb = 0
                skipped = False
                bad_term: str | None = None
                grad_norm = 0.0
                stop_early = False
                for _epoch in range(p.update_epochs if self.learn else 0):
                    perm = torch.randperm(T * N, generator=gen).to(dev)
                    for k in range(p.num_minibatches):
                        mb = perm[k * p.minibatch_size : (k + 1) * p.minibatch_size]
                        out = model(fs[mb], fc[mb], fa[mb], routing, temperature)
                        prior = None
                        if use_prior and out.operator_scores is not None:
                            prior = model.expert_prior(out.operator_scores.detach())
                        batch = LossBatch(
                            f_act[mb], f_logp[mb], f_val[mb], f_adv[mb], f_ret[mb], prior
                        )
                        loss, terms = ppo_loss(
                            out, batch, coefs, p.clip_coef, p.vf_coef, p.clip_vloss, p.norm_adv
                        )
                        vals = {kk: float(v.detach()) for kk, v in terms.items()}
                        bad = [kk for kk, v in vals.items() if not math.isfinite(v)]
                        optim.zero_grad(set_to_none=True)
                        if bad:
                            skipped, bad_term = True, bad[0]
                            break
                        loss.backward()
                        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), p.max_grad_norm)
                        if not torch.isfinite(gn):
                            skipped, bad_term = True, "gradients"
                            optim.zero_grad(set_to_none=True)
                            break
                        optim.step()
                        grad_norm = float(gn)
                        for kk, v in vals.items():
                            sums[kk] = sums.get(kk, 0.0) + v
                        n_mb += 1
                        if p.target_kl is not None and vals["approx_kl"] > p.target_kl:
                            stop_early = True
                            break
                    if skipped or stop_early:
                        break
                t_learn = time.monotonic() - tl
                C.updates += 1
                if skipped:
                    C.nonfinite_streak += 1
                    C.nonfinite_total += 1
                    log.warning("update %d skipped: non-finite %s", C.updates, bad_term)
                    metrics.write({"type": "event", "kind": "nonfinite_skip", "episode": C.episodes,
                                   "update": C.updates, "term": bad_term})  # fmt: skip
                else:
                    C.nonfinite_streak = 0
                # ------------------------------------------------ log
                with torch.no_grad():
                    yv, pv = f_ret, f_val
                    var_y = torch.var(yv)
                    ev = float(1 - torch.var(yv - pv) / var_y) if var_y > 0 else float("nan")
                elapsed = time.monotonic() - t_start
                sps = (C.env_steps - steps_at_start) / max(elapsed, 1e-9)
                urec: dict[str, Any] = {
                    "type": "update", "update": C.updates, "episode": C.episodes, "env_steps": C.env_steps,
                    "phase": phase.name, "routing": routing, "temperature": temperature, "lr": lr,
                }  # fmt: skip
                for kk in ("total", "policy", "value", "entropy", "alpha_entropy", "load_balance",
                           "diversity", "routing_prior"):  # fmt: skip
                    urec[f"loss/{kk}"] = sums[kk] / n_mb if n_mb else None
                urec["approx_kl"] = sums["approx_kl"] / n_mb if n_mb else None
                urec["clip_frac"] = sums["clip_frac"] / n_mb if n_mb else None
                urec["explained_var"] = ev if math.isfinite(ev) else None
                urec["grad_norm"] = grad_norm
                urec["skipped"] = skipped
                urec["nonfinite_term"] = bad_term
                urec.update(routing_figures_torch(alphas.reshape(T * N, E)))
                urec["sps"] = sps
                urec["time/env"] = t_env
                urec["time/inference"] = t_inf
                urec["time/learning"] = t_learn
                urec["time/features"] = venv.feature_seconds() - feat0
                feat0 = venv.feature_seconds()
                urec["wall"] = time.time()
                metrics.write(urec)
                metrics.flush()
                if tb is not None:
                    for kk, v in urec.items():
                        if (
                            isinstance(v, (int, float))
                            and not isinstance(v, bool)
                            and v is not None
                        ):
                            tb.add_scalar(kk if "/" in kk else f"train/{kk}", v, C.env_steps)
                if pbar is not None:
                    pbar.update(len(ctx.finished))
                    pbar.set_postfix(phase=phase.name, sps=f"{sps:.0f}",
                                     score=f"{np.mean(recent) if recent else 0:.1f}",
                                     T=f"{temperature:.2f}")  # fmt: skip
                log.debug("update %d done in %.2fs", C.updates, time.monotonic() - t_roll)

                # ------------------------------------------------ checkpoints
                bucket = C.episodes // cfg.run.checkpoint_every
                if bucket > last_ckpt_bucket:
                    last_ckpt_bucket = bucket
                    self._save(f"ep_{C.episodes:06d}.pt", state(), metrics, C, "periodic")
                if len(recent) >= cfg.run.best_window:
                    m = float(np.mean(recent))
                    if m > C.best_score:
                        C.best_score = m
                        self._save("best.pt", state(), metrics, C, "best")
                if C.nonfinite_streak >= cfg.run.max_nonfinite:
                    self._save(f"ep_{C.episodes:06d}.pt", state(), metrics, C, "periodic")
                    raise NonFiniteError(
                        f"{C.nonfinite_streak} consecutive updates had non-finite values "
                        f"(last: {bad_term}); stopped with a checkpoint in {self.ckpt_dir}"
                    )
                if self.stop_after_updates is not None and C.updates >= self.stop_after_updates:
                    self._stop_signal = self._stop_signal or signal.SIGINT
                if self._stop_signal is not None:
                    path = self._save(f"ep_{C.episodes:06d}.pt", state(), metrics, C, "periodic")
                    metrics.write({"type": "event", "kind": "interrupted", "episode": C.episodes,
                                   "signal": self._stop_signal})  # fmt: skip
                    metrics.flush(sync=True)
                    raise TrainingInterrupted(
                        f"interrupted by signal {self._stop_signal} at episode {C.episodes}; "
                        f"checkpoint {path}; continue with --resume {self.run_dir}",
                        self._stop_signal,
                        path,
                    )
            final = self._save("final.pt", self._ckpt_payload(model, optim, gen, rnorm, C, recent, venv, metrics),
                               metrics, C, "final")  # fmt: skip
        except WorkerError as e:
            exit_reason = "worker_failure"
            if venv.worker_restarts != C.worker_restarts:  # restarts during the failing step
                metrics.write({"type": "event", "kind": "worker_restart", "episode": C.episodes,
                               "count": venv.worker_restarts - C.worker_restarts,
                               "dropped_total": venv.dropped_episodes})  # fmt: skip
                C.dropped_episodes, C.worker_restarts = venv.dropped_episodes, venv.worker_restarts
            metrics.write({"type": "event", "kind": "worker_failure", "episode": C.episodes,
                           "error": str(e).strip().splitlines()[0]})  # fmt: skip
            self._save(f"ep_{C.episodes:06d}.pt", self._ckpt_payload(model, optim, gen, rnorm, C, recent, venv, metrics),
                       metrics, C, "periodic")  # fmt: skip
            raise WorkerError(f"{e}; stopped with a checkpoint in {self.ckpt_dir}") from e
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            if pbar is not None:
                pbar.close()
            if tb is not None:
                tb.close()
            metrics.close()
            venv.close()
        wall = time.monotonic() - t_start
        return {
            "run_dir": str(self.run_dir),
            "episodes": C.episodes,
            "env_steps": C.env_steps,
            "wall_s": wall,
            "train_sps": (C.env_steps - steps_at_start) / max(wall, 1e-9),
            "final": str(final),
            "best_mean_score": C.best_score,
            "exit": exit_reason,
            "device": str(self.device),
        }

    # ------------------------------------------------------------------ checkpoints
    def _ckpt_payload(
        self, model, optim, gen, rnorm, C: Counters, recent, venv: VectorEnv, metrics
    ) -> dict:
        env_state = {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in venv.get_state().items()
        }
        return {
            "version": __version__,
            "config": self.cfg.to_dict(),
            "config_yaml": dump_config(self.cfg),
            "model": model.state_dict(),
            "optimizer": optim.state_dict(),
            "rng": {"sample": gen.get_state(), "torch": torch.get_rng_state()},
            "reward_norm": rnorm.state(),
            "counters": dict(C.__dict__),
            "recent_scores": list(recent),
            "env_state": env_state,
            "n_actions": int(venv.n_actions),
            "torch": str(torch.__version__),
        }

    def _save(
        self, name: str, payload: dict, metrics: MetricsWriter, C: Counters, kind: str
    ) -> Path:
        metrics.flush(sync=True)
        payload["metrics_offset"] = metrics.offset()
        path = self.ckpt_dir / name
        save_checkpoint(path, payload)
        metrics.write({"type": "checkpoint", "episode": C.episodes, "path": str(path.relative_to(self.run_dir)),
                       "kind": kind})  # fmt: skip
        if kind == "periodic" and self.cfg.run.keep_checkpoints > 0:
            olds = sorted(self.ckpt_dir.glob("ep_*.pt"))[: -self.cfg.run.keep_checkpoints]
            for o in olds:
                o.unlink(missing_ok=True)
        return path


def train(
    cfg: TrainConfig, resume: str | Path | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Run (or resume) a training run; see :class:`Trainer`."""
    return Trainer(cfg, resume=resume, overwrite=overwrite).run()
