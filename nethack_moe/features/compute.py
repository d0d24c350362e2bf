"""The entry point of the features: :func:`compute_features` over a batch of observations, with
reused scratch arrays, filling the caller's output arrays (shared memory in the vector env) through
the fused kernel of :mod:`nethack_moe.features.kernel`."""

from __future__ import annotations

from typing import Any

import numpy as np
from nle import nethack as nh

from nethack_moe.features.glyphs import (
    GLYPH_GROUP,
    KERNEL_FLAGS,
)
from nethack_moe.features.kernel import _fused_rows
from nethack_moe.features.spec import (
    _COND_ARRAY,
    COLS,
    LAST_MOVE,
    N_ATOMS,
    ROWS,
    STATE_DIM,
    FeatureSpec,
    Memory,
)

_EMPTY_TTY = np.zeros((0, nh.NLE_TERM_LI * nh.NLE_TERM_CO), np.uint8)
_NO_MEMORY = (
    np.zeros((0, 3), np.int64),
    np.zeros(0, np.int64),
    np.zeros((1, ROWS, COLS), bool),
    np.zeros((1, ROWS, COLS), bool),
    np.zeros(0, np.int64),
)
_SCRATCH: dict[str, np.ndarray] = {}


def _scratch() -> tuple[np.ndarray, ...]:
    """Scratch arrays of the kernel, allocated once per process."""
    if not _SCRATCH:
        _SCRATCH["maps"] = np.zeros((2, ROWS, COLS), np.uint8)
        _SCRATCH["bfs"] = np.zeros((2, ROWS, COLS), np.int32)
        _SCRATCH["qy"] = np.zeros(ROWS * COLS, np.int32)
        _SCRATCH["qx"] = np.zeros(ROWS * COLS, np.int32)
        _SCRATCH["scan"] = np.zeros(10, np.int64)
    return tuple(_SCRATCH[k] for k in ("maps", "bfs", "qy", "qx", "scan"))


def _log_columns(bl: np.ndarray, s: np.ndarray) -> None:
    """The four log1p columns of the state, with NumPy's log1p exactly as the reference."""
    hp = bl[:, nh.NLE_BL_HP].astype(np.float32)
    s[:, 1] = np.log1p(np.maximum(hp, 0)) / 5.0
    s[:, 6] = np.log1p(np.maximum(bl[:, nh.NLE_BL_GOLD], 0)) / 5.0
    s[:, 10] = np.log1p(np.maximum(bl[:, nh.NLE_BL_TIME], 0)) / 8.0
    s[:, 11] = np.log1p(np.maximum(bl[:, nh.NLE_BL_SCORE], 0)) / 8.0


def compute_features(
    glyphs: np.ndarray,
    blstats: np.ndarray,
    message: np.ndarray,
    tty_chars: np.ndarray | None,
    spec: FeatureSpec,
    out_state: np.ndarray | None = None,
    out_crop: np.ndarray | None = None,
    out_atoms: np.ndarray | None = None,
    memory: Memory | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of a batch of observations, in one compiled pass (the hot path of the env workers).

    Args:
        glyphs: ``[B, 21, 79]`` glyph ids.
        blstats: ``[B, 27]`` bottom-line stats.
        message: ``[B, 256]`` message bytes.
        tty_chars: ``[B, 24, 80]`` terminal characters (for ``--More--``), or ``None``.
        spec: crop size.
        out_*: optional preallocated outputs (``[B, STATE_DIM]`` float32, ``[B, C, C]`` int16,
            ``[B, N_ATOMS]`` bool).
        memory: optional level memory from :func:`new_memory`, updated in place; without it a
            staircase under the hero is not seen (``on_downstairs`` stays false).

    Returns:
        ``(state, crop, atoms)``, bit for bit those of :func:`compute_features_reference`.
    """
    B = glyphs.shape[0]
    C = spec.crop_size
    state = out_state if out_state is not None else np.empty((B, STATE_DIM), np.float32)
    crop = out_crop if out_crop is not None else np.empty((B, C, C), np.int16)
    atoms = out_atoms if out_atoms is not None else np.empty((B, N_ATOMS), bool)
    if B == 0:
        return state, crop, atoms
    g = np.ascontiguousarray(glyphs, dtype=np.int16)  # no copy for NLE's own dtypes
    bl = np.ascontiguousarray(blstats, dtype=np.int64)
    msg = np.ascontiguousarray(message).view(np.uint8).reshape(B, -1)
    tty = (
        _EMPTY_TTY
        if tty_chars is None
        else np.ascontiguousarray(tty_chars).view(np.uint8).reshape(B, -1)
    )
    mem = _NO_MEMORY if memory is None else (
        memory.stairs, memory.level, memory.visited, memory.locked, memory.n_visited
    )  # fmt: skip
    scratch = _scratch()
    kernel: Any = _fused_rows  # (a numba dispatcher: its stub does not know the arguments)
    kernel(
        g, bl, msg, tty, tty_chars is not None, KERNEL_FLAGS, GLYPH_GROUP, _COND_ARRAY,
        memory is not None, *mem, state, crop, atoms, *scratch,
    )  # fmt: skip
    _log_columns(bl, state)
    state[:, LAST_MOVE:] = 0.0  # the one-step memory: the env layer writes it (write_last_move)
    return state, crop, atoms
