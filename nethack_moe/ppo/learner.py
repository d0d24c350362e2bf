"""Where the PPO update runs: in the loop, in a background thread, or in a learner process.

Every learner runs the same :class:`UpdateJob` through :func:`run_update` (the PPO epochs of
:func:`~nethack_moe.ppo.update.ppo_update` on one rollout storage), so the three give the same
numbers on one machine:

* :class:`InlineLearner` (``ppo.overlap=false``): the update runs before the next rollout.
* :class:`ThreadLearner` (``ppo.overlap=true``, ``ppo.learner=thread``): the update of rollout k
  runs in a background thread while rollout k+1 is collected with the policy before that update
  (a one-update policy lag). Both threads share one interpreter, so the learner gets about half
  a core on a busy acting thread.
* :class:`ProcessLearner` (``ppo.learner=process``): Sample Factory's split. The update runs in
  a process of its own; the rollout storages and the published parameters are in shared memory;
  the learner publishes each update's parameters with a version number before it answers, and
  the trainer loads them into the acting model. Same one-update lag, same results as the thread.
  The acting thread runs at nice :data:`ACTING_NICE` meanwhile, so that the learner (the
  bottleneck) keeps its core.

The trainer keeps a copy of the model, the optimizer and the minibatch generator: for the inline
and thread learners these are the live objects; for the process learner they are mirrors, which
:meth:`pull_state` fills from the learner before a checkpoint and :meth:`push_state` sends to it
after start-up or resume.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

from nethack_moe.config.train import config_from_dict
from nethack_moe.features import FeatureSpec
from nethack_moe.models.policy import ActorCritic, build_model
from nethack_moe.ppo.distributed import DistContext
from nethack_moe.ppo.storage import RolloutStorage
from nethack_moe.ppo.update import PPOSettings, UpdateStats, ppo_update

log = logging.getLogger(__name__)

LEARNER_KINDS = ("thread", "process")

#: How often the trainer checks that a busy learner process is still alive (seconds).
_POLL_S = 0.2

#: The niceness of the acting thread while a learner process runs. The run is learner-bound and
#: the acting side has slack, but at equal priority the acting thread's bursts take the learner's
#: core: on 2 cores an S500 update took 1.07 s at equal priority and 0.94 s at nice 5 (a nice
#: lowers no other process's priority, and needs no privilege).
ACTING_NICE = 5


class LearnerError(RuntimeError):
    """The learner process died or its update raised; its state since the last checkpoint is
    lost, and the last checkpoint stays usable."""


@dataclass
class UpdateJob:
    """One update: which storage, under which routing, and the PPO settings of the phase."""

    slot: int
    routing: str
    temperature: float
    lr: float
    settings: PPOSettings


@dataclass
class UpdateResult:
    """What the update did, and how long it took in the learner."""

    stats: UpdateStats
    seconds: float


def make_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """The PPO optimizer of a run (``cfg``: its :class:`TrainConfig`); the trainer's and the
    learner process's must be the same."""
    return torch.optim.Adam(model.parameters(), lr=cfg.curriculum.lr_at(0), eps=cfg.ppo.adam_eps)


def run_update(
    model: ActorCritic,
    optim: torch.optim.Optimizer,
    storages: list[RolloutStorage],
    job: UpdateJob,
    gen: torch.Generator,
    dist: DistContext,
    threads: int,
) -> UpdateResult:
    """The PPO epochs of ``job`` (every learner calls this)."""
    for g in optim.param_groups:
        g["lr"] = job.lr
    if next(model.parameters()).device.type == "cpu":  # per OS thread
        torch.set_num_threads(threads)
    t0 = time.monotonic()
    stats = ppo_update(model, optim, storages[job.slot], job.routing, job.temperature,
                       job.settings, gen, dist)  # fmt: skip
    return UpdateResult(stats, time.monotonic() - t0)


class _Done:
    """An update that already ran (the inline learner)."""

    def __init__(self, result: UpdateResult) -> None:
        self._result = result

    def result(self) -> UpdateResult:
        return self._result


class InlineLearner:
    """The update in the trainer's loop, on the live model (``ppo.overlap=false``)."""

    def __init__(self, model: ActorCritic, optim: torch.optim.Optimizer, gen: torch.Generator,
                 storages: list[RolloutStorage], dist: DistContext, threads: int) -> None:  # fmt: skip
        self.model, self.optim, self.gen, self.storages = model, optim, gen, storages
        self.dist, self.threads = dist, threads

    def submit(self, job: UpdateJob) -> Any:
        """Run ``job`` now; ``.result()`` of the return value gives its :class:`UpdateResult`."""
        return _Done(self._run(job))

    def _run(self, job: UpdateJob) -> UpdateResult:
        return run_update(self.model, self.optim, self.storages, job, self.gen, self.dist,
                          self.threads)  # fmt: skip

    def publish(self, acting: nn.Module) -> None:
        """Load the learned parameters into ``acting`` (a no-op when it is the live model)."""
        if acting is not self.model:
            acting.load_state_dict(self.model.state_dict())

    def pull_state(self) -> None:
        """The live objects are the learner's: nothing to fetch."""

    def push_state(self) -> None:
        """The live objects are the learner's: nothing to send."""

    def shutdown(self) -> None:
        """Nothing to stop."""


class ThreadLearner(InlineLearner):
    """The update in a background thread (``ppo.overlap=true``, ``ppo.learner=thread``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="learner")

    def submit(self, job: UpdateJob) -> Future[UpdateResult]:
        """Start ``job`` in the background."""
        return self.pool.submit(self._run, job)

    def shutdown(self) -> None:
        """Wait for a running update and stop the thread."""
        self.pool.shutdown(wait=True)


# ---------------------------------------------------------------------- the learner process
def _to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _from_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=True)


@dataclass
class LearnerDist:
    """How a learner process joins the other ranks' learners (torchrun): a process group of
    the learners alone, at ``tcp://addr:port``."""

    addr: str
    port: int
    rank: int
    world_size: int
    timeout_s: float

    def connect(self) -> DistContext:
        """Join the learners' group; the context the update's collectives run in."""
        timeout = timedelta(seconds=self.timeout_s)
        # a store of their own: under torchrun, init_method would join the agent's store instead
        store = tdist.TCPStore(self.addr, self.port, self.world_size, is_master=self.rank == 0,
                               timeout=timeout)  # fmt: skip
        tdist.init_process_group("gloo", store=store, rank=self.rank, world_size=self.world_size,
                                 timeout=timeout)  # fmt: skip
        return DistContext(rank=self.rank, world_size=self.world_size, timeout_s=self.timeout_s)


@dataclass
class LearnerInit:
    """What the learner process builds its model and optimizer from."""

    config: dict
    spec: FeatureSpec
    n_actions: int
    threads: int
    dist: LearnerDist | None


class ProcessLearner:
    """The update in a process of its own (``ppo.learner=process``; CPU only).

    ``model``, ``optim`` and ``gen`` are the trainer's mirrors of the learner's state; the
    storages are moved to shared memory and the learner writes nothing into them."""

    def __init__(self, init: LearnerInit, model: ActorCritic, optim: torch.optim.Optimizer,
                 gen: torch.Generator, storages: list[RolloutStorage]) -> None:  # fmt: skip
        self.model, self.optim, self.gen = model, optim, gen
        for st in storages:
            st.share_memory_()
        self.published = {k: v.detach().clone().share_memory_()
                          for k, v in model.state_dict().items()}  # fmt: skip
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.updates = 0
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=learner_main, args=(child, init, storages, self.published, self.version),
            name="nethack-moe-learner", daemon=True,
        )  # fmt: skip
        self.proc.start()
        child.close()
        self._busy: str | None = None
        self._nice = _Nice(ACTING_NICE)

    # -------------------------------------------------------------- the protocol
    def _send(self, *msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            raise LearnerError(self._died("sending it work")) from e

    def _died(self, what: str) -> str:
        self.proc.join(timeout=1.0)
        code = self.proc.exitcode
        how = f"exit code {code}" if code is not None else "no answer"
        return f"the learner process (pid {self.proc.pid}) died during {what} ({how})"

    def _recv(self, what: str) -> tuple:
        """The learner's answer; a dead learner or a failed job raises :class:`LearnerError`."""
        while not self.conn.poll(_POLL_S):
            if not self.proc.is_alive():
                raise LearnerError(self._died(what))
        try:
            msg = self.conn.recv()
        except (EOFError, ConnectionResetError, OSError) as e:
            raise LearnerError(self._died(what)) from e
        if msg[0] == "error":
            raise LearnerError(f"the learner process failed during {what}: {msg[1]}")
        return msg  # type: ignore[no-any-return]

    # -------------------------------------------------------------- the learner interface
    def submit(self, job: UpdateJob) -> ProcessLearner:
        """Send ``job``; :meth:`result` waits for it."""
        self._send("update", job)
        self._busy = f"update {self.updates + 1}"
        return self

    def result(self) -> UpdateResult:
        """The answer to the job sent last (once its parameters are published)."""
        what, self._busy = self._busy or "an update", None
        _, res = self._recv(what)
        self.updates += 1
        if int(self.version) != self.updates:
            raise LearnerError(f"published version {int(self.version)} after {self.updates} "
                               "updates; this is a bug")  # fmt: skip
        return res  # type: ignore[no-any-return]

    def publish(self, acting: nn.Module) -> None:
        """The last published parameters into ``acting`` and the trainer's mirror."""
        with torch.no_grad():
            for m in {id(acting): acting, id(self.model): self.model}.values():
                for k, v in m.state_dict().items():
                    v.copy_(self.published[k])

    def pull_state(self) -> None:
        """The learner's model, optimizer and generator into the trainer's mirrors."""
        self._send("state")
        _, data = self._recv("sending its state for a checkpoint")
        state = _from_bytes(data)
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self.gen.set_state(state["gen"])

    def push_state(self) -> None:
        """The trainer's model, optimizer and generator into the learner (start-up, resume)."""
        state = {"model": self.model.state_dict(), "optim": self.optim.state_dict(),
                 "gen": self.gen.get_state()}  # fmt: skip
        self._send("load", _to_bytes(state))
        self._recv("loading the start state")

    def shutdown(self) -> None:
        """Stop the learner (it finishes a running update first; killed after 30 s)."""
        if self.proc.is_alive():
            try:
                self.conn.send(("stop",))
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass
            self.proc.join(timeout=30)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join()
        self.conn.close()
        self._nice.restore()


class _Nice:
    """This thread at niceness ``at least`` (Linux: per thread) until :meth:`restore`, which
    succeeds where the system lets a thread raise its priority again (else it stays)."""

    def __init__(self, at_least: int) -> None:
        self.tid = threading.get_native_id()
        self.old: int | None = None
        try:
            now = os.getpriority(os.PRIO_PROCESS, self.tid)
            if now < at_least:
                os.setpriority(os.PRIO_PROCESS, self.tid, at_least)
                self.old = now
        except (AttributeError, OSError) as e:  # not POSIX, or not permitted: run as it is
            log.debug("acting thread priority unchanged: %s", e)

    def restore(self) -> None:
        if self.old is None or threading.get_native_id() != self.tid:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, self.tid, self.old)
        except OSError:
            pass
        self.old = None


def learner_main(conn: Any, init: LearnerInit, storages: list[RolloutStorage],
                 published: dict[str, torch.Tensor], version: torch.Tensor) -> None:  # fmt: skip
    """The learner process: answer ``load``, ``update``, ``state`` until ``stop`` or until the
    trainer's end of the pipe closes. Ctrl-C and SIGTERM are the trainer's to handle: it
    checkpoints with this process's state, then stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(init.threads)
    cfg = config_from_dict(init.config)
    model = build_model(cfg.model, init.spec, init.n_actions)
    optim = make_optimizer(model, cfg)
    gen = torch.Generator(device="cpu")
    dist = init.dist.connect() if init.dist is not None else DistContext()
    try:
        _serve(conn, model, optim, gen, storages, dist, init.threads, published, version)
    finally:
        if init.dist is not None and tdist.is_initialized():
            tdist.destroy_process_group()


def _serve(conn: Any, model: ActorCritic, optim: torch.optim.Optimizer, gen: torch.Generator,
           storages: list[RolloutStorage], dist: DistContext, threads: int,
           published: dict[str, torch.Tensor], version: torch.Tensor) -> None:  # fmt: skip
    while True:
        try:
            msg = conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            return  # the trainer is gone
        try:
            if msg[0] == "stop":
                return
            if msg[0] == "update":
                res = run_update(model, optim, storages, msg[1], gen, dist, threads)
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        published[k].copy_(v)
                version += 1
                reply: tuple = ("done", res)
            elif msg[0] == "state":
                reply = ("state", _to_bytes({"model": model.state_dict(),
                                             "optim": optim.state_dict(), "gen": gen.get_state()}))  # fmt: skip
            elif msg[0] == "load":
                state = _from_bytes(msg[1])
                model.load_state_dict(state["model"])
                optim.load_state_dict(state["optim"])
                gen.set_state(state["gen"])
                reply = ("ok",)
            else:
                reply = ("error", f"unknown request {msg[0]!r}")
        except Exception as e:  # the trainer raises it as one line
            reply = ("error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
        try:
            conn.send(reply)
        except (BrokenPipeError, ConnectionResetError, OSError):
            return
