"""The run directory: refusing to overwrite one, finding the checkpoint to resume from, and
repairing ``metrics.jsonl`` to a checkpoint's offset."""

from __future__ import annotations

import logging
from pathlib import Path

from nethack_moe.runs.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)


class RunDirExists(FileExistsError):
    """The run directory exists and neither --resume nor --overwrite was given."""


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
