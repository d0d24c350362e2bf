"""The arrays that the env workers write and the learner reads, one row per env.

:class:`SharedBuffers` holds them as named numpy arrays backed by one shared-memory block (or
plain memory with ``num_workers=0``): the features (``state``, ``crop``, ``atoms`` and the
``final_*`` features of an episode's last observation), rewards, end flags and actions, the
teacher's advice, the episode records and counts, the action history and the feature memory. A
worker process attaches to the block by name (``create=False``).
"""

from __future__ import annotations

from multiprocessing import shared_memory
from typing import Any

import numpy as np
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.envs.accounting import EPISODE_FIELDS


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
