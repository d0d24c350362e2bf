"""Throughput benchmarks (PROTOCOL.md, Throughput): env SPS, vector SPS, rollout SPS, train SPS."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import numpy as np

from nethack_moe.config.train import make_config
from nethack_moe.core.machine import machine_info
from nethack_moe.envs.factory import EnvConfig, SeedPlan, make_env, seed_env, train_seeds
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.ppo.distributed import env_rank
from nethack_moe.ppo.trainer import Trainer
from nethack_moe.runs.records import UPDATE, UpdateLine
from nethack_moe.runs.rundir import RunDir


def _raw_env_worker(cfg: EnvConfig, steps: int, seed: int, q) -> None:
    env = make_env(cfg).unwrapped
    rng = np.random.default_rng(seed)
    n_act = env.action_space.n
    acts = rng.integers(0, n_act, steps)
    k = 0
    seed_env(env, *train_seeds(seed, 0, k))
    env.reset()
    t0 = time.perf_counter()
    for i in range(steps):
        _, _, done, trunc, _ = env.step(int(acts[i]))
        if done or trunc:
            k += 1
            seed_env(env, *train_seeds(seed, 0, k))
            env.reset()
    q.put(steps / (time.perf_counter() - t0))
    env.close()


def raw_env_sps(cfg: EnvConfig, processes: int, steps: int, seed: int = 0) -> float:
    """Raw NLE ``env.step`` calls per second with random actions over ``processes`` processes."""
    ctx = mp.get_context("forkserver")
    q = ctx.Queue()
    ps = [
        ctx.Process(target=_raw_env_worker, args=(cfg, steps, seed + k, q))
        for k in range(processes)
    ]
    for p in ps:
        p.start()
    rates = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return float(sum(rates))


def vector_env_sps(cfg: EnvConfig, num_envs: int, workers: int, steps: int, seed: int = 0) -> float:
    """Vector env (features included) steps per second with random actions."""
    with VectorEnv(cfg, num_envs, workers, SeedPlan("train", seed)) as venv:
        rng = np.random.default_rng(seed)
        acts = rng.integers(0, venv.n_actions, (steps, num_envs))
        venv.step(acts[0])
        t0 = time.perf_counter()
        for t in range(1, steps):
            venv.step(acts[t])
        return (steps - 1) * num_envs / (time.perf_counter() - t0)


def bench_env(
    num_envs: int, workers: int, steps: int, task: str = "NetHackScore-v0"
) -> dict[str, Any]:
    """``bench env``: raw env SPS on ``max(workers, 1)`` processes vs the vector env, same run."""
    cfg = EnvConfig(task=task)
    procs = max(workers, 1)
    per_env_steps = max(steps // num_envs, 50)
    vec = vector_env_sps(cfg, num_envs, workers, per_env_steps)
    raw = raw_env_sps(cfg, procs, max(steps // procs, 1000))
    return {
        "env_sps": raw,
        "vector_sps": vec,
        "ratio": vec / raw if raw > 0 else None,
        "num_envs": num_envs,
        "workers": workers,
        "raw_processes": procs,
        "task": task,
        "machine": machine_info(),
    }


def bench_train(
    config: str = "s500",
    max_env_steps: int = 100_000,
    overrides: list[str] | None = None,
    device: str = "auto",
    with_rollout: bool = True,
    with_env: bool = True,
    with_train: bool = True,
) -> dict[str, Any]:
    """``bench train``: train SPS (learning included) of a real run, its time split, the rollout SPS
    of the same policy without learning, and the raw env SPS of the same machine, in one run."""
    import json
    import tempfile
    from pathlib import Path

    def run(learn: bool) -> tuple[dict, list[UpdateLine]]:
        with tempfile.TemporaryDirectory() as tmp:
            sets = list(overrides or []) + [
                f"run.max_env_steps={max_env_steps}", f"run.out_dir={tmp}", "run.name=bench",
                "run.tensorboard=false", "run.progress=false", f"run.device={device}",
                "run.checkpoint_every=100000000", "run.best_window=100000000",
            ]  # fmt: skip
            cfg = make_config(config, sets)
            summary = Trainer(cfg, learn=learn).run()
            path = RunDir(Path(tmp) / "bench").metrics  # torchrun: rank 0's alone exists
            recs = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
            ups = [UpdateLine.from_json(r) for r in recs if r["type"] == UPDATE]
            return {"summary": summary, "cfg": cfg}, ups

    out: dict[str, Any] = {
        "config": config,
        "overrides": list(overrides or []),
        "max_env_steps": max_env_steps,
    }
    keys = ("env", "features", "inference", "learning")
    if with_train:
        tr, ups = run(True)
        out["train_sps"] = tr["summary"]["train_sps"]
        out["wall_s"] = tr["summary"]["wall_s"]
        out["episodes"] = tr["summary"]["episodes"]
        out["time_split_s"] = {k: float(sum(u.time(k) or 0.0 for u in ups)) for k in keys}
    if with_rollout or not with_train:
        tr, ups = run(False)
        out["rollout_sps"] = tr["summary"]["train_sps"]
        if not with_train:
            out["time_split_s"] = {k: float(sum(u.time(k) or 0.0 for u in ups)) for k in keys}
    cfg = tr["cfg"]
    out["env_steps"] = tr["summary"]["env_steps"]
    out["num_envs"] = cfg.ppo.num_envs
    out["num_workers"] = cfg.run.num_workers
    out["device"] = tr["summary"].get("device", device)
    out["world_size"] = W = int(tr["summary"].get("world_size", 1))  # torchrun ranks
    out["envs_per_rank"] = cfg.ppo.num_envs // W
    for k in ("train_sps", "rollout_sps"):
        if k in out:
            out[k.replace("_sps", "_sps_per_rank")] = out[k] / W
    if with_env and env_rank() in (None, 0):  # one measurement, not one per rank at once
        out["env_sps"] = raw_env_sps(cfg.env, max(cfg.run.num_workers, 1), 20_000)
        out["env_processes"] = max(cfg.run.num_workers, 1)
    out["machine"] = machine_info()
    return out
