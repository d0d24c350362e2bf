"""Safe, atomic checkpoints.

A checkpoint is a ``torch.save`` of plain containers of tensors, numbers and strings, loaded with
``torch.load(..., weights_only=True)``: a file from someone else cannot run code. Writes go to a
temporary file in the same directory, are fsynced, then renamed over the target, so a crash never
leaves a half-written file under a checkpoint's name; a failed write (e.g. a full disk) leaves the
previous checkpoint intact.

What is in it is :class:`CheckpointPayload` (the writer builds one, every reader gets one from
:func:`load_payload`); on disk it stays the plain dict of :meth:`CheckpointPayload.to_dict`.
:func:`config_diffs` is the one comparison of two configs (model compatibility here, resume
compatibility in :mod:`nethack_moe.runs.resume`, the sweep's experiment check).
"""

from __future__ import annotations

import io
import logging
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from nethack_moe.core.io import atomic_write_bytes
from nethack_moe.models.config import ModelConfig

log = logging.getLogger(__name__)

FORMAT = "nethack-moe-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the requested model."""


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


#: Keys written only when set, in this order, after the others (torchrun's, then the log offset).
_OPTIONAL_TAIL = ("world_size", "ranks", "metrics_offset", "greedy_policy")


@dataclass
class CheckpointPayload:
    """What a checkpoint holds: everything needed to resume exactly, and the routing the policy
    last acted with. Field order is the file's key order; a field an old (or a test's partial)
    checkpoint lacks keeps its default."""

    version: str = ""
    """nethack-moe's version that wrote it."""
    config: dict[str, Any] | None = None
    """``TrainConfig.to_dict()`` (``None``: absent, an unusable file)."""
    config_yaml: str = ""
    model: dict[str, Any] | None = None
    """The model's state dict (name -> tensor; ``None``: absent, an unusable file)."""
    optimizer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    """``{"sample", "learn", "torch"}``: generator states (uint8 tensors)."""
    reward_norm: dict[str, Any] = field(default_factory=dict)
    """``RunningMeanStd.state()``: ``{"ret": (N,) tensor, "mean", "var", "count"}``."""
    counters: Counters = field(default_factory=Counters)
    recent_scores: list[float] = field(default_factory=list)
    env_state: dict[str, Any] = field(default_factory=dict)
    """The vector env's state (name -> tensor, one row per env)."""
    n_actions: int | None = None
    torch: str = ""
    """torch's version that wrote it."""
    routing: dict[str, Any] | None = None
    """``{"kind", "temperature"}`` of the last rollout (absent in old checkpoints)."""
    pending: dict[str, Any] | None = None
    """Overlap mode: ``{"context", "storage"}`` of the rollout collected but not yet learned."""
    world_size: int | None = None
    """torchrun: the number of ranks (absent for one process)."""
    ranks: list[dict[str, Any]] | None = None
    """torchrun: every rank's own state (envs, RNGs, reward statistics)."""
    metrics_offset: int | None = None
    """Byte length of ``metrics.jsonl`` when it was written."""
    greedy_policy: dict[str, Any] | None = None
    """``ppo.greedy_refresh``: ``{"updates", "model"}``, the frozen copy of the policy the
    greedy envs play and the update it was taken at (absent without one)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys this version does not know (kept as they were)."""

    def to_dict(self) -> dict[str, Any]:
        """The dict saved to disk (without the format tag :func:`save_checkpoint` adds)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _SKIP}
        out["counters"] = dict(self.counters.__dict__)
        for k in _OPTIONAL_TAIL:
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointPayload:
        """A loaded checkpoint (the format tag dropped; unknown keys kept in :attr:`extra`)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in _FORMAT_KEYS}
        kw["counters"] = Counters(**(kw.get("counters") or {}))
        return cls(**kw, extra=extra)

    @property
    def episodes(self) -> int:
        """Completed training episodes when it was written (0 when unknown)."""
        try:
            return int(self.counters.episodes)
        except (TypeError, ValueError):
            return 0

    def rank_state(self, rank: int) -> CheckpointPayload:
        """torchrun: the checkpoint as ``rank`` loads it (its own entries from :attr:`ranks`)."""
        if self.ranks is None:
            return self
        return CheckpointPayload.from_dict({**self.to_dict(), **self.ranks[rank]})


_SKIP = {"extra", *_OPTIONAL_TAIL}
_FORMAT_KEYS = ("format", "format_version")


def save_checkpoint(path: Path, payload: CheckpointPayload | dict[str, Any]) -> None:
    """Save ``payload`` (plain containers only) atomically, tagged with the format version."""
    if isinstance(payload, CheckpointPayload):
        payload = payload.to_dict()
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    buf = io.BytesIO()
    torch.save(payload, buf)
    try:
        atomic_write_bytes(Path(path), buf.getvalue())
    except OSError as e:
        raise OSError(
            e.errno,
            f"cannot write checkpoint {str(path)!r}: {e.strerror or e}; "
            "the checkpoints already on disk are unchanged",
        ) from e


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; raises :class:`CheckpointError` with a one-line reason."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {str(p)!r} is a directory, not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty")
    try:
        data = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {str(p)!r} refused: not a checkpoint of plain data (tensors, numbers, "
            f"strings); nothing in it was run ({_unpickling_reason(e)})"
        ) from e
    except Exception as e:  # random bytes fail the unpickler in many ways (KeyError, EOFError ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        first = first if isinstance(e, (RuntimeError, OSError)) else f"{type(e).__name__} {first}"
        raise CheckpointError(
            f"checkpoint {str(p)!r} is truncated or not a checkpoint ({first})"
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(p)!r} is not a nethack-moe checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version {data.get('format_version')}, "
            f"this nethack-moe reads version {FORMAT_VERSION}"
        )
    return data


def load_payload(path: str | Path, map_location: str | torch.device = "cpu") -> CheckpointPayload:
    """:func:`load_checkpoint` as a :class:`CheckpointPayload`."""
    return CheckpointPayload.from_dict(load_checkpoint(path, map_location))


def _unpickling_reason(e: Exception) -> str:
    """The informative line of torch's weights-only refusal (not its preamble or advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines[1:]:
        if not ln.startswith(("Please file an issue", "Check the documentation")):
            return ln
    return type(e).__name__


# ------------------------------------------------------------------ comparing configs
def plain_value(v: Any) -> Any:
    """Lists and tuples compare equal (YAML and checkpoints store tuples as lists)."""
    if isinstance(v, (list, tuple)):
        return [plain_value(x) for x in v]
    if isinstance(v, dict):
        return {k: plain_value(x) for k, x in v.items()}
    return v


def config_leaves(prefix: str, a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, a's value, b's value) for every leaf of two nested dicts."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [(prefix, a, b)]
    out: list[tuple[str, Any, Any]] = []
    for k in list(a) + [k for k in b if k not in a]:
        out += config_leaves(f"{prefix}.{k}" if prefix else str(k), a.get(k), b.get(k))
    return out


def config_diffs(
    pairs: list[tuple[str, Any, Any]],
) -> list[tuple[str, Any, Any]]:
    """The (key, old, new) of ``pairs`` whose values differ (:func:`plain_value`)."""
    return [(k, a, b) for k, a, b in pairs if plain_value(a) != plain_value(b)]


def check_model_compat(ckpt: CheckpointPayload, model_cfg: dict, path: str | Path) -> None:
    """Raise :class:`CheckpointError` if the checkpoint's model config differs from ``model_cfg``.

    A key the checkpoint does not have (a field added since it was written) counts as its default.
    """
    theirs = {**ModelConfig().to_dict(), **(ckpt.config or {}).get("model", {})}
    diffs = [
        f"{k}: checkpoint {a!r} vs requested {b!r}"
        for k, a, b in sorted(config_diffs(config_leaves("", theirs, model_cfg)), key=_first)
    ]
    if diffs:
        raise CheckpointError(f"checkpoint {str(path)!r} is for another model ({'; '.join(diffs)})")


def _first(t: tuple[str, Any, Any]) -> str:
    return t[0]
