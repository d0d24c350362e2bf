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
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.envs import teacher as T
from nethack_moe.envs.accounting import (
    EP,
    EPISODE_FIELDS,
    EpisodeRecord,
    EpisodeTracker,
    record_from_row,
)
from nethack_moe.envs.factory import EnvConfig, eval_seeds, make_env, seed_env, train_seeds
from nethack_moe.envs.shaping import Shaper, descend_reward
from nethack_moe.envs.stepping import StepStatus, stepper

log = logging.getLogger(__name__)

__all__ = ["EnvGroup", "SeedPlan", "SharedBuffers", "VectorEnv", "WorkerError"]


class WorkerError(RuntimeError):
    """An env worker crashed or stopped answering."""


@dataclass(frozen=True)
class SeedPlan:
    """How env slot ``i`` seeds its ``k``-th episode.

    ``mode="train"``: :func:`train_seeds` of (base, i, k). ``mode="eval"``: the evaluation seed
    ``start + i + k * stride`` (stride = number of envs), so N envs share the E200 seed list.
    ``offset`` shifts the slots (slot ``i`` seeds as slot ``offset + i``): a torchrun rank with
    envs ``r*n .. r*n+n-1`` of the run's N plays the same games as those slots of one process.
    """

    mode: str = "train"
    base: int = 0
    stride: int = 1
    offset: int = 0

    def seeds(self, env_index: int, episode: int) -> tuple[int, int]:
        i = self.offset + env_index
        if self.mode == "train":
            return train_seeds(self.base, i, episode)
        if self.mode == "eval":
            return eval_seeds(self.base, i + episode * self.stride)
        raise ValueError(f"unknown seed mode {self.mode!r}")


def _array_specs(n: int, spec: F.FeatureSpec, cap: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    c = spec.crop_size
    return {
        "history": ((n, cap + 1), np.int16),
        "length": ((n,), np.int64),
        "state": ((n, F.STATE_DIM), np.float32),
        "crop": ((n, c, c), np.int16),
        "atoms": ((n, F.N_ATOMS), np.bool_),
        "blstats": ((n, nh.NLE_BLSTATS_SIZE), np.int64),
        "final_state": ((n, F.STATE_DIM), np.float32),
        "final_crop": ((n, c, c), np.int16),
        "final_atoms": ((n, F.N_ATOMS), np.bool_),
        "reward": ((n,), np.float32),
        "terminated": ((n,), np.bool_),
        "truncated": ((n,), np.bool_),
        "actions": ((n,), np.int64),
        "episode": ((n, len(EPISODE_FIELDS)), np.float64),
        "episode_count": ((n,), np.int64),
        "feat_seconds": ((n,), np.float64),
        "mem_stairs": ((n, 3), np.int64),
        "mem_level": ((n,), np.int64),
        "mem_visited": ((n, F.ROWS, F.COLS), np.bool_),
        "mem_locked": ((n, F.ROWS, F.COLS), np.bool_),
        "mem_n_visited": ((n,), np.int64),
        "teacher_action": ((n,), np.int64),
        "teacher_branch": ((n,), np.int64),
    }


class SharedBuffers:
    """Named numpy arrays backed by one shared-memory block (or plain memory)."""

    def __init__(
        self,
        n: int,
        spec: F.FeatureSpec,
        cap: int,
        shm_name: str | None = None,
        create: bool = True,
    ):
        specs = _array_specs(n, spec, cap)
        offsets: dict[str, int] = {}
        total = 0
        for k, (shape, dt) in specs.items():
            total = (total + 63) // 64 * 64
            offsets[k] = total
            total += int(np.prod(shape)) * np.dtype(dt).itemsize
        self.shm: shared_memory.SharedMemory | None
        if create:
            self.shm = shared_memory.SharedMemory(create=True, size=max(total, 1))
        else:
            self.shm = shared_memory.SharedMemory(name=shm_name)
        self.name = self.shm.name
        self._owner = create
        for k, (shape, dt) in specs.items():
            arr = np.ndarray(shape, dtype=dt, buffer=self.shm.buf, offset=offsets[k])
            setattr(self, k, arr)
        self.memory = F.Memory(
            self.mem_stairs, self.mem_level, self.mem_visited, self.mem_locked, self.mem_n_visited
        )
        if create:
            self.memory.clear(slice(None))
            self.teacher_action[:] = -1
            self.teacher_branch[:] = -1

    def close(self) -> None:
        if self.shm is None:
            return
        for k in list(self.__dict__):
            if isinstance(self.__dict__[k], (np.ndarray, F.Memory)):
                del self.__dict__[k]
        self.shm.close()
        if self._owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
        self.shm = None

    # declared for type checkers
    history: np.ndarray
    length: np.ndarray
    state: np.ndarray
    crop: np.ndarray
    atoms: np.ndarray
    blstats: np.ndarray
    final_state: np.ndarray
    final_crop: np.ndarray
    final_atoms: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    actions: np.ndarray
    episode: np.ndarray
    episode_count: np.ndarray
    feat_seconds: np.ndarray
    mem_stairs: np.ndarray
    mem_level: np.ndarray
    mem_visited: np.ndarray
    mem_locked: np.ndarray
    mem_n_visited: np.ndarray
    teacher_action: np.ndarray
    teacher_branch: np.ndarray


class EnvGroup:
    """The envs ``lo..hi-1`` of one worker and the code that steps them into the buffers."""

    #: Step NetHackScore envs below NLE's gymnasium wrapper (envs/stepping.py: same results).
    direct_step: bool = True

    def __init__(
        self,
        cfg: EnvConfig,
        spec: F.FeatureSpec,
        buf: SharedBuffers,
        lo: int,
        hi: int,
        plan: SeedPlan,
    ):
        self.cfg, self.spec, self.buf, self.lo, self.hi, self.plan = cfg, spec, buf, lo, hi, plan
        self.n = hi - lo
        self.envs = [make_env(cfg).unwrapped for _ in range(self.n)]
        self.steppers = [stepper(env, self.direct_step) for env in self.envs]
        self.cap = cfg.max_episode_steps
        self.tracker = EpisodeTracker(self.n)
        # staging for the raw observations of this group (reused every step)
        self.glyphs = np.zeros((self.n, F.ROWS, F.COLS), np.int16)
        self.blstats = np.zeros((self.n, nh.NLE_BLSTATS_SIZE), np.int64)
        self.message = np.zeros((self.n, nh.NLE_MESSAGE_SIZE), np.uint8)
        self.tty = np.zeros((self.n, nh.NLE_TERM_LI, nh.NLE_TERM_CO), np.uint8)
        self.sl = slice(lo, hi)
        self.shaper = Shaper(cfg, self.n)  # reward shaping (envs/shaping.py)
        self.shaping = self.shaper.enabled
        # the scripted teacher's memory of this group's envs (teacher.py), when it is on
        self.teacher = T.new_teacher_memory(self.n) if cfg.teacher else None

    def _stage(self, j: int) -> None:
        """Copy env ``j``'s observation from NLE's buffers into the staging arrays."""
        glyphs, blstats, message, tty = self.steppers[j].buffers
        self.glyphs[j] = glyphs
        self.blstats[j] = blstats
        self.message[j] = message
        self.tty[j] = tty

    def _reset_one(self, j: int) -> None:
        i = self.lo + j
        k = int(self.buf.episode_count[i])
        core, disp = self.plan.seeds(i, k)
        seed_env(self.envs[j], core, disp)
        self.steppers[j].reset()
        self._stage(j)
        self.tracker.start(j, self.blstats[j], core, disp)
        self.buf.memory.clear(i)
        if self.teacher is not None:
            self.teacher.clear(j)
        self.buf.length[i] = 0

    def _features(self, j0: int = 0, j1: int | None = None, teach: bool = True) -> None:
        """Features of local envs ``j0..j1-1`` straight into the shared arrays (and the teacher's
        advice, unless ``teach`` is false: it has seen these observations already)."""
        j1 = self.n if j1 is None else j1
        t0 = time.perf_counter()
        b, sl = self.buf, slice(self.lo + j0, self.lo + j1)
        F.compute_features(
            self.glyphs[j0:j1], self.blstats[j0:j1], self.message[j0:j1], self.tty[j0:j1], self.spec,
            out_state=b.state[sl], out_crop=b.crop[sl], out_atoms=b.atoms[sl], memory=b.memory.rows(sl),
        )  # fmt: skip
        b.blstats[sl] = self.blstats[j0:j1]
        if self.teacher is not None and teach:  # after the features: it reads their memory
            self._teach(j0, j1)
        b.feat_seconds[self.lo] += time.perf_counter() - t0

    def _teach(self, j0: int, j1: int, atoms: np.ndarray | None = None) -> None:
        """The teacher's action and branch for local envs ``j0..j1-1`` (features computed;
        ``atoms``: theirs when they are not in the shared buffer, as during a replay)."""
        assert self.teacher is not None
        b, sl = self.buf, slice(self.lo + j0, self.lo + j1)
        T.compute_teacher(
            self.glyphs[j0:j1], self.blstats[j0:j1], self.message[j0:j1],
            b.atoms[sl] if atoms is None else atoms,
            b.memory.rows(sl), self.teacher.rows(slice(j0, j1)),
            out_action=b.teacher_action[sl], out_branch=b.teacher_branch[sl],
        )  # fmt: skip

    def _shape(self, js: np.ndarray, state: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """Shaping rewards of local envs ``js`` for their new features ``state`` (Shaper.observe);
        ``fresh`` rows (a new episode) only record the starting point."""
        cells = self.buf.memory.n_visited[self.lo + js]
        return self.shaper.observe(js, state, cells, self.blstats[js, nh.NLE_BL_DEPTH], fresh)

    def reset(self) -> None:
        for j in range(self.n):
            self._reset_one(j)
        b, sl = self.buf, self.sl
        b.reward[sl] = 0.0
        b.terminated[sl] = False
        b.truncated[sl] = False
        b.episode[sl] = 0.0
        self._features()
        if self.shaping:
            self._shape(np.arange(self.n), b.state[sl], np.ones(self.n, bool))

    def _advance(self, j: int, action: int) -> tuple[float, bool, bool, bool]:
        """Step env ``j`` once; returns (reward, terminated, truncated, ended). The observation
        stays in NLE's buffers (:meth:`_stage` copies it)."""
        i = self.lo + j
        length = int(self.tracker.length[j])
        self.buf.history[i, length] = action
        r, done, trunc, status = self.steppers[j](action)
        # We cap episodes ourselves, one step before NLE's own cap (make_env), because NLE
        # quits the game at its cap and zeroes blstats: the last observation stays usable.
        trunc = trunc or status == StepStatus.ABORTED
        trunc = trunc or (not done and length + 1 >= self.cap)
        term = done and not trunc
        r = r * self.cfg.reward_scale
        bl = self.steppers[j].buffers[1]
        if self.cfg.descend_bonus:
            bonus = descend_reward(
                self.cfg, int(bl[nh.NLE_BL_DEPTH]), int(self.tracker.max_depth[j]), done
            )
            if bonus:
                r += bonus
        self.tracker.update(j, bl, r, done)
        self.buf.length[i] = length + 1
        return r, term, trunc, done or trunc

    def step(self, lo: int | None = None, hi: int | None = None) -> None:
        """Step the envs of this group that lie in the global range ``lo..hi-1`` (default: all)."""
        j0 = 0 if lo is None else max(lo - self.lo, 0)
        j1 = self.n if hi is None else min(hi - self.lo, self.n)
        if j1 <= j0:
            return
        b = self.buf
        acts = b.actions[self.lo + j0 : self.lo + j1]
        b.episode[self.lo + j0 : self.lo + j1, EP["done"]] = 0.0
        ended: list[int] = []
        for j in range(j0, j1):
            i = self.lo + j
            a = int(acts[j - j0])
            r, term, trunc, end = self._advance(j, a)
            if self.teacher is not None:
                self.teacher.taken[j] = a  # the teacher learns what its last advice led to
            hint = self.shaper.hint_reward(j, a)
            if hint:
                r += hint
                self.tracker.reward[j] += hint
            b.reward[i] = r
            b.terminated[i] = term
            b.truncated[i] = trunc
            self._stage(j)
            if end:
                ended.append(j)
        if ended:
            self._finish(ended)
        self._features(j0, j1)
        if self.shaping:
            js = np.arange(j0, j1)
            fresh = np.zeros(j1 - j0, bool)
            fresh[np.asarray(ended, dtype=np.int64) - j0] = True
            bonus = self._shape(js, b.state[self.lo + j0 : self.lo + j1], fresh)
            bonus[fresh] = 0.0
            b.reward[self.lo + j0 : self.lo + j1] += bonus
            self.tracker.reward[js] += bonus

    def _replay_features(self, j: int, fresh: bool) -> float:
        """Features of env j's current observation (memory updated) and its shaping reward."""
        i = self.lo + j
        st, _, at = F.compute_features(
            self.glyphs[j : j + 1], self.blstats[j : j + 1], self.message[j : j + 1],
            self.tty[j : j + 1], self.spec, memory=self.buf.memory.rows(slice(i, i + 1)),
        )  # fmt: skip
        if self.teacher is not None:  # rebuild the teacher's memory too (exact resume)
            self._teach(j, j + 1, atoms=at)  # this observation's atoms, not the buffer's
        if not self.shaping:
            return 0.0
        return float(self._shape(np.array([j]), st, np.array([fresh]))[0])

    def replay(self) -> None:
        """Rebuild every env's current game from its seeds and the recorded actions (exact resume)."""
        b = self.buf
        saved_len = b.length[self.sl].copy()
        saved_hist = b.history[self.sl].copy()
        for j in range(self.n):
            self._reset_one(j)
            self._replay_features(j, fresh=True)
            for t in range(int(saved_len[j])):
                a = int(saved_hist[j, t])
                self._advance(j, a)
                if self.teacher is not None:
                    self.teacher.taken[j] = a
                hint = self.shaper.hint_reward(j, a)
                if hint:
                    self.tracker.reward[j] += hint
                self._stage(j)
                r = self._replay_features(j, fresh=False)
                self.tracker.reward[j] += r
        b.reward[self.sl] = 0.0
        b.terminated[self.sl] = False
        b.truncated[self.sl] = False
        b.episode[self.sl] = 0.0
        self._features(teach=False)  # the replay gave the teacher every observation once

    def _finish(self, ended: list[int]) -> None:
        """Record finished episodes, keep their last features, reset them."""
        b = self.buf
        idx = np.asarray(ended)
        gidx = idx + self.lo
        # features of the last observation (before the reset overwrites the staging arrays)
        mem = b.memory.rows(gidx)  # fancy index: a copy, the live memory is not touched
        st, cr, at = F.compute_features(
            self.glyphs[idx],
            self.blstats[idx],
            self.message[idx],
            self.tty[idx],
            self.spec,
            memory=mem,
        )
        b.final_state[gidx] = st
        b.final_crop[gidx] = cr
        b.final_atoms[gidx] = at
        for j in ended:
            i = self.lo + j
            self.tracker.finish(j, bool(b.terminated[i]), b.episode[i])
            b.episode_count[i] += 1
            self._reset_one(j)

    def drop_and_reset(self) -> None:
        """Fresh envs after a crash: unfinished episodes are dropped, games restart."""
        b, sl = self.buf, self.sl
        # the current observation is the last good one: bootstrap from it
        b.final_state[sl] = b.state[sl]
        b.final_crop[sl] = b.crop[sl]
        b.final_atoms[sl] = b.atoms[sl]
        b.episode_count[sl] += 1
        self.reset()
        b.truncated[sl] = True

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker_main(conn, cfg, spec, shm_name, n_total, lo, hi, plan, restart) -> None:
    # the trainer handles Ctrl-C and SIGTERM (a preemption signals the whole process group);
    # a worker whose trainer is gone exits on the closed pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        buf = SharedBuffers(n_total, spec, cfg.max_episode_steps, shm_name=shm_name, create=False)
    except FileNotFoundError:  # the vector env was closed (e.g. Ctrl-C) before this worker started
        return
    group = None
    try:
        group = EnvGroup(cfg, spec, buf, lo, hi, plan)
        if restart:
            group.drop_and_reset()
        conn.send(("ready", os.getpid()))
        while True:
            cmd = conn.recv()
            if isinstance(cmd, tuple) and cmd[0] == "step":
                group.step(cmd[1], cmd[2])
                conn.send(("ok", None))
            elif cmd == "reset":
                group.reset()
                conn.send(("ok", None))
            elif cmd == "replay":
                group.replay()
                conn.send(("ok", None))
            elif cmd == "close":
                break
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except Exception:  # report the traceback to the parent
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:
            pass
    finally:
        if group is not None:
            group.close()
        buf.close()


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
        if num_workers == 0:
            self._local = EnvGroup(cfg, self.spec, self.buf, 0, num_envs, self.plan)
        else:
            for k in range(num_workers):
                self._procs.append(None)
                self._conns.append(None)
                self._start_worker(k, restart=False)
        self.reset()

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
