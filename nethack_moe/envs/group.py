"""One worker's envs: :class:`EnvGroup` steps envs ``lo..hi-1`` into the shared buffers, and
``_worker_main`` is the loop of a worker process that owns one.

The group resets each env with the seeds of its :class:`~nethack_moe.envs.factory.SeedPlan`,
stages NLE's observations, writes the features (and the teacher's advice) straight into the
:class:`~nethack_moe.envs.buffers.SharedBuffers`, shapes the rewards and records finished
episodes; :class:`~nethack_moe.envs.vector.VectorEnv` drives one group per worker (or one in the
calling process with ``num_workers=0``).
"""

from __future__ import annotations

import os
import signal
import time
import traceback

import numpy as np
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.envs import teacher as T
from nethack_moe.envs.accounting import EP, EpisodeTracker
from nethack_moe.envs.buffers import SharedBuffers
from nethack_moe.envs.factory import EnvConfig, SeedPlan, make_env, seed_env
from nethack_moe.envs.shaping import Shaper, descend_reward
from nethack_moe.envs.stepping import StepStatus, stepper
from nethack_moe.envs.teacher_memory import new_teacher_memory


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
        self.teacher = new_teacher_memory(self.n) if cfg.teacher else None
        # the short memory of the state vector (last move, moved, steps still)
        self.moves = F.MoveMemory(self.n, self.envs[0].actions if self.n else ())

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
        self.moves.clear(j)
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
        self.moves.write(b.state[sl], slice(j0, j1))
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
        bl = self.steppers[j].buffers[1]
        self.moves.record(j, action, self.blstats[j], bl)  # staging: still the old observation
        # We cap episodes ourselves, one step before NLE's own cap (make_env), because NLE
        # quits the game at its cap and zeroes blstats: the last observation stays usable.
        trunc = trunc or status == StepStatus.ABORTED
        trunc = trunc or (not done and length + 1 >= self.cap)
        term = done and not trunc
        r = r * self.cfg.reward_scale
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
        self.moves.write(st, idx)
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
