"""The NumPy reference of the features, kept beside the fused kernel for the tests that check the
kernel against it (``tests/test_features_fused.py``); never used in training."""

from __future__ import annotations

import re

import numpy as np
from nle import nethack as nh

from nethack_moe.features.glyphs import (
    _BIG,
    _BIT,
    _RING4,
    _RING8,
    _RING16,
    GLYPH_FLAGS,
    GLYPH_GROUP,
    IS_CLOSED_DOOR,
    IS_FLOATING_EYE,
    IS_STONE,
    IS_WALL,
    PAD_GLYPH,
    WALK_CLASS,
)
from nethack_moe.features.spec import (
    _COND_ARRAY,
    _CONDITION_BITS,
    _LOCKED,
    _MORE,
    _NAV_SCALARS,
    _STATE_SCALARS,
    ATOM_INDEX,
    COLS,
    HUNGER_HUNGRY,
    HUNGER_SATIATED,
    HUNGER_WEAK,
    LAST_MOVE,
    N_ATOMS,
    N_ENCUMBRANCE,
    N_HUNGER,
    N_NAV,
    ROWS,
    STATE_DIM,
    FeatureSpec,
    Memory,
)
from nethack_moe.game.navigation import nav_batch


def _nearest(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Chebyshev distance and position of the nearest true cell per batch row ([B] each)."""
    B = mask.shape[0]
    dmin = np.full(B, _BIG, np.int64)
    py = np.zeros(B, np.int64)
    px = np.zeros(B, np.int64)
    bi, yi, xi = np.nonzero(mask)
    if bi.size:
        d = np.maximum(np.abs(yi - ys[bi]), np.abs(xi - xs[bi]))
        order = np.lexsort((d, bi))
        first = np.unique(bi[order], return_index=True)[1]
        sel = order[first]
        rows = bi[sel]
        dmin[rows] = d[sel]
        py[rows] = yi[sel]
        px[rows] = xi[sel]
    return dmin, py, px


_PAD_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _padded(glyphs: np.ndarray, r: int) -> np.ndarray:
    """The glyph map padded by ``r`` cells of :data:`PAD_GLYPH` (buffer reused per shape)."""
    B = glyphs.shape[0]
    buf = _PAD_CACHE.get((B, r))
    if buf is None:
        buf = np.full((B, ROWS + 2 * r, COLS + 2 * r), PAD_GLYPH, dtype=np.int16)
        _PAD_CACHE[(B, r)] = buf
    buf[:, r : r + ROWS, r : r + COLS] = glyphs
    return buf


def _navigation_hint(glyphs, P, r, ys, xs, d_y, d_x, down_vis, visited, locked, s, o) -> None:
    """Fill the nav features: first move toward the known down stairs, else the nearest frontier
    (a walkable cell next to blank map that the hero has not stood on yet)."""

    B = glyphs.shape[0]
    walk = WALK_CLASS[glyphs]  # [B, R, C]
    if locked is not None:
        walk[locked] = 0
    # frontier: a walkable cell with blank (unexplored) map among its 8 neighbours
    stone = IS_STONE[P]  # padded by r
    near_stone = np.zeros((B, ROWS, COLS), dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                near_stone |= stone[:, r + dy : r + dy + ROWS, r + dx : r + dx + COLS]
    # the hero hides the terrain it stands on: between two walls it stands in a doorway, where
    # diagonal moves are not allowed
    bidx = np.arange(B)
    yp, xp = ys + r, xs + r
    horiz = IS_WALL[P[bidx, yp, xp - 1]] & IS_WALL[P[bidx, yp, xp + 1]]
    vert = IS_WALL[P[bidx, yp - 1, xp]] & IS_WALL[P[bidx, yp + 1, xp]]
    walk[bidx, ys, xs] = np.where(horiz | vert, 2, 1)
    frontier = near_stone & (walk > 0)
    if visited is not None:
        frontier &= ~visited
    k, dist, stairs = nav_batch(walk, frontier, down_vis, d_y, d_x, ys, xs)
    on_stairs = down_vis & (d_y == ys) & (d_x == xs)
    k = np.where(on_stairs, 8, k)  # standing on the known stairs: the hint is to go down
    dist = np.where(on_stairs, 0, dist)
    stairs = stairs | on_stairs
    s[:, o : o + N_NAV] = k[:, None] == np.arange(N_NAV)[None, :]
    s[:, _NAV_SCALARS[0]] = k >= 0
    s[:, _NAV_SCALARS[1]] = stairs
    s[:, _NAV_SCALARS[2]] = np.where(k >= 0, np.minimum(dist, 80) / 40.0, 0.0)


def compute_features_reference(
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
    """Features of a batch of observations: the NumPy reference of :func:`compute_features`.

    Same arguments and results, bit for bit (``tests/test_features_fused.py`` checks it on real
    play); kept as the readable specification of every feature, not used in the hot loop.

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
        ``(state, crop, atoms)``.
    """
    B = glyphs.shape[0]
    C = spec.crop_size
    r = C // 2
    state = out_state if out_state is not None else np.empty((B, STATE_DIM), np.float32)
    crop = out_crop if out_crop is not None else np.empty((B, C, C), np.int16)
    atoms = out_atoms if out_atoms is not None else np.empty((B, N_ATOMS), bool)
    bl = blstats.astype(np.int64, copy=False)
    xs = np.clip(bl[:, nh.NLE_BL_X], 0, COLS - 1)
    ys = np.clip(bl[:, nh.NLE_BL_Y], 0, ROWS - 1)
    bidx = np.arange(B)

    # ---- egocentric window (hero at the centre), padded at the map edges ----
    P = _padded(glyphs, r)
    ar = np.arange(C)
    win = P[bidx[:, None, None], (ys[:, None] + ar)[:, :, None], (xs[:, None] + ar)[:, None, :]]
    crop[:] = GLYPH_GROUP[win]
    block = win[:, r - 1 : r + 2, r - 1 : r + 2].reshape(B, 9)
    bflags = GLYPH_FLAGS[block]  # [B, 9]
    ring8 = bflags[:, _RING8]
    ring4 = bflags[:, _RING4]

    def near8(name: str) -> np.ndarray:
        return (ring8 & _BIT[name]).any(1)

    def near4(name: str) -> np.ndarray:
        return (ring4 & _BIT[name]).any(1)

    # ---- whole-map questions from one flag lookup ----
    flags = GLYPH_FLAGS[glyphs]  # [B, R, C]
    hostile = (flags & _BIT["hostile"]) != 0
    hostile[bidx, ys, xs] = False  # the hero's own glyph is not a hostile
    h_min, h_y, h_x = _nearest(hostile, ys, xs)
    d_min, d_y, d_x = _nearest((flags & _BIT["down"]) != 0, ys, xs)
    down_vis = d_min < _BIG
    hvis = h_min < _BIG
    depth = bl[:, nh.NLE_BL_DEPTH]
    visited = locked = None
    if memory is not None:
        seen = down_vis
        ms = memory.stairs
        ms[seen, 0] = depth[seen]
        ms[seen, 1] = d_y[seen]
        ms[seen, 2] = d_x[seen]
        known = (~seen) & (ms[:, 0] == depth)
        d_y = np.where(known, ms[:, 1], d_y)
        d_x = np.where(known, ms[:, 2], d_x)
        new_level = memory.level != depth
        if new_level.any():
            memory.visited[new_level] = False
            memory.locked[new_level] = False
            memory.n_visited[new_level] = 0
            memory.level[new_level] = depth[new_level]
        memory.n_visited += ~memory.visited[bidx, ys, xs]
        memory.visited[bidx, ys, xs] = True
        visited = memory.visited
        locked_msg = (message[:, : len(_LOCKED)] == _LOCKED).all(1)
        for b in np.flatnonzero(locked_msg):
            # the locked door is one of the closed doors orthogonally next to the hero
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                y, x = ys[b] + dy, xs[b] + dx
                if 0 <= y < ROWS and 0 <= x < COLS and IS_CLOSED_DOOR[glyphs[b, y, x]]:
                    memory.locked[b, y, x] = True
        locked = memory.locked
        d_min = np.where(known, np.maximum(np.abs(d_y - ys), np.abs(d_x - xs)), d_min)
        down_vis = down_vis | known
    flat = flags.reshape(B, -1)
    hunger = np.clip(bl[:, nh.NLE_BL_HUNGER], 0, N_HUNGER - 1)
    enc = np.clip(bl[:, nh.NLE_BL_CAP], 0, N_ENCUMBRANCE - 1)
    cond = bl[:, nh.NLE_BL_CONDITION]
    hp = bl[:, nh.NLE_BL_HP].astype(np.float32)
    hpmax = np.maximum(bl[:, nh.NLE_BL_HPMAX], 1).astype(np.float32)

    # ---- state vector ----
    s = state
    s[:, 0] = hp / hpmax
    s[:, 1] = np.log1p(np.maximum(hp, 0)) / 5.0
    s[:, 2] = bl[:, nh.NLE_BL_ENE] / np.maximum(bl[:, nh.NLE_BL_ENEMAX], 1)
    s[:, 3] = depth / 10.0
    s[:, 4] = bl[:, nh.NLE_BL_XP] / 10.0
    s[:, 5] = (10 - bl[:, nh.NLE_BL_AC]) / 10.0
    s[:, 6] = np.log1p(np.maximum(bl[:, nh.NLE_BL_GOLD], 0)) / 5.0
    s[:, 7] = bl[:, nh.NLE_BL_STR25] / 25.0
    s[:, 8] = bl[:, nh.NLE_BL_DEX] / 25.0
    s[:, 9] = bl[:, nh.NLE_BL_CON] / 25.0
    s[:, 10] = np.log1p(np.maximum(bl[:, nh.NLE_BL_TIME], 0)) / 8.0
    s[:, 11] = np.log1p(np.maximum(bl[:, nh.NLE_BL_SCORE], 0)) / 8.0
    s[:, 12] = xs / COLS
    s[:, 13] = ys / ROWS
    s[:, 14] = np.where(down_vis, np.clip((d_x - xs) / 20.0, -1, 1), 0.0)
    s[:, 15] = np.where(down_vis, np.clip((d_y - ys) / 10.0, -1, 1), 0.0)
    s[:, 16] = down_vis
    s[:, 17] = np.where(hvis, np.clip((h_x - xs) / 10.0, -1, 1), 0.0)
    s[:, 18] = np.where(hvis, np.clip((h_y - ys) / 10.0, -1, 1), 0.0)
    o = len(_STATE_SCALARS)
    s[:, o : o + N_HUNGER] = hunger[:, None] == np.arange(N_HUNGER)[None, :]
    o += N_HUNGER
    s[:, o : o + N_ENCUMBRANCE] = enc[:, None] == np.arange(N_ENCUMBRANCE)[None, :]
    o += N_ENCUMBRANCE
    s[:, o : o + len(_CONDITION_BITS)] = (cond[:, None] & _COND_ARRAY[None, :]) != 0
    o += len(_CONDITION_BITS)
    _navigation_hint(glyphs, P, r, ys, xs, d_y, d_x, down_vis, visited, locked, s, o)

    # ---- atoms ----
    a = atoms
    A = ATOM_INDEX
    a[:, A["hp_low"]] = hp * 3 < hpmax
    a[:, A["hp_critical"]] = (hp * 6 < hpmax) | (hp <= 5)
    a[:, A["hp_full"]] = hp >= hpmax
    a[:, A["hungry"]] = hunger == HUNGER_HUNGRY
    a[:, A["weak"]] = hunger >= HUNGER_WEAK
    a[:, A["satiated"]] = hunger == HUNGER_SATIATED
    a[:, A["confused"]] = (cond & nh.BL_MASK_CONF) != 0
    a[:, A["stunned"]] = (cond & nh.BL_MASK_STUN) != 0
    a[:, A["blind"]] = (cond & nh.BL_MASK_BLIND) != 0
    a[:, A["hallucinating"]] = (cond & nh.BL_MASK_HALLU) != 0
    a[:, A["sick"]] = (cond & (nh.BL_MASK_FOODPOIS | nh.BL_MASK_TERMILL)) != 0
    a[:, A["encumbered"]] = enc >= 1
    a[:, A["hostile_adjacent"]] = h_min <= 1
    a[:, A["hostile_near"]] = h_min <= 3
    a[:, A["hostile_visible"]] = hvis
    a[:, A["many_hostiles"]] = hostile.reshape(B, -1).sum(1) >= 3
    a[:, A["floating_eye_adjacent"]] = IS_FLOATING_EYE[block[:, _RING8]].any(1)
    a[:, A["pet_adjacent"]] = near8("pet")
    a[:, A["pet_visible"]] = (flat & _BIT["pet"]).any(1)
    a[:, A["downstairs_visible"]] = down_vis
    a[:, A["on_downstairs"]] = d_min == 0
    a[:, A["upstairs_visible"]] = (flat & _BIT["up"]).any(1)
    a[:, A["door_adjacent"]] = near4("door")
    a[:, A["closed_door_adjacent"]] = near4("closed_door")
    # the hero's glyph hides the terrain under it: judge it from the 8 neighbours; room floor is
    # never next to a corridor cell (a wall or a doorway lies between)
    in_room = near8("floor")
    a[:, A["in_corridor"]] = near8("corridor") & ~in_room
    a[:, A["in_room"]] = in_room
    ry = np.clip(ys[:, None] + _RING16[:, 0], 0, ROWS - 1)
    rx = np.clip(xs[:, None] + _RING16[:, 1], 0, COLS - 1)
    dark2 = ((flags[bidx[:, None], ry, rx] & _BIT["dark"]) != 0).any(1)
    a[:, A["dark_room"]] = in_room & dark2 & ((cond & nh.BL_MASK_BLIND) == 0)
    a[:, A["item_here"]] = _item_here(message)
    a[:, A["item_adjacent"]] = near8("item")
    a[:, A["food_visible"]] = (flat & _BIT["food"]).any(1)
    a[:, A["trap_adjacent"]] = near8("trap")
    a[:, A["boulder_adjacent"]] = near8("boulder")
    a[:, A["water_adjacent"]] = near8("water")
    a[:, A["dead_end"]] = ((ring8 & _BIT["walkable"]) != 0).sum(1) <= 1
    a[:, A["unexplored_adjacent"]] = near4("stone")
    a[:, A["more_prompt"]] = _has_more(tty_chars, B)
    a[:, A["question_prompt"]] = _is_question(message)
    a[:, A["deeper_than_1"]] = depth >= 2
    a[:, A["low_xp"]] = bl[:, nh.NLE_BL_XP] <= 2
    a[:, A["prayer_ready"]] = bl[:, nh.NLE_BL_TIME] > 300
    state[:, LAST_MOVE:] = 0.0  # the one-step memory: the env layer writes it
    return state, crop, atoms


def _item_here(message: np.ndarray) -> np.ndarray:
    B = message.shape[0]
    out = np.zeros(B, dtype=bool)
    raw = np.ascontiguousarray(message).view(np.uint8).reshape(B, -1)
    for i in range(B):
        row = raw[i]
        if row[0] == 0:
            continue
        m = row.tobytes()
        out[i] = (
            (b"You see here" in m)
            or (b"You feel here" in m)
            or ((b"objects here" in m) and (b"no objects here" not in m))
            or (b"You have a little trouble" in m)
        )
    return out


#: "[ynq]", "[ynq] (n)", "[abc or ?*]" at the end of the message, or getpos's instructions.
_PROMPT_END = re.compile(rb"(\](?: \(.\))?|\(For instructions type a '\?'\))$")


def _is_question(message: np.ndarray) -> np.ndarray:
    B = message.shape[0]
    out = np.zeros(B, dtype=bool)
    raw = np.ascontiguousarray(message).view(np.uint8).reshape(B, -1)
    for i in range(B):
        if raw[i, 0] == 0:
            continue
        m = raw[i].tobytes().rstrip(b"\0").rstrip()
        out[i] = m.endswith(b"?") or _PROMPT_END.search(m) is not None or b"In what direction" in m
    return out


def _has_more(tty_chars: np.ndarray | None, B: int) -> np.ndarray:
    """``--More--`` anywhere on the terminal (vectorized substring search)."""
    if tty_chars is None:
        return np.zeros(B, dtype=bool)
    t = (
        tty_chars.reshape(B, -1).view(np.uint8)
        if tty_chars.dtype != np.uint8
        else tty_chars.reshape(B, -1)
    )
    n = t.shape[1] - len(_MORE) + 1
    hit = t[:, :n] == _MORE[0]
    for k in range(1, len(_MORE)):
        hit &= t[:, k : k + n] == _MORE[k]
    return hit.any(1)
