"""Model speed benchmark on real NLE observations (forward and forward+backward)."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nethack_moe.core.machine import machine_info as _machine_info
from nethack_moe.envs.factory import EnvConfig, SeedPlan
from nethack_moe.envs.shaping import hint_action
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.features import FeatureSpec, compute_features
from nethack_moe.models.config import ModelConfig
from nethack_moe.models.policy import build_model

log = logging.getLogger(__name__)

N_ACTIONS = 23
_OBS_KEYS = ("glyphs", "blstats", "message", "tty_chars")


def collect_observations(
    n: int, seed: int = 1, spec: FeatureSpec | None = None, env_id: str = "NetHackScore-v0"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(state, crop, atoms)`` of ``n`` states of uniformly random play in NLE.

    The game is seeded with ``env.unwrapped.seed(seed, seed, False)`` and actions come from a
    ``numpy`` generator with the same seed, so the batch is reproducible. Episodes that end are
    reset and play goes on.
    """
    import gymnasium as gym
    import nle  # noqa: F401  (registers the NetHack envs)

    spec = spec or FeatureSpec()
    env = gym.make(env_id, observation_keys=_OBS_KEYS)
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in _OBS_KEYS}
    try:
        env.unwrapped.seed(seed, seed, False)  # type: ignore[attr-defined]
        obs, _ = env.reset()
        n_actions = int(env.action_space.n)  # type: ignore[attr-defined]
        for _ in range(n):
            for k in _OBS_KEYS:
                cols[k].append(np.array(obs[k], copy=True))  # NLE reuses its arrays
            obs, _, term, trunc, _ = env.step(int(rng.integers(n_actions)))
            if term or trunc:
                obs, _ = env.reset()
    finally:
        env.close()
    batch = {k: np.stack(v) for k, v in cols.items()}
    return compute_features(
        batch["glyphs"], batch["blstats"], batch["message"], batch["tty_chars"], spec
    )


#: Shipped sample of visited states (see :func:`visited_states`).
VISITED_SAMPLE = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "visited_states_hint_follower.npz"
)


def collect_visited_states(
    n: int, seed: int = 1, num_envs: int = 16, random_share: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(state, crop, atoms)`` of ``n`` states a *playing* agent visits.

    A hint follower (the navigation hint's move, ``>`` on the stairs, Enter on prompts) with
    ``random_share`` uniformly random moves plays ``num_envs`` seeded NetHackScore-v0 games in a
    :class:`VectorEnv` (level memory included), and every ``num_envs``-th state is kept. Random
    play sees few distinct atom vectors (19 per 256 states); with ``random_share=0.7`` these states
    have ~143 per 256, close to the ~146 of the trained S500 agent's evaluation play (it takes the
    hinted move in ~30 % of its steps), which is what the update's graph cost depends on.
    """

    rng = np.random.default_rng(seed)
    more = FeatureSpec().atom_names.index("more_prompt")
    out: list[tuple[np.ndarray, ...]] = []
    with VectorEnv(EnvConfig(), num_envs, 0, SeedPlan("train", base=seed)) as venv:
        venv.reset()
        buf = venv.buf
        while len(out) * num_envs < n:
            hint = hint_action(buf.state)
            act = np.where(hint >= 0, hint, rng.integers(1, 9, num_envs))
            act = np.where(
                rng.random(num_envs) < random_share, rng.integers(0, N_ACTIONS, num_envs), act
            )
            act = np.where(buf.atoms[:, more], 0, act)  # 0: Enter (MiscAction.MORE)
            out.append((buf.state.copy(), buf.crop.copy(), buf.atoms.copy()))
            venv.step(act)
    state, crop, atoms = (np.concatenate(x)[:n] for x in zip(*out, strict=True))
    return state, crop, atoms


def visited_states(n: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped sample (``benchmarks/visited_states_hint_follower.npz``: 8,192 states of
    :func:`collect_visited_states` with seed 7, shuffled so that any slice is like a minibatch of
    a rollout), else a new one."""
    if VISITED_SAMPLE.exists():
        with np.load(VISITED_SAMPLE) as z:
            if len(z["state"]) >= n:
                return z["state"][:n], z["crop"][:n], z["atoms"][:n]
    return collect_visited_states(n)


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load, torch / Python / nle versions, GPU (see :func:`nethack_moe.bench.machine_info`)."""

    return _machine_info()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(
    variant: str,
    batch_sizes: tuple[int, ...] = (32, 256, 1024),
    device: str = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    n_states: int | None = None,
    seed: int = 1,
    cfg: ModelConfig | None = None,
    states: str = "visited",
    threads: int | None = None,
) -> dict[str, Any]:
    """Median forward and forward+backward time of ``variant`` on real observations.

    ``states="visited"`` (default): the first rows of :func:`visited_states`, states a playing
    agent visits (~143 distinct atom vectors per 256, as in the trained agent's evaluation play);
    ``states="random"``: ``n_states`` states of seeded random play (:func:`collect_observations`,
    ~19 distinct per 256: it flatters the graph's cost). Batches larger than the sample tile it.
    ``threads``: torch intra-op threads (default: torch's). Besides wall times, the CPU time of
    this process per fwd+bwd is reported (``fwd_bwd_cpu_ms``): on a shared machine it moves less.

    Returns:
        ``{"variant", "device", "params", "fwd_ms": {B: ms}, "fwd_bwd_ms": {B: ms},
        "fwd_bwd_ms_min": {B: ms}, "distinct_atoms": {B: n}, "machine": {...}}`` (medians over
        ``repeats`` after ``warmup``; the loss is ``logsumexp(logits) + value²``).
    """
    cfg = cfg or ModelConfig(variant=variant)
    cfg.variant = variant
    cfg.validate()
    spec = FeatureSpec()
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(cfg, spec, N_ACTIONS).to(dev)
    if threads:
        torch.set_num_threads(threads)
    if states not in ("visited", "random"):
        raise ValueError(f"states: expected 'visited' or 'random', got {states!r}")
    if states == "visited":
        state, crop, atoms = visited_states()
        state, crop, atoms = (
            state[: n_states or None],
            crop[: n_states or None],
            atoms[: n_states or None],
        )
    else:
        state, crop, atoms = collect_observations(
            n_states or max(batch_sizes), seed=seed, spec=spec
        )
    fwd: dict[int, float] = {}
    fwd_bwd: dict[int, float] = {}
    fwd_bwd_min: dict[int, float] = {}
    fwd_bwd_cpu: dict[int, float] = {}
    distinct: dict[int, int] = {}
    for bs in batch_sizes:
        idx = np.arange(bs) % len(state)
        s = torch.as_tensor(state[idx], device=dev)
        c = torch.as_tensor(crop[idx], device=dev)
        a = torch.as_tensor(atoms[idx], device=dev)
        distinct[bs] = int(np.unique(atoms[idx], axis=0).shape[0])
        times_f, times_fb, cpu_fb = [], [], []
        for k in range(warmup + repeats):
            with torch.no_grad():
                _sync(dev)
                t0 = time.perf_counter()
                model(s, c, a)
                _sync(dev)
                t1 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            _sync(dev)
            c2, t2 = time.process_time(), time.perf_counter()
            out = model(s, c, a)
            loss = out.logits.logsumexp(-1).mean() + out.value.square().mean()
            loss.backward()
            _sync(dev)
            c3, t3 = time.process_time(), time.perf_counter()
            if k >= warmup:
                times_f.append((t1 - t0) * 1e3)
                times_fb.append((t3 - t2) * 1e3)
                cpu_fb.append((c3 - c2) * 1e3)
        fwd[bs] = statistics.median(times_f)
        fwd_bwd[bs] = statistics.median(times_fb)
        fwd_bwd_min[bs] = min(times_fb)
        fwd_bwd_cpu[bs] = statistics.median(cpu_fb)
        log.info("%s B=%d fwd %.2f ms fwd+bwd %.2f ms", variant, bs, fwd[bs], fwd_bwd[bs])
    return {
        "variant": variant,
        "device": str(dev),
        "params": sum(p.numel() for p in model.parameters()),
        "fwd_ms": fwd,
        "fwd_bwd_ms": fwd_bwd,
        "fwd_bwd_ms_min": fwd_bwd_min,
        "fwd_bwd_cpu_ms": fwd_bwd_cpu,
        "states": states,
        "threads": torch.get_num_threads(),
        "distinct_atoms": distinct,
        "machine": machine_info(),
    }
