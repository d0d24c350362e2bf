"""What happens around the training loop: timing, the run log, signals.

* :class:`Timing`: ``with timing.add_time("learning"): ...`` sums seconds per key (Sample Factory's
  ``timing.add_time``); :meth:`Timing.pop` returns and resets the sums.
* :class:`RunLog`: the run's ``metrics.jsonl`` (one JSON record a line, flushed per update),
  TensorBoard scalars and the progress bar, behind one interface.
* :class:`SignalGuard`: SIGINT / SIGTERM set a flag the loop checks after each update (the loop
  then checkpoints and stops), instead of interrupting an update half-way.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from nethack_moe.runs.records import EpisodeLine, Line, UpdateLine, event_line
from nethack_moe.runs.rundir import RunDir

log = logging.getLogger(__name__)


class Timing:
    """Seconds per key, summed until :meth:`pop`."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}

    @contextmanager
    def add_time(self, key: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``key``."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.sums[key] = self.sums.get(key, 0.0) + time.monotonic() - t0

    def add(self, key: str, seconds: float) -> None:
        """Add ``seconds`` measured elsewhere (e.g. the env workers' feature time)."""
        self.sums[key] = self.sums.get(key, 0.0) + seconds

    def pop(self) -> dict[str, float]:
        """The sums so far (then reset)."""
        out, self.sums = self.sums, {}
        return out


class RunLog:
    """``metrics.jsonl`` + TensorBoard + progress bar of one run."""

    def __init__(
        self, run: RunDir, tensorboard: bool, progress: bool, total: int, initial: int
    ) -> None:
        self.f = open(run.metrics, "a", encoding="utf-8")  # noqa: SIM115
        self.tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run.tensorboard))
        self.pbar: Any = None
        if progress:
            from tqdm import tqdm

            self.pbar = tqdm(total=total, initial=initial, unit="ep", dynamic_ncols=True)

    def write(self, rec: Line) -> None:
        """Append one record (a line of JSON)."""
        self.f.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")

    def event(self, kind: str, **fields: Any) -> None:
        """An ``event`` record (resumed, worker_restart, nonfinite_skip, interrupted, ...)."""
        self.write(event_line(kind, **fields))

    def episode(self, rec: EpisodeLine) -> None:
        """An ``episode`` record, and its score/reward/depth to TensorBoard."""
        self.write(rec)
        if self.tb is not None:
            for k, v in (("score", rec.score), ("reward", rec.reward), ("depth", rec.depth)):
                self.tb.add_scalar(f"episode/{k}", v, rec.episode)

    def update(self, rec: UpdateLine, n_episodes: int, postfix: dict[str, str]) -> None:
        """An ``update`` record, its numbers to TensorBoard, the progress bar advanced."""
        self.write(rec)
        self.flush()
        if self.tb is not None:
            for k, v in rec.to_json().items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    self.tb.add_scalar(k if "/" in k else f"train/{k}", v, rec.env_steps)
        if self.pbar is not None:
            self.pbar.update(n_episodes)
            self.pbar.set_postfix(postfix)

    def flush(self, sync: bool = False) -> None:
        """Flush the JSONL file (``sync``: to the disk)."""
        self.f.flush()
        if sync:
            os.fsync(self.f.fileno())

    def offset(self) -> int:
        """Byte length of ``metrics.jsonl`` so far (stored in checkpoints, to cut it on resume)."""
        self.f.flush()
        return self.f.tell()

    def close(self) -> None:
        """Close the file, TensorBoard and the progress bar."""
        if self.pbar is not None:
            self.pbar.close()
        if self.tb is not None:
            self.tb.close()
        self.f.close()


class SignalGuard:
    """While active, SIGINT/SIGTERM only record the signal in :attr:`signum`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            log.warning(
                "signal %d received: finishing the current update, then checkpointing", signum
            )
        self.signum = signum

    def __enter__(self) -> SignalGuard:
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.getsignal(s)
            signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
