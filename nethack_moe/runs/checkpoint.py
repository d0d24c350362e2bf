"""Safe, atomic checkpoints.

A checkpoint is a ``torch.save`` of plain containers of tensors, numbers and strings, loaded with
``torch.load(..., weights_only=True)``: a file from someone else cannot run code. Writes go to a
temporary file in the same directory, are fsynced, then renamed over the target, so a crash never
leaves a half-written file under a checkpoint's name; a failed write (e.g. a full disk) leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import io
import logging
import pickle
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


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (plain containers only) atomically, tagged with the format version."""
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


def _unpickling_reason(e: Exception) -> str:
    """The informative line of torch's weights-only refusal (not its preamble or advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines[1:]:
        if not ln.startswith(("Please file an issue", "Check the documentation")):
            return ln
    return type(e).__name__


def check_model_compat(ckpt: dict, model_cfg: dict, path: str | Path) -> None:
    """Raise :class:`CheckpointError` if the checkpoint's model config differs from ``model_cfg``.

    A key the checkpoint does not have (a field added since it was written) counts as its default.
    """

    theirs = {**ModelConfig().to_dict(), **ckpt.get("config", {}).get("model", {})}
    diffs = [
        f"{k}: checkpoint {theirs.get(k)!r} vs requested {model_cfg.get(k)!r}"
        for k in sorted(set(theirs) | set(model_cfg))
        if _norm(theirs.get(k)) != _norm(model_cfg.get(k))
    ]
    if diffs:
        raise CheckpointError(f"checkpoint {str(path)!r} is for another model ({'; '.join(diffs)})")


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v
