"""N NLE envs over W worker processes, stepping in lock-step into shared-memory arrays.

The learner sees one batch per step: ``buf.state [N, S]``, ``buf.crop [N, C, C]``,
``buf.atoms [N, A]``, ``buf.reward [N]``, ``buf.terminated [N]``, ``buf.truncated [N]``; with
``env.teacher`` also the scripted teacher's ``buf.teacher_action [N]`` and
``buf.teacher_branch [N]`` for the same observations (-1 without it; never a policy input).
Envs auto-reset; a finished episode's record is in ``buf.episode [N, F]`` (``done`` column set)
for the step on which it ended, and the features of its last observation are in ``buf.final_*``
(used to bootstrap truncated episodes).

Seeds depend only on the env slot and its episode count (:func:`train_seeds`), so the same base
seed gives the same games whatever the number of workers. ``num_workers=0`` runs the envs in
the calling process (useful for tests and evaluation on one core).

This module holds :class:`VectorEnv`, which starts the workers and drives them; the arrays are
in :mod:`nethack_moe.envs.buffers`, one worker's envs and its process loop in
:mod:`nethack_moe.envs.group`, and the :class:`~nethack_moe.envs.factory.SeedPlan` in
:mod:`nethack_moe.envs.factory`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from typing import Any

import numpy as np

from nethack_moe import features as F
from nethack_moe.envs.accounting import (
    EP,
    EpisodeRecord,
    record_from_row,
)
from nethack_moe.envs.buffers import SharedBuffers
from nethack_moe.envs.factory import (
    EnvConfig,
    SeedPlan,
    make_env,
)
from nethack_moe.envs.group import EnvGroup, _worker_main

log = logging.getLogger(__name__)

__all__ = ["VectorEnv", "WorkerError"]


class WorkerError(RuntimeError):
    """An env worker crashed or stopped answering."""


class VectorEnv:
    """``num_envs`` NLE envs over ``num_workers`` processes (0 = in this process)."""

    def __init__(
        self,
        cfg: EnvConfig,
        num_envs: int,
        num_workers: int = 1,
        seed_plan: SeedPlan | None = None,
        step_timeout: float = 60.0,
        max_restarts: int = 5,
        restart_window: float = 60.0,
    ):
        cfg.validate()
        if num_envs <= 0:
            raise ValueError(f"num_envs={num_envs} must be positive")
        if num_workers < 0 or num_workers > num_envs:
            raise ValueError(f"num_workers={num_workers} must be in 0..num_envs ({num_envs})")
        self.cfg = cfg
        self.spec = F.FeatureSpec(crop_size=cfg.crop_size)
        self.num_envs = num_envs
        self.num_workers = num_workers
        self.plan = seed_plan or SeedPlan()
        self.step_timeout = step_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.buf = SharedBuffers(num_envs, self.spec, cfg.max_episode_steps)
        self.restart_times: list[float] = []
        self.dropped_episodes = 0
        self.worker_restarts = 0
        probe = make_env(cfg)
        self.n_actions = int(probe.action_space.n)
        probe.close()
        self._ctx = mp.get_context("forkserver")
        w = max(num_workers, 1)
        bounds = np.linspace(0, num_envs, w + 1).round().astype(int)
        self.bounds = [(int(bounds[k]), int(bounds[k + 1])) for k in range(w)]
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._pending: list[list[tuple[int, int]]] = [[] for _ in range(w)]
        self._local: EnvGroup | None = None
        self._closed = False
        try:
            if num_workers == 0:
                self._local = EnvGroup(cfg, self.spec, self.buf, 0, num_envs, self.plan)
            else:
                for k in range(num_workers):
                    self._procs.append(None)
                    self._conns.append(None)
                    self._start_worker(k, restart=False)
            self.reset()
        except BaseException:  # Ctrl-C or a failed start: no worker outlives us (they ignore
            self.close()  # SIGTERM, so multiprocessing's exit handler would wait on them forever)
            raise

    # ----------------------------------------------------------------- workers
    def _start_worker(self, k: int, restart: bool) -> None:
        lo, hi = self.bounds[k]
        parent, child = self._ctx.Pipe()
        args = (
            child,
            self.cfg,
            self.spec,
            self.buf.name,
            self.num_envs,
            lo,
            hi,
            self.plan,
            restart,
        )
        p = self._ctx.Process(target=_worker_main, args=args, daemon=True, name=f"nle-worker-{k}")
        p.start()
        child.close()
        self._procs[k], self._conns[k] = p, parent
        self._expect(k, "ready", timeout=120.0)

    def _expect(self, k: int, what: str, timeout: float) -> None:
        conn, p = self._conns[k], self._procs[k]
        deadline = time.monotonic() + timeout
        while not conn.poll(0.05):
            if not p.is_alive():
                raise WorkerError(f"env worker {k} (pid {p.pid}) died with exit code {p.exitcode}")
            if time.monotonic() > deadline:
                raise WorkerError(
                    f"env worker {k} (pid {p.pid}) did not answer within {timeout:.0f} s"
                )
        try:
            msg, payload = conn.recv()
        except (EOFError, ConnectionResetError) as e:
            raise WorkerError(f"env worker {k} (pid {p.pid}) closed its pipe") from e
        if msg == "error":
            raise WorkerError(f"env worker {k} failed:\n{payload}")
        if msg != what:
            raise WorkerError(f"env worker {k}: expected {what!r}, got {msg!r}")

    def _restart(self, k: int, err: Exception) -> None:
        now = time.monotonic()
        self.restart_times = [t for t in self.restart_times if now - t < self.restart_window]
        self.restart_times.append(now)
        if len(self.restart_times) > self.max_restarts:
            raise WorkerError(
                f"env workers died {len(self.restart_times)} times within {self.restart_window:.0f} s; "
                f"giving up (last error: {err})"
            )
        lo, hi = self.bounds[k]
        log.warning(
            "env worker %d died (%s); restarting it with fresh envs %d..%d", k, err, lo, hi - 1
        )
        p = self._procs[k]
        if p is not None and p.is_alive():
            p.kill()
        if p is not None:
            p.join(timeout=5)
        self.worker_restarts += 1
        self.dropped_episodes += hi - lo
        try:
            self._start_worker(k, restart=True)
        except WorkerError as e2:
            if "failed:" in str(e2):  # a Python exception in the env code: not a crash
                raise
            self._restart(k, e2)  # died again while starting: one more restart, same limit

    def _workers_in(self, lo: int, hi: int) -> list[int]:
        return [k for k, (a, b) in enumerate(self.bounds) if a < hi and b > lo]

    def _mark_restarted(self, k: int) -> None:
        """A restarted worker's envs start fresh games: their last step counts as truncated."""
        lo, hi = self.bounds[k]
        self.buf.episode[lo:hi, EP["done"]] = 0.0
        self.buf.reward[lo:hi] = 0.0
        self.buf.terminated[lo:hi] = False
        self.buf.truncated[lo:hi] = True
        self._pending[k].clear()

    def step_async(self, actions: np.ndarray, lo: int = 0, hi: int | None = None) -> None:
        """Start stepping envs ``lo..hi-1`` with ``actions [hi-lo]``; collect with :meth:`step_wait`.

        Ranges are queued per worker, so one worker can step one half of its envs while the
        caller computes the other half's actions (overlapping env stepping with inference).
        """
        hi = self.num_envs if hi is None else hi
        self.buf.actions[lo:hi] = actions
        if self._local is not None:
            self._local.step(lo, hi)
            return
        for k in self._workers_in(lo, hi):
            try:
                self._conns[k].send(("step", lo, hi))
                self._pending[k].append((lo, hi))
            except (BrokenPipeError, OSError) as e:
                self._restart(k, e)
                self._mark_restarted(k)

    def step_wait(self, lo: int = 0, hi: int | None = None) -> None:
        """Wait until envs ``lo..hi-1`` have stepped; results are in :attr:`buf`."""
        hi = self.num_envs if hi is None else hi
        if self._local is not None:
            return
        for k in self._workers_in(lo, hi):
            while self._pending[k] and self._pending[k][0] != (lo, hi):
                self._wait_one(k)  # an earlier range queued on the same worker
            if self._pending[k]:
                self._wait_one(k)

    def _wait_one(self, k: int) -> None:
        try:
            self._expect(k, "ok", timeout=self.step_timeout)
            self._pending[k].pop(0)
        except WorkerError as e:
            if "failed:" in str(e):  # a Python exception inside the env code: not a crash
                raise
            self._restart(k, e)
            self._mark_restarted(k)

    def _broadcast(self, cmd: str) -> list[int]:
        """Send ``cmd`` to every worker and wait; returns the workers that had to be restarted."""
        restarted: list[int] = []
        if self._local is not None:
            getattr(self._local, cmd)()
            return restarted
        alive = []
        for k, conn in enumerate(self._conns):
            try:
                conn.send(cmd)
                alive.append(k)
            except (BrokenPipeError, OSError) as e:
                self._restart(k, e)
                restarted.append(k)
        for k in alive:
            try:
                self._expect(k, "ok", timeout=self.step_timeout)
            except WorkerError as e:
                if "failed:" in str(e):  # a Python exception inside the env code: not a crash
                    raise
                self._restart(k, e)
                restarted.append(k)
        return restarted

    # ----------------------------------------------------------------- API
    def reset(self) -> None:
        """Reset every env (new episode numbers are not consumed: a reset replays the same seeds)."""
        self._broadcast("reset")

    def step(self, actions: np.ndarray) -> None:
        """Step every env with ``actions [N]``; results are in :attr:`buf`."""
        self.step_async(actions)
        self.step_wait()

    def get_state(self) -> dict[str, np.ndarray]:
        """What :meth:`set_state` needs to rebuild every env exactly (seeds + actions so far)."""
        L = int(self.buf.length.max()) if self.num_envs else 0
        return {
            "episode_count": self.buf.episode_count.copy(),
            "length": self.buf.length.copy(),
            "history": self.buf.history[:, :L].copy(),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Replay each env's current episode from its seeds and recorded actions."""
        ec = np.asarray(state["episode_count"])
        if ec.shape != (self.num_envs,):
            raise ValueError(
                f"env state is for {ec.shape[0]} envs, this vector env has {self.num_envs}"
            )
        hist = np.asarray(state["history"])
        self.buf.episode_count[:] = ec
        self.buf.length[:] = np.asarray(state["length"])
        self.buf.history[:] = 0
        self.buf.history[:, : hist.shape[1]] = hist
        self._broadcast("replay")

    def finished(self, lo: int = 0, hi: int | None = None) -> list[EpisodeRecord]:
        """Records of the episodes of envs ``lo..hi-1`` that ended on their last step."""
        done = np.flatnonzero(self.buf.episode[lo:hi, EP["done"]] > 0) + lo
        return [record_from_row(int(i), self.buf.episode[i]) for i in done]

    def feature_seconds(self) -> float:
        """Seconds spent computing features so far, summed over workers (they run in parallel)."""
        return float(self.buf.feat_seconds.sum())

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._local is not None:
            self._local.close()
        for conn in self._conns:
            try:
                conn.send("close")
            except Exception:
                pass
        for p in self._procs:
            if p is None:
                continue
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        self.buf.close()

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
