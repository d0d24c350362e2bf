"""The records of ``metrics.jsonl``, one dataclass per ``type``: written by the trainer
(:meth:`to_json`), read back by :mod:`nethack_moe.runs.metrics_io` and the report
(:func:`from_json`).

:meth:`to_json` gives the dict the trainer has always written, key order included (the file is
``json.dumps(rec, separators=(",", ":"))`` of it); ``from_json(to_json(r))`` is ``r``, and a record
of an older file comes back with ``None`` for what it lacks. Keys of ``update`` records are grouped
by prefix: ``loss/<term>``, ``teacher/<figure>``, ``routing/<figure>`` (the names of
:mod:`nethack_moe.metrics.names`) and ``time/<part>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nethack_moe.metrics import names as mn

RUN_START, EPISODE, UPDATE, CHECKPOINT, EVENT = (
    "run_start",
    "episode",
    "update",
    "checkpoint",
    "event",
)
#: Every record type, in the order :func:`nethack_moe.runs.metrics_io.split_by_type` lists them.
RECORD_TYPES = (RUN_START, EPISODE, UPDATE, CHECKPOINT, EVENT)

LOSS_PREFIX, TEACHER_PREFIX, TIME_PREFIX = "loss/", "teacher/", "time/"


def _take(data: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: data.get(k) for k in names}


@dataclass
class RunStartLine:
    """``run_start``: the first record of a fresh run."""

    TYPE: ClassVar[str] = RUN_START
    version: str | None = None
    config: dict[str, Any] | None = None
    device: str | None = None
    machine: str | None = None
    torch: str | None = None
    world_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as written."""
        return {"type": RUN_START, "version": self.version, "config": self.config,
                "device": self.device, "machine": self.machine, "torch": self.torch,
                "world_size": self.world_size}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunStartLine:
        """A record as read."""
        return cls(**_take(data, _RUN_START_KEYS))


_RUN_START_KEYS = ("version", "config", "device", "machine", "torch", "world_size")


@dataclass
class EpisodeLine:
    """``episode``: one finished training episode."""

    TYPE: ClassVar[str] = EPISODE
    episode: int | None = None
    """Global episode number (1-based)."""
    env_steps: int | None = None
    score: float | None = None
    reward: float | None = None
    length: int | None = None
    depth: int | None = None
    died: bool | None = None
    phase: str | None = None
    temperature: float | None = None
    routing: str | None = None
    seed_core: int | None = None
    seed_disp: int | None = None
    env_index: int | None = None
    wall: float | None = None
    rank: int | None = None
    """torchrun: the rank that played it (absent for one process)."""
    greedy: bool | None = None
    """Played by argmax (``ppo.greedy_envs``), not part of the training score (absent if not)."""

    def to_json(self) -> dict[str, Any]:
        """The record as written (``rank`` and ``greedy`` only when set)."""
        out = {"type": EPISODE, **{k: getattr(self, k) for k in _EPISODE_KEYS}}
        if self.rank is not None:
            out["rank"] = self.rank
        if self.greedy:
            out["greedy"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpisodeLine:
        """A record as read."""
        return cls(**_take(data, (*_EPISODE_KEYS, "rank", "greedy")))


_EPISODE_KEYS = ("episode", "env_steps", "score", "reward", "length", "depth", "died", "phase",
                 "temperature", "routing", "seed_core", "seed_disp", "env_index", "wall")  # fmt: skip


@dataclass
class UpdateLine:
    """``update``: one PPO update: the curriculum it ran under, the loss terms, the teacher's
    agreement, the optimisation figures, the routing figures, speed and the time split."""

    TYPE: ClassVar[str] = UPDATE
    update: int | None = None
    episode: int | None = None
    env_steps: int | None = None
    phase: str | None = None
    routing: str | None = None
    """The routing kind."""
    temperature: float | None = None
    lr: float | None = None
    losses: dict[str, float | None] = field(default_factory=dict)
    """Loss term -> mean (``loss/<term>``; ``teacher`` is ``None`` when there is no teacher)."""
    teacher: dict[str, float] = field(default_factory=dict)
    """``teacher/<figure>``: ``coef``, ``agree``, ``agree/<branch>``, ``share/<branch>``."""
    approx_kl: float | None = None
    clip_frac: float | None = None
    explained_var: float | None = None
    grad_norm: float | None = None
    skipped: bool | None = None
    nonfinite_term: str | None = None
    routing_figures: dict[str, Any] = field(default_factory=dict)
    """Routing figure name (:mod:`nethack_moe.metrics.names`) -> value (``routing/<name>``)."""
    sps: float | None = None
    times: dict[str, float] = field(default_factory=dict)
    """Seconds per part of the update (``time/<part>``)."""
    wall: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of an older or newer file this version does not know (written last)."""

    def routing_value(self, name: str) -> Any:
        """Routing figure ``name`` (legacy names too: :func:`names.routing_value`)."""
        return mn.routing_value(self.routing_figures, name)

    def loss(self, term: str) -> float | None:
        """Mean of loss term ``term`` (:data:`~nethack_moe.config.loss_terms.LOSS_TERMS`;
        ``None`` when not logged)."""
        return self.losses.get(term)

    def time(self, part: str) -> float | None:
        """Seconds spent on ``part`` of the update (``None`` when not logged)."""
        return self.times.get(part)

    def to_json(self) -> dict[str, Any]:
        """The record as written."""
        out: dict[str, Any] = {"type": UPDATE, **{k: getattr(self, k) for k in _UPDATE_HEAD}}
        out.update({LOSS_PREFIX + k: v for k, v in self.losses.items()})
        out.update({TEACHER_PREFIX + k: v for k, v in self.teacher.items()})
        out.update({k: getattr(self, k) for k in _UPDATE_OPT})
        out.update({mn.record_key(k): v for k, v in self.routing_figures.items()})
        out["sps"] = self.sps
        out.update({TIME_PREFIX + k: v for k, v in self.times.items()})
        out["wall"] = self.wall
        return {**out, **self.extra}

    def put(self, figures: Mapping[str, Any]) -> None:
        """Set figures given by their record keys (``explained_var``, ``routing/mi``,
        ``teacher/agree`` ...): each to its field or group (unknown keys to :attr:`extra`)."""
        groups = ((LOSS_PREFIX, self.losses), (TEACHER_PREFIX, self.teacher),
                  (mn.ROUTING_PREFIX, self.routing_figures), (TIME_PREFIX, self.times))  # fmt: skip
        for k, v in figures.items():
            if k in _UPDATE_KNOWN:
                setattr(self, k, v)
                continue
            group = next((g for p, g in groups if k.startswith(p)), self.extra)
            group[k.split("/", 1)[1] if group is not self.extra else k] = v

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UpdateLine:
        """A record as read (keys sorted into the groups by their prefix)."""
        rec = cls()
        rec.put({k: v for k, v in data.items() if k != "type"})
        return rec


_UPDATE_HEAD = ("update", "episode", "env_steps", "phase", "routing", "temperature", "lr")
_UPDATE_OPT = ("approx_kl", "clip_frac", "explained_var", "grad_norm", "skipped", "nonfinite_term")
_UPDATE_KNOWN = frozenset((*_UPDATE_HEAD, *_UPDATE_OPT, "sps", "wall"))


@dataclass
class CheckpointLine:
    """``checkpoint``: a checkpoint written (``kind``: periodic, best, final)."""

    TYPE: ClassVar[str] = CHECKPOINT
    episode: int | None = None
    kind: str | None = None
    path: str | None = None
    """Relative to the run directory (``checkpoints/ep_000500.pt``)."""

    def to_json(self) -> dict[str, Any]:
        """The record as written."""
        return {"type": CHECKPOINT, "episode": self.episode, "kind": self.kind, "path": self.path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckpointLine:
        """A record as read."""
        return cls(**_take(data, ("episode", "kind", "path")))


@dataclass
class EventLine:
    """``event``: something that happened to the run (``resumed``, ``worker_restart``,
    ``nonfinite_skip``, ``interrupted``, ``worker_failure``, ...); what it says beyond the
    episode depends on ``kind``, in :attr:`details`."""

    TYPE: ClassVar[str] = EVENT
    kind: str | None = None
    episode: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """The kind's own fields, in the order written (``count``, ``dropped_total``, ``from`` ...;
    torchrun: ``rank`` last)."""

    def get(self, key: str, default: Any = None) -> Any:
        """A field of :attr:`details`."""
        return self.details.get(key, default)

    @property
    def count(self) -> int:
        """How many times it happened (``count``; 1 when absent or not a number)."""
        c = self.details.get("count", 1)
        return int(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else 1

    @property
    def dropped_total(self) -> int | None:
        """Episodes dropped by dead env workers so far (``dropped_total``; ``None`` when absent)."""
        v = self.details.get("dropped_total")
        return int(v) if isinstance(v, (int, float)) else None

    def to_json(self) -> dict[str, Any]:
        """The record as written (``episode`` only when set)."""
        out: dict[str, Any] = {"type": EVENT, "kind": self.kind}
        if self.episode is not None:
            out["episode"] = self.episode
        return {**out, **self.details}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventLine:
        """A record as read."""
        details = {k: v for k, v in data.items() if k not in ("type", "kind", "episode")}
        return cls(data.get("kind"), data.get("episode"), details)


def event_line(kind: str, episode: int | None = None, **details: Any) -> EventLine:
    """An ``event`` as the trainer writes it: ``kind``, ``episode``, then the kind's fields."""
    return EventLine(kind, episode, details)


Line = RunStartLine | EpisodeLine | UpdateLine | CheckpointLine | EventLine
_BY_TYPE: dict[str, Any] = {
    c.TYPE: c for c in (RunStartLine, EpisodeLine, UpdateLine, CheckpointLine, EventLine)
}


def from_json(data: Mapping[str, Any]) -> Line | None:
    """The typed record of a ``metrics.jsonl`` line (``None`` for an unknown ``type``)."""
    cls = _BY_TYPE.get(str(data.get("type")))
    return None if cls is None else cls.from_json(data)
