"""Typed training configuration: presets (YAML files), ``--set key=value`` overrides, validation.

All cross-field checks live in :meth:`TrainConfig.validate`; an unknown key or a bad value fails
before any env starts, with the dotted key in the message.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nethack_moe.config.curriculum import CurriculumConfig, Phase
from nethack_moe.core.errors import ConfigError
from nethack_moe.envs.factory import EnvConfig
from nethack_moe.knowledge.graph import GraphError
from nethack_moe.knowledge.loader import load_graph
from nethack_moe.models.config import ModelConfig

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class PPOConfig:
    """PPO hyper-parameters (CleanRL-style names)."""

    num_envs: int = 32
    """Parallel envs N."""
    rollout_steps: int = 64
    """Steps T per env in one rollout; one update per rollout."""
    env_groups: int = 2
    """Envs are stepped in this many contiguous groups, so that inference on one group overlaps
    with env stepping of the other (a layout choice; results do not depend on the workers)."""
    num_minibatches: int = 4
    """Minibatches per epoch (minibatch size = N*T / num_minibatches)."""
    update_epochs: int = 2
    """Passes over the rollout per update."""
    gamma: float = 0.999
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    clip_vloss: bool = True
    """Clip the value loss around the old values."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    norm_adv: bool = True
    """Normalize advantages per minibatch."""
    reward_norm: bool = True
    """Scale rewards by a running std of the discounted return."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    target_kl: float | None = None
    """Stop the epochs of an update early when the approximate KL exceeds this (None = never)."""
    overlap: bool = False
    """Learn from rollout k in a background thread while rollout k+1 is collected with the policy
    before that update (asynchronous PPO with a one-update policy lag, as in Sample Factory): the
    PPO ratio is taken against the acting policy's log-probabilities, so the first epoch's ratios
    are not 1. Acting and learning then use one torch thread each."""
    learner: str = "thread"
    """With ``overlap``, where the update runs: ``thread`` (a background thread of the trainer
    process) or ``process`` (a learner process of its own, parameters and rollouts in shared
    memory; CPU only: on a GPU the thread is used). Same results on one machine; the process
    does not share the acting thread's interpreter, so the update gets a core of its own."""
    greedy_envs: int = 0
    """Kickstarting with DAgger rows (Ross et al. 2011): this many envs of each process (the last
    ones) act greedily, the argmax of π, while the teacher term is on (λ > 0). Their rows enter
    only the teacher's cross-entropy and the routing terms, not PPO's policy, value and entropy
    terms; their episodes are logged with ``greedy: true`` and left out of the training score
    (and ``best.pt``). Greedy play loops in states sampled play rarely visits (notebook entry
    11): this trains the policy's mode toward the teacher there. Needs ``env.teacher``."""
    greedy_refresh: int = 0
    """With ``greedy_envs``: the greedy envs play a frozen copy of the policy, taken again
    every this many updates (0: the live policy, which changes every update). A policy that
    changes every update leaves its loops sooner than the fixed checkpoint it ends as (notebook
    entry 24); a frozen copy brings the DAgger rows to the states where that one loops. The
    copy is saved in checkpoints, so a resumed run plays on with the same one."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.rollout_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


@dataclass
class RunConfig:
    """Where and how a run executes."""

    name: str = "s500"
    """Run directory name under ``out_dir``."""
    out_dir: str = "runs"
    """Parent directory of run directories."""
    seed: int = 1
    """Base seed: model init, action sampling and the training game seeds."""
    num_workers: int = 2
    """Env worker processes (0 = step the envs in the trainer process)."""
    device: str = "auto"
    """cpu, cuda or auto (cuda when available)."""
    torch_threads: int = 0
    """torch intra-op threads (0 = leave torch's default)."""
    checkpoint_every: int = 100
    """Write a checkpoint every this many completed episodes."""
    best_window: int = 100
    """best.pt is chosen by the mean score of the last this-many episodes."""
    keep_checkpoints: int = 0
    """Keep only the newest this-many periodic checkpoints (0 = keep all)."""
    tensorboard: bool = True
    """Write TensorBoard event files."""
    progress: bool = True
    """Show a progress bar."""
    max_nonfinite: int = 5
    """Stop (with a checkpoint) after this many consecutive updates with NaN/Inf."""
    max_worker_restarts: int = 5
    """Stop when env workers die more than this many times within a minute."""
    max_env_steps: int = 0
    """Stop after this many env steps even before the curriculum ends (0 = no limit; for benchmarks)."""
    dist_timeout_s: float = 300.0
    """torchrun runs: the collective timeout; a rank that died or stalls ends the others' run with
    an error after at most this long (it must exceed the slowest start-up and checkpoint)."""


@dataclass
class TrainConfig:
    """Everything a training run needs; saved resolved into the run directory."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """Environment (task, cap, character, shaping)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Policy architecture and ablation variant."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyper-parameters."""
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    """Routing curriculum."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run directory, seeds, devices, checkpoints."""
    expectations: dict[str, str] = field(default_factory=dict)
    """Optional targets for the report, e.g. {"final_phase_mean_score": ">= 15"}."""

    def validate(self) -> None:
        """All cross-field checks, in one place. Raises :class:`ConfigError` naming the key."""
        try:
            self.env.validate()
            self.model.validate()
            self.curriculum.validate()
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if self.curriculum.uses_teacher and not self.env.teacher:
            raise ConfigError(
                "curriculum: a phase has a teacher term (teacher > 0); it needs env.teacher=true"
            )
        if self.model.uses_graph:  # a bad graph file fails here, before any env or file
            m = self.model
            try:
                load_graph(m.graph_path, expert_names=m.expert_names if m.is_moe else None)
            except GraphError as e:
                raise ConfigError(f"model.graph_path={m.graph_path!r}: {e}") from e
        p = self.ppo
        for k in ("num_envs", "rollout_steps", "num_minibatches", "update_epochs"):
            if getattr(p, k) <= 0:
                raise ConfigError(f"ppo.{k}={getattr(p, k)} must be positive")
        if p.env_groups <= 0 or p.num_envs % p.env_groups:
            raise ConfigError(
                f"ppo.env_groups={p.env_groups} must divide ppo.num_envs={p.num_envs}"
            )
        if p.batch_size % p.num_minibatches:
            raise ConfigError(
                f"ppo.num_minibatches={p.num_minibatches} must divide num_envs*rollout_steps={p.batch_size}"
            )
        if not 0 <= p.greedy_envs < p.num_envs:
            raise ConfigError(
                f"ppo.greedy_envs={p.greedy_envs} must be in [0, ppo.num_envs={p.num_envs})"
            )
        if p.greedy_refresh < 0 or (p.greedy_refresh and not p.greedy_envs):
            raise ConfigError(
                f"ppo.greedy_refresh={p.greedy_refresh} must be >= 0, and > 0 only with ppo.greedy_envs > 0"
            )
        if p.greedy_envs and not self.curriculum.uses_teacher:
            raise ConfigError(
                "ppo.greedy_envs > 0 needs a teacher term (curriculum teacher > 0, env.teacher=true)"
            )
        if p.learner not in ("thread", "process"):
            raise ConfigError(f"ppo.learner={p.learner!r}; allowed: thread, process")
        if p.learner == "process" and not p.overlap:
            raise ConfigError(
                "ppo.learner=process needs ppo.overlap=true (the update then runs "
                "in its own process while the next rollout is collected)"
            )
        for k in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(p, k) <= 1.0:
                raise ConfigError(f"ppo.{k}={getattr(p, k)} must be in [0, 1]")
        if p.clip_coef <= 0 or p.max_grad_norm <= 0 or p.vf_coef < 0:
            raise ConfigError("ppo.clip_coef and ppo.max_grad_norm must be > 0, ppo.vf_coef >= 0")
        r = self.run
        if r.num_workers < 0 or r.num_workers > p.num_envs:
            raise ConfigError(
                f"run.num_workers={r.num_workers} must be in 0..ppo.num_envs ({p.num_envs})"
            )
        if r.device not in ("cpu", "cuda", "auto") and not r.device.startswith("cuda:"):
            raise ConfigError(f"run.device={r.device!r}; allowed: cpu, cuda, cuda:N, auto")
        if r.checkpoint_every <= 0 or r.best_window <= 0:
            raise ConfigError("run.checkpoint_every and run.best_window must be positive")
        if not r.dist_timeout_s > 0:
            raise ConfigError(f"run.dist_timeout_s={r.dist_timeout_s} must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ building from dicts
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(f"{key}={value!r}: " + "; ".join(errs))
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return build_dataclass(tp, value, key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} must be a mapping")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}={value!r} is not a boolean (true/false)")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r} is not an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r} is not a number")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} is not a string")
        return value
    return value


def build_dataclass(cls: type, data: dict, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a dict, rejecting unknown keys by dotted name."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise ConfigError(
                f"unknown config key {key!r}; known keys here: {', '.join(sorted(names))}"
            )
        kwargs[k] = _coerce(v, hints[k], key)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from e


def _deep_set(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "coefficients":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config_dict(name_or_path: str) -> dict:
    """A preset name (``s500``, ``smoke`` ...) or a YAML file, with ``base:`` inheritance."""
    p = Path(name_or_path)
    if not p.suffix:
        p = PRESET_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            raise ConfigError(
                f"unknown config preset {name_or_path!r}; presets: {', '.join(preset_names())}"
            )
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping")
    base = data.pop("base", None)
    if base:
        rel = p.parent / str(base)
        if Path(str(base)).suffix and not Path(str(base)).is_absolute() and rel.exists():
            base = str(rel)  # a file named relative to the including file
        data = _merge(load_config_dict(str(base)), data)
    return data


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """``["ppo.num_envs=16", ...]`` → ``[("ppo.num_envs", 16), ...]`` (values parsed as YAML)."""
    out = []
    for s in pairs:
        if "=" not in s:
            raise ConfigError(f"override {s!r} must be key=value")
        k, v = s.split("=", 1)
        k = k.strip()
        if not k:
            raise ConfigError(f"override {s!r} has an empty key")
        try:
            val = yaml.safe_load(v)
        except yaml.YAMLError:
            val = v
        out.append((k, val))
    return out


def make_config(name_or_path: str = "s500", overrides: list[str] | None = None) -> TrainConfig:
    """Load a preset or file, apply ``key=value`` overrides, validate."""
    data = load_config_dict(name_or_path)
    for k, v in parse_overrides(overrides or []):
        _deep_set(data, k, v)
    cfg = config_from_dict(data)
    cfg.validate()
    return cfg


def config_from_dict(data: dict) -> TrainConfig:
    """Build (not validate) a :class:`TrainConfig` from a plain dict (e.g. a checkpoint's)."""
    cfg = build_dataclass(TrainConfig, data)
    # phases arrive as dicts through the generic builder; make sure they are Phase objects
    cfg.curriculum.phases = [
        p if isinstance(p, Phase) else build_dataclass(Phase, p) for p in cfg.curriculum.phases
    ]
    return cfg


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML (round-trips through :func:`config_from_dict`)."""

    def plain(x: Any) -> Any:
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, list):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False)
