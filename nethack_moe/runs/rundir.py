"""The run directory: the one owner of its layout, and what is done to it as a whole.

A run directory ``RUN/`` holds (names only here; every module asks :class:`RunDir`)::

    RUN/config.yaml              the resolved config (config.yml / config.json also read)
    RUN/metrics.jsonl            one JSON record a line (nethack_moe.runs.records)
    RUN/checkpoints/ep_%06d.pt   periodic checkpoints (episode count at the time)
    RUN/checkpoints/final.pt     at the end of the curriculum
    RUN/checkpoints/best.pt      the best window mean score so far (never resumed from)
    RUN/eval/<stem>_<proto>[_greedy].json   evaluations of its checkpoints
    RUN/analysis/<stem>/         ``analyze`` of a checkpoint
    RUN/tb/                      TensorBoard scalars
    RUN/report.md                ``report``

Also here: refusing to overwrite a run, finding the checkpoint to resume from, and repairing
``metrics.jsonl`` to a checkpoint's offset.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from nethack_moe.runs.checkpoint import CheckpointError, load_payload

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
#: Names a run's config is read under, first found wins (only ``config.yaml`` is written).
CONFIG_NAMES = (CONFIG, "config.yml", "config.json")
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FINAL = "final.pt"
BEST = "best.pt"
PERIODIC = "ep_{episodes:06d}.pt"
PERIODIC_GLOB = "ep_*.pt"
EVAL = "eval"
ANALYSIS = "analysis"
TENSORBOARD = "tb"
REPORT = "report.md"


class RunDirExists(FileExistsError):
    """The run directory exists and neither --resume nor --overwrite was given."""


@dataclass(frozen=True)
class RunDir:
    """A run directory (it need not exist yet): its paths and what is done to it as a whole."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    # ------------------------------------------------------------------ paths
    @property
    def name(self) -> str:
        """The run's name (the directory's)."""
        return self.path.name

    @property
    def config(self) -> Path:
        """``config.yaml``, the resolved config the trainer writes."""
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``."""
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``."""
        return self.path / CHECKPOINTS

    @property
    def final(self) -> Path:
        """``checkpoints/final.pt``."""
        return self.checkpoints / FINAL

    @property
    def best(self) -> Path:
        """``checkpoints/best.pt``."""
        return self.checkpoints / BEST

    def periodic(self, episodes: int) -> Path:
        """``checkpoints/ep_%06d.pt`` of a checkpoint taken after ``episodes`` episodes."""
        return self.checkpoints / PERIODIC.format(episodes=episodes)

    @property
    def eval_dir(self) -> Path:
        """``eval/``, the evaluations of the run's checkpoints."""
        return self.path / EVAL

    def eval_file(self, stem: str, protocol: str, greedy: bool = False) -> Path:
        """``eval/<stem>_<protocol>[_greedy].json``: an evaluation of checkpoint ``stem``."""
        return self.eval_dir / f"{stem}_{protocol}{'_greedy' if greedy else ''}.json"

    def analysis_dir(self, stem: str) -> Path:
        """``analysis/<stem>/``, ``analyze`` of checkpoint ``stem``."""
        return self.path / ANALYSIS / stem

    @property
    def tensorboard(self) -> Path:
        """``tb/``."""
        return self.path / TENSORBOARD

    @property
    def report(self) -> Path:
        """``report.md``."""
        return self.path / REPORT

    def config_files(self) -> list[Path]:
        """The config file names read, in order (:data:`CONFIG_NAMES`)."""
        return [self.path / n for n in CONFIG_NAMES]

    # ------------------------------------------------------------------ what is there
    def is_run(self) -> bool:
        """Whether a trainer wrote here (``metrics.jsonl`` exists)."""
        return self.metrics.exists()

    def is_empty(self) -> bool:
        """Missing or an empty directory."""
        return not (self.path.exists() and any(self.path.iterdir()))

    def periodic_checkpoints(self) -> list[Path]:
        """``checkpoints/ep_*.pt``, oldest first (the names sort by episode)."""
        return sorted(self.checkpoints.glob(PERIODIC_GLOB))

    def resumable_checkpoints(self) -> list[Path]:
        """Every checkpoint but ``best.pt`` (which is not the run's latest state)."""
        return [p for p in self.checkpoints.glob("*.pt") if p.name != BEST]

    def checkpoint_files(self) -> list[Path]:
        """Every file in ``checkpoints/``, by name."""
        ck = self.checkpoints
        return sorted(p for p in ck.iterdir() if p.is_file()) if ck.is_dir() else []

    def eval_files(self) -> list[Path]:
        """``eval/*.json``, by name."""
        return sorted(self.eval_dir.glob("*.json")) if self.eval_dir.is_dir() else []

    @staticmethod
    def of_checkpoint(ckpt: str | Path) -> RunDir | None:
        """The run directory holding ``ckpt`` (``RUN/checkpoints/x.pt``), ``None`` for a file
        outside a ``checkpoints/`` directory."""
        p = Path(ckpt)
        return RunDir(p.parent.parent) if p.parent.name == CHECKPOINTS else None

    @staticmethod
    def owner_dir(ckpt: str | Path) -> Path:
        """``RUN`` for ``RUN/checkpoints/x.pt``, else the directory the file is in."""
        rd = RunDir.of_checkpoint(ckpt)
        return rd.path if rd is not None else Path(ckpt).parent

    # ------------------------------------------------------------------ changing it
    def prepare_fresh(self, overwrite: bool) -> None:
        """Start a fresh run here: refuse (:class:`RunDirExists`) a directory with files in it
        unless ``overwrite`` (then remove it); create it with ``checkpoints/``."""
        if not self.is_empty():
            if not overwrite:
                raise RunDirExists(
                    f"run directory {str(self.path)!r} exists; pass --resume {self.path} to "
                    "continue it or --overwrite to start again"
                )
            shutil.rmtree(self.path)
        self.make()

    def make(self) -> None:
        """Create the directory and ``checkpoints/`` (no-op where they exist)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)

    def continue_from(self, src: RunDir, offset: int | None) -> None:
        """Resume ``src`` here: in place, cut ``metrics.jsonl`` to the checkpoint's ``offset``;
        into a new (empty) directory, carry ``src``'s metrics up to ``offset``."""
        if src.path.resolve() == self.path.resolve():
            repair_metrics(self.metrics, offset)
            return
        # continuing into a new run directory (e.g. finetune_7000 from s500): carry the history
        if not self.is_empty():
            raise RunDirExists(
                f"run directory {str(self.path)!r} exists; choose another run.name or remove it"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if src.metrics.exists():
            data = src.metrics.read_bytes()
            self.metrics.write_bytes(data if offset is None else data[:offset])


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
    run = RunDir(target)
    ck = run.checkpoints
    if not ck.is_dir():
        raise CheckpointError(
            f"{str(target)!r} is neither a checkpoint file nor a run directory with checkpoints/"
        )
    cands = []
    for p in run.resumable_checkpoints():
        try:
            data = load_payload(p)
        except CheckpointError as e:
            log.warning("skipping unusable checkpoint %s: %s", p, e)
            continue
        cands.append((int(data.counters.episodes), int(data.counters.updates), p))
    if not cands:
        raise CheckpointError(f"no complete checkpoint in {str(ck)!r}")
    return max(cands)[2]
