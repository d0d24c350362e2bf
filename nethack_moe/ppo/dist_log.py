"""The metrics of a run over W ranks: rank 0 writes every rank's episodes, in one global numbering.

:func:`wrap_log` gives each rank its run log: the :class:`RunLog` itself for one process, a
:class:`DistRunLog` for several (rank 0 writes through it, the others hold their episode records
and :data:`RANK_EVENTS`); after each rollout :class:`RolloutSync` gathers every rank's finished
episodes, numbers them globally, sets the global episode and env-step counts that all ranks then
agree on, and has rank 0 write the records (:mod:`nethack_moe.ppo.distributed`, "Counters and
curriculum" and "Output").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nethack_moe.ppo.distributed import DistContext
from nethack_moe.runs.records import EpisodeLine, EventLine, Line, UpdateLine, event_line

if TYPE_CHECKING:
    from nethack_moe.envs.accounting import EpisodeRecord
    from nethack_moe.ppo.hooks import RunLog

#: Events of a rank other than 0 that reach the metrics (tagged with the rank); the others
#: (resumed, interrupted, nonfinite_skip, ...) happen on every rank and rank 0 writes them once.
RANK_EVENTS = ("worker_restart",)


# ---------------------------------------------------------------------- metrics of W ranks
class DistRunLog:
    """The run log of one rank of several: rank 0 writes through its :class:`RunLog`, the others
    write nothing. Episode records (and :data:`RANK_EVENTS`) are held until :class:`RolloutSync`
    numbers every rank's episodes globally and rank 0 writes them."""

    def __init__(self, inner: RunLog | None, rank: int) -> None:
        self.inner, self.rank = inner, rank
        self.episodes: list[EpisodeLine] = []
        self.events: list[EventLine] = []

    def write(self, rec: Line) -> None:
        """A record, written by rank 0."""
        if self.inner is not None:
            self.inner.write(rec)

    def event(self, kind: str, **fields: Any) -> None:
        """An event: rank 0 writes its own; other ranks keep only :data:`RANK_EVENTS`."""
        if self.inner is not None:
            self.inner.event(kind, **fields)
        elif kind in RANK_EVENTS:
            self.events.append(event_line(kind, **fields))

    def episode(self, rec: EpisodeLine) -> None:
        """Held until the end of the rollout (:meth:`RolloutSync.merge`)."""
        self.episodes.append(rec)

    def update(self, rec: UpdateLine, n_episodes: int, postfix: dict[str, str]) -> None:
        """An update record, written by rank 0."""
        if self.inner is not None:
            self.inner.update(rec, n_episodes, postfix)

    def flush(self, sync: bool = False) -> None:
        if self.inner is not None:
            self.inner.flush(sync)

    def offset(self) -> int:
        return self.inner.offset() if self.inner is not None else 0

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


def wrap_log(dist: DistContext, make: Callable[[], RunLog]) -> RunLog | DistRunLog:
    """The run log of this rank: ``make()`` itself for one process; for several, a
    :class:`DistRunLog` around ``make()`` on rank 0 and around nothing elsewhere."""
    if not dist.distributed:
        return make()
    return DistRunLog(make() if dist.is_main else None, dist.rank)


@dataclass
class RolloutSync:
    """The global progress all ranks agree on, merged after every rollout."""

    dist: DistContext
    n_local: int
    """Envs per rank."""
    best_window: int
    episodes: int
    """Global episodes at the end of the last merged rollout."""
    env_steps: int
    """Global env steps at the same time."""
    recent: list[float]
    """The last ``best_window`` scores of every rank, in the global order."""

    def merge(
        self, log: RunLog | DistRunLog, counters: Any, finished: list[EpisodeRecord]
    ) -> list[float]:
        """Gather every rank's episodes of the rollout just collected; number them globally
        (ordered by the step they ended on, then rank), set ``counters.episodes`` /
        ``counters.env_steps`` to the global counts and ``finished`` to every rank's episodes,
        rank 0 writes the records; returns the global recent scores."""
        assert isinstance(log, DistRunLog)
        if len(log.episodes) != len(finished):
            raise RuntimeError("episode records and finished episodes disagree")
        mine = {
            "episodes": [(int(r.env_steps or 0) - self.env_steps, r, e) for r, e in zip(log.episodes, finished, strict=True)],
            "steps": counters.env_steps - self.env_steps,
            "events": log.events,
        }  # fmt: skip
        log.episodes, log.events = [], []
        every = self.dist.all_gather_objects(mine)
        merged = sorted(
            ((s, rank, i, rec, e) for rank, m in enumerate(every)
             for i, (s, rec, e) in enumerate(m["episodes"])),
            key=lambda x: x[:3],
        )  # fmt: skip
        W = self.dist.world_size
        for k, (s, rank, _, rec, _) in enumerate(merged):
            rec.episode, rec.env_steps, rec.rank = (
                self.episodes + k + 1,
                self.env_steps + s * W,
                rank,
            )
            rec.env_index = int(rec.env_index or 0) + rank * self.n_local
        self.episodes += len(merged)
        self.env_steps += sum(m["steps"] for m in every)
        scores = [float(x[3].score) for x in merged if not x[3].greedy]  # training score only
        self.recent = (self.recent + scores)[-self.best_window :]
        counters.episodes, counters.env_steps = self.episodes, self.env_steps
        finished[:] = [x[4] for x in merged]
        if log.inner is not None:
            for x in merged:
                log.inner.episode(x[3])
            for rank, m in enumerate(every):
                for ev in m["events"]:
                    log.inner.write(dataclasses.replace(ev, details={**ev.details, "rank": rank}))
        return list(self.recent)
