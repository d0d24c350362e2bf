"""The fused numba kernel: every feature of a batch (state, crop, atoms, hint, level memory) in
one compiled pass per row (:func:`compute_features`), checked against
:mod:`nethack_moe.features.reference` by the tests."""

from __future__ import annotations

import numba
import numpy as np
from nle import nethack as nh

from nethack_moe.features.glyphs import (
    _B_BOULDER,
    _B_CLOSED,
    _B_CORRIDOR,
    _B_DARK,
    _B_DOOR,
    _B_DOWN,
    _B_FLOOR,
    _B_FOOD,
    _B_HOSTILE,
    _B_ITEM,
    _B_PET,
    _B_STONE,
    _B_TRAP,
    _B_UP,
    _B_WALKABLE,
    _B_WATER,
    _BIG,
    _K_FEYE,
    _K_WALK_SHIFT,
    _K_WALL,
    _RING16,
    PAD_GLYPH,
)
from nethack_moe.features.spec import (
    _CONDITION_BITS,
    _STATE_SCALARS,
    ATOMS,
    COLS,
    HUNGER_HUNGRY,
    HUNGER_SATIATED,
    HUNGER_WEAK,
    N_ENCUMBRANCE,
    N_HUNGER,
    N_NAV,
    NAV_ONEHOT,
    ROWS,
)
from nethack_moe.game.navigation import BLOCKED, DOOR, FREE, bfs_step

# --------------------------------------------------------------------------------------------
# The fused kernel: every feature of a batch in one compiled pass per row
# --------------------------------------------------------------------------------------------
# The kernel reads NLE's constants (blstats indices, condition masks) as compile-time constants;
# nle is pinned (==1.3.0), so numba's on-disk cache cannot go stale on them. The glyph tables are
# passed as arguments.

_BL_X, _BL_Y, _BL_HP, _BL_HPMAX = nh.NLE_BL_X, nh.NLE_BL_Y, nh.NLE_BL_HP, nh.NLE_BL_HPMAX
_BL_ENE, _BL_ENEMAX, _BL_DEPTH, _BL_XP = (
    nh.NLE_BL_ENE,
    nh.NLE_BL_ENEMAX,
    nh.NLE_BL_DEPTH,
    nh.NLE_BL_XP,
)
_BL_AC, _BL_STR, _BL_DEX, _BL_CON = nh.NLE_BL_AC, nh.NLE_BL_STR25, nh.NLE_BL_DEX, nh.NLE_BL_CON
_BL_TIME, _BL_HUNGER, _BL_CAP, _BL_COND = (
    nh.NLE_BL_TIME,
    nh.NLE_BL_HUNGER,
    nh.NLE_BL_CAP,
    nh.NLE_BL_CONDITION,
)
_M_CONF, _M_STUN, _M_BLIND, _M_HALLU = (
    nh.BL_MASK_CONF,
    nh.BL_MASK_STUN,
    nh.BL_MASK_BLIND,
    nh.BL_MASK_HALLU,
)
_M_SICK = nh.BL_MASK_FOODPOIS | nh.BL_MASK_TERMILL
_O_HUNGER = len(_STATE_SCALARS)
_O_ENC = _O_HUNGER + N_HUNGER
_O_COND = _O_ENC + N_ENCUMBRANCE
_O_NAV = _O_COND + len(_CONDITION_BITS)
_N_COND = len(_CONDITION_BITS)
#: The atom order the kernel writes (checked against ATOMS below).
_KERNEL_ATOMS = (
    "hp_low", "hp_critical", "hp_full", "hungry", "weak", "satiated", "confused", "stunned",
    "blind", "hallucinating", "sick", "encumbered", "hostile_adjacent", "hostile_near",
    "hostile_visible", "many_hostiles", "floating_eye_adjacent", "pet_adjacent", "pet_visible",
    "downstairs_visible", "on_downstairs", "upstairs_visible", "door_adjacent",
    "closed_door_adjacent", "in_corridor", "in_room", "dark_room", "item_here", "item_adjacent",
    "food_visible", "trap_adjacent", "boulder_adjacent", "water_adjacent", "dead_end",
    "unexplored_adjacent", "more_prompt", "question_prompt", "deeper_than_1", "low_xp",
    "prayer_ready",
)  # fmt: skip
if _KERNEL_ATOMS != ATOMS or _O_NAV != NAV_ONEHOT:
    raise RuntimeError("the fused kernel's atom or state layout is out of date")
_PAT_MORE = np.frombuffer(b"--More--", dtype=np.uint8).copy()
_PAT_LOCKED = np.frombuffer(b"This door is locked", dtype=np.uint8).copy()
_PAT_SEE = np.frombuffer(b"You see here", dtype=np.uint8).copy()
_PAT_FEEL = np.frombuffer(b"You feel here", dtype=np.uint8).copy()
_PAT_OBJECTS = np.frombuffer(b"objects here", dtype=np.uint8).copy()
_PAT_NO_OBJECTS = np.frombuffer(b"no objects here", dtype=np.uint8).copy()
_PAT_TROUBLE = np.frombuffer(b"You have a little trouble", dtype=np.uint8).copy()
_PAT_DIRECTION = np.frombuffer(b"In what direction", dtype=np.uint8).copy()
_PAT_INSTRUCTIONS = np.frombuffer(b"(For instructions type a '?')", dtype=np.uint8).copy()
_RING16_DY = _RING16[:, 0].astype(np.int64)
_RING16_DX = _RING16[:, 1].astype(np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def _contains(row, start, end, pat):  # pragma: no cover - jitted
    """Whether ``pat`` occurs in ``row[start:end]``."""
    n = pat.shape[0]
    for i in range(start, end - n + 1):
        if row[i] == pat[0]:
            ok = True
            for k in range(1, n):
                if row[i + k] != pat[k]:
                    ok = False
                    break
            if ok:
                return True
    return False


@numba.njit(cache=True, nogil=True, inline="always")
def _ends_with(row, end, pat):  # pragma: no cover - jitted
    """Whether ``row[:end]`` ends with ``pat``."""
    n = pat.shape[0]
    if end < n:
        return False
    for k in range(n):
        if row[end - n + k] != pat[k]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _item_here_row(msg):  # pragma: no cover - jitted
    """The ``item_here`` atom from one message row (searched whole, as the reference does)."""
    if msg[0] == 0:
        return False
    L = msg.shape[0]
    if _contains(msg, 0, L, _PAT_SEE) or _contains(msg, 0, L, _PAT_FEEL):
        return True
    if _contains(msg, 0, L, _PAT_OBJECTS) and not _contains(msg, 0, L, _PAT_NO_OBJECTS):
        return True
    return _contains(msg, 0, L, _PAT_TROUBLE)


@numba.njit(cache=True, nogil=True)
def _question_row(msg):  # pragma: no cover - jitted
    """The ``question_prompt`` atom: ``_is_question`` of one message row."""
    if msg[0] == 0:
        return False
    end = msg.shape[0]
    while end > 0 and msg[end - 1] == 0:  # rstrip(b"\0")
        end -= 1
    while end > 0 and (msg[end - 1] == 32 or 9 <= msg[end - 1] <= 13):  # rstrip()
        end -= 1
    if end == 0:
        return False
    last = msg[end - 1]
    if last == 63 or last == 93:  # ends with "?" or "]"
        return True
    # "] (c)" with any c but a newline
    if end >= 5 and last == 41 and msg[end - 3] == 40 and msg[end - 4] == 32:
        if msg[end - 5] == 93 and msg[end - 2] != 10:
            return True
    if _ends_with(msg, end, _PAT_INSTRUCTIONS):
        return True
    return _contains(msg, 0, end, _PAT_DIRECTION)


@numba.njit(cache=True, nogil=True, inline="always")
def _flags_at(glyphs, kflags, y, x):  # pragma: no cover - jitted
    """Kernel flags of map cell (y, x); 0 outside the map (the padding glyph)."""
    R, C = glyphs.shape
    if 0 <= y < R and 0 <= x < C:
        return kflags[glyphs[y, x]]
    return kflags[PAD_GLYPH]


@numba.njit(cache=True, nogil=True)
def _update_level_memory(
    glyphs, kflags, msg, y, x, depth, level, visited, locked, n_visited, b
):  # pragma: no cover
    """Start a new level's memory on a depth change, mark the hero's cell visited, and mark the
    closed doors next to the hero locked after "This door is locked"."""
    R, C = glyphs.shape
    if level[b] != depth:
        visited[b] = False
        locked[b] = False
        n_visited[b] = 0
        level[b] = depth
    if not visited[b, y, x]:
        n_visited[b] += 1
        visited[b, y, x] = True
    if _ends_with(msg, _PAT_LOCKED.shape[0], _PAT_LOCKED):
        for k in range(4):
            ny = y + (-1, 1, 0, 0)[k]
            nx = x + (0, 0, -1, 1)[k]
            if 0 <= ny < R and 0 <= nx < C and (kflags[glyphs[ny, nx]] & _B_CLOSED):
                locked[b, ny, nx] = True


@numba.njit(cache=True, nogil=True)
def _scan_map(glyphs, kflags, y, x, locked_b, use_locked, walk, stone, out):  # pragma: no cover
    """One pass over the map: walk classes and blank cells into ``walk``/``stone`` [R, C]; nearest
    hostile and down staircase, hostile count and whole-map flags into ``out`` (int64 [10]):
    h_min, h_y, h_x, n_hostile, d_min, d_y, d_x, pet, up, food."""
    R, C = glyphs.shape
    h_min, h_y, h_x, n_host = _BIG, 0, 0, 0
    d_min, d_y, d_x = _BIG, 0, 0
    anyf = 0
    for yy in range(R):
        for xx in range(C):
            f = kflags[glyphs[yy, xx]]
            anyf |= f
            walk[yy, xx] = (f >> _K_WALK_SHIFT) & 3
            if use_locked and locked_b[yy, xx]:
                walk[yy, xx] = BLOCKED
            stone[yy, xx] = (f & _B_STONE) != 0
            if f & (_B_HOSTILE | _B_DOWN):
                d = max(abs(yy - y), abs(xx - x))
                if (f & _B_HOSTILE) and not (yy == y and xx == x):
                    n_host += 1
                    if d < h_min:
                        h_min, h_y, h_x = d, yy, xx
                if (f & _B_DOWN) and d < d_min:
                    d_min, d_y, d_x = d, yy, xx
    out[0], out[1], out[2], out[3] = h_min, h_y, h_x, n_host
    out[4], out[5], out[6] = d_min, d_y, d_x
    out[7] = (anyf & _B_PET) != 0
    out[8] = (anyf & _B_UP) != 0
    out[9] = (anyf & _B_FOOD) != 0


@numba.njit(cache=True, nogil=True)
def _navigate(
    glyphs, kflags, y, x, down_vis, d_y, d_x, visited_b, use_visited, maps, bfs, qy, qx
):  # pragma: no cover
    """The navigation hint of one row: (move index 0..8 or -1, path length, goal is the stairs).

    Scratch: ``maps`` [2, R, C] uint8 walk classes and blank map (filled by _scan_map), ``bfs``
    [2, R, C] int32 BFS parents and distances."""
    walk, stone, parent, dist = maps[0], maps[1], bfs[0], bfs[1]
    # the hero hides the terrain it stands on: between two walls it stands in a doorway
    horiz = (_flags_at(glyphs, kflags, y, x - 1) & _flags_at(glyphs, kflags, y, x + 1)) & _K_WALL
    vert = (_flags_at(glyphs, kflags, y - 1, x) & _flags_at(glyphs, kflags, y + 1, x)) & _K_WALL
    walk[y, x] = DOOR if (horiz | vert) != 0 else FREE
    k, d, stairs = -1, -1, False
    if down_vis:
        keep = walk[d_y, d_x]
        walk[d_y, d_x] = FREE  # the stairs may lie under a monster or the hero
        k, d = bfs_step(walk, y, x, d_y, d_x, stone, visited_b, use_visited, qy, qx, parent, dist)
        walk[d_y, d_x] = keep
        stairs = k >= 0
    if k < 0:
        k, d = bfs_step(walk, y, x, -1, -1, stone, visited_b, use_visited, qy, qx, parent, dist)
    if down_vis and d_y == y and d_x == x:  # on the known stairs: the hint is to go down
        k, d, stairs = 8, 0, True
    return k, d, stairs


@numba.njit(cache=True, nogil=True)
def _clip1(v):  # pragma: no cover - jitted
    return min(max(v, -1.0), 1.0)


@numba.njit(cache=True, nogil=True)
def _state_row(
    bl, s, y, x, down_vis, d_y, d_x, hvis, h_y, h_x, k, dist, stairs, cond_bits
):  # pragma: no cover
    """The state vector of one row, except the four log1p columns (filled with NumPy, whose SIMD
    log1p differs from libm's in the last bit)."""
    hp = np.float32(bl[_BL_HP])
    hpmax = np.float32(max(bl[_BL_HPMAX], 1))
    s[0] = hp / hpmax
    s[2] = bl[_BL_ENE] / max(bl[_BL_ENEMAX], 1)
    s[3] = bl[_BL_DEPTH] / 10.0
    s[4] = bl[_BL_XP] / 10.0
    s[5] = (10 - bl[_BL_AC]) / 10.0
    s[7] = bl[_BL_STR] / 25.0
    s[8] = bl[_BL_DEX] / 25.0
    s[9] = bl[_BL_CON] / 25.0
    s[12] = x / COLS
    s[13] = y / ROWS
    s[14] = _clip1((d_x - x) / 20.0) if down_vis else 0.0
    s[15] = _clip1((d_y - y) / 10.0) if down_vis else 0.0
    s[16] = down_vis
    s[17] = _clip1((h_x - x) / 10.0) if hvis else 0.0
    s[18] = _clip1((h_y - y) / 10.0) if hvis else 0.0
    s[19] = k >= 0
    s[20] = stairs
    s[21] = min(dist, 80) / 40.0 if k >= 0 else 0.0
    hunger = min(max(bl[_BL_HUNGER], 0), N_HUNGER - 1)
    enc = min(max(bl[_BL_CAP], 0), N_ENCUMBRANCE - 1)
    for i in range(N_HUNGER):
        s[_O_HUNGER + i] = hunger == i
    for i in range(N_ENCUMBRANCE):
        s[_O_ENC + i] = enc == i
    for i in range(_N_COND):
        s[_O_COND + i] = (bl[_BL_COND] & cond_bits[i]) != 0
    for i in range(N_NAV):
        s[_O_NAV + i] = k == i


@numba.njit(cache=True, nogil=True)
def _atoms_row(
    bl, a, glyphs, kflags, y, x, scan, down_vis, d_min, item, question, more
):  # pragma: no cover
    """The atom vector of one row (order: _KERNEL_ATOMS)."""
    hp = np.float32(bl[_BL_HP])
    hpmax = np.float32(max(bl[_BL_HPMAX], 1))
    hunger = min(max(bl[_BL_HUNGER], 0), N_HUNGER - 1)
    cond = bl[_BL_COND]
    depth = bl[_BL_DEPTH]
    ring8 = 0  # OR of the flags of the 8 cells around the hero
    ring4 = 0  # ... of the 4 orthogonal ones
    n_walk = 0
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if dy == 0 and dx == 0:
                continue
            f = _flags_at(glyphs, kflags, y + dy, x + dx)
            ring8 |= f
            n_walk += (f & _B_WALKABLE) != 0
            if dy == 0 or dx == 0:
                ring4 |= f
    dark2 = False
    R, C = glyphs.shape
    for i in range(_RING16_DY.shape[0]):
        yy = min(max(y + _RING16_DY[i], 0), R - 1)
        xx = min(max(x + _RING16_DX[i], 0), C - 1)
        dark2 |= (kflags[glyphs[yy, xx]] & _B_DARK) != 0
    h_min = scan[0]
    in_room = (ring8 & _B_FLOOR) != 0
    a[0] = hp * np.float32(3) < hpmax
    a[1] = (hp * np.float32(6) < hpmax) or (hp <= np.float32(5))
    a[2] = hp >= hpmax
    a[3] = hunger == HUNGER_HUNGRY
    a[4] = hunger >= HUNGER_WEAK
    a[5] = hunger == HUNGER_SATIATED
    a[6] = (cond & _M_CONF) != 0
    a[7] = (cond & _M_STUN) != 0
    a[8] = (cond & _M_BLIND) != 0
    a[9] = (cond & _M_HALLU) != 0
    a[10] = (cond & _M_SICK) != 0
    a[11] = min(max(bl[_BL_CAP], 0), N_ENCUMBRANCE - 1) >= 1
    a[12] = h_min <= 1
    a[13] = h_min <= 3
    a[14] = h_min < _BIG
    a[15] = scan[3] >= 3
    a[16] = (ring8 & _K_FEYE) != 0
    a[17] = (ring8 & _B_PET) != 0
    a[18] = scan[7] != 0
    a[19] = down_vis
    a[20] = d_min == 0
    a[21] = scan[8] != 0
    a[22] = (ring4 & _B_DOOR) != 0
    a[23] = (ring4 & _B_CLOSED) != 0
    a[24] = ((ring8 & _B_CORRIDOR) != 0) and not in_room
    a[25] = in_room
    a[26] = in_room and dark2 and (cond & _M_BLIND) == 0
    a[27] = item
    a[28] = (ring8 & _B_ITEM) != 0
    a[29] = scan[9] != 0
    a[30] = (ring8 & _B_TRAP) != 0
    a[31] = (ring8 & _B_BOULDER) != 0
    a[32] = (ring8 & _B_WATER) != 0
    a[33] = n_walk <= 1
    a[34] = (ring4 & _B_STONE) != 0
    a[35] = more
    a[36] = question
    a[37] = depth >= 2
    a[38] = bl[_BL_XP] <= 2
    a[39] = bl[_BL_TIME] > 300


@numba.njit(cache=True, nogil=True)
def _fused_rows(
    glyphs, blstats, message, tty, has_tty, kflags, groups, cond_bits,
    use_mem, m_stairs, m_level, m_visited, m_locked, m_nvis,
    state, crop, atoms, maps, bfs, qy, qx, scan,
):  # fmt: skip  # pragma: no cover - jitted
    """Every feature of every row of the batch (see compute_features_reference for the meaning).

    Scratch space: ``maps`` [2, R, C] uint8, ``bfs`` [2, R, C] int32, ``qy, qx`` [R*C] int32,
    ``scan`` [10] int64."""
    B = glyphs.shape[0]
    C = crop.shape[1]
    r = C // 2
    R_, C_ = glyphs.shape[1], glyphs.shape[2]
    for b in range(B):
        g = glyphs[b]
        bl = blstats[b]
        x = min(max(bl[_BL_X], 0), C_ - 1)
        y = min(max(bl[_BL_Y], 0), R_ - 1)
        depth = bl[_BL_DEPTH]
        for i in range(C):  # the egocentric crop, padded outside the map
            for j in range(C):
                yy = y - r + i
                xx = x - r + j
                gl = g[yy, xx] if (0 <= yy < R_ and 0 <= xx < C_) else PAD_GLYPH
                crop[b, i, j] = groups[gl]
        if use_mem:
            _update_level_memory(
                g, kflags, message[b], y, x, depth, m_level, m_visited, m_locked, m_nvis, b
            )
        bm = b if use_mem else 0  # without memory: row 0 of a dummy, never read
        _scan_map(g, kflags, y, x, m_locked[bm], use_mem, maps[0], maps[1], scan)
        d_min, d_y, d_x = scan[4], scan[5], scan[6]
        down_vis = d_min < _BIG
        if use_mem:
            if down_vis:  # remember the last seen stairs of this depth
                m_stairs[b, 0], m_stairs[b, 1], m_stairs[b, 2] = depth, d_y, d_x
            elif m_stairs[b, 0] == depth:
                d_y, d_x = m_stairs[b, 1], m_stairs[b, 2]
                d_min = max(abs(d_y - y), abs(d_x - x))
                down_vis = True
        k, dist, stairs = _navigate(
            g, kflags, y, x, down_vis, d_y, d_x, m_visited[bm], use_mem, maps, bfs, qy, qx
        )
        hvis = scan[0] < _BIG
        _state_row(
            bl, state[b], y, x, down_vis, d_y, d_x, hvis, scan[1], scan[2], k, dist, stairs, cond_bits
        )  # fmt: skip
        more = has_tty and _contains(tty[b], 0, tty.shape[1], _PAT_MORE)
        item = _item_here_row(message[b])
        question = _question_row(message[b])
        _atoms_row(bl, atoms[b], g, kflags, y, x, scan, down_vis, d_min, item, question, more)
