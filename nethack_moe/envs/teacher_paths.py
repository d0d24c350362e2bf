"""The teacher's map work, jitted: the walk map, BFS over it, the first action of a path (step or
rush), marking cells seen, and scoring where a hidden passage is likely."""

from __future__ import annotations

import numba
import numpy as np

from nethack_moe.envs.teacher_tables import (
    FAIL_LIMIT,
    RUSH_MIN,
    RUSH_OVERSHOOT,
    SEARCH_OPENING,
    SEARCH_RAY,
    T_DEADLY,
    T_MON,
    T_PASSIVE,
    T_TARGET,
    T_TRAPDOOR,
)
from nethack_moe.features.glyphs import (
    _B_CLOSED,
    _B_CORRIDOR,
    _B_DOOR,
    _B_STONE,
    _K_WALK_SHIFT,
    _K_WALL,
)
from nethack_moe.game.actions import (
    MOVE_ACTIONS,
    RUSH_ACTIONS,
    SEARCH_ACTION,
)
from nethack_moe.game.navigation import BLOCKED, DIRS, DOOR, FREE, bfs_expand


@numba.njit(cache=True, nogil=True)
def _bfs_all(walk, y0, x0, dirs, dist, parent, qy, qx):  # pragma: no cover - jitted
    """Breadth-first distances from (y0, x0) over ``walk`` (no diagonal moves into or out of
    doors); returns the number of cells reached, listed in BFS order in ``qy, qx``."""
    R, C = walk.shape
    for y in range(R):
        for x in range(C):
            dist[y, x] = -1
    head = 0
    tail = 1
    qy[0] = y0
    qx[0] = x0
    dist[y0, x0] = 0
    parent[y0, x0] = -1
    while head < tail:
        y = qy[head]
        x = qx[head]
        head += 1
        tail = bfs_expand(walk, y, x, dirs, dist, parent, qy, qx, tail)
    return tail


@numba.njit(cache=True, nogil=True)
def _path_action(walk, glyphs, kflags, tflags, gy, gx, dirs, dist, parent, path, no_rush, corridor):
    # pragma: no cover - jitted
    """The action of the first move of the BFS path to (gy, gx): a rush move when the path
    starts with a straight stretch of ``RUSH_MIN`` or more cells (one that ends against a
    blocked cell, unless ``RUSH_OVERSHOOT`` and the path turns there); else a step."""
    R, C = walk.shape
    d = dist[gy, gx]
    if d <= 0:  # already there (not reached by the callers)
        return SEARCH_ACTION
    y, x = gy, gx
    for i in range(d - 1, -1, -1):  # path[i] = direction of move i
        k = parent[y, x]
        path[i] = k
        y -= dirs[k, 0]
        x -= dirs[k, 1]
    k0 = path[0]
    if no_rush:
        return MOVE_ACTIONS[k0]
    y1 = y + dirs[k0, 0]
    x1 = x + dirs[k0, 1]
    if tflags[glyphs[y1, x1]] & T_MON:  # a rush into a monster does nothing
        return MOVE_ACTIONS[k0]
    if corridor and (kflags[glyphs[y1, x1]] & _B_CORRIDOR):
        return RUSH_ACTIONS[k0]
    run = 1
    while run < d and path[run] == k0:
        run += 1
    if run >= RUSH_MIN:
        ey = y + dirs[k0, 0] * (run + 1)  # the cell after the straight stretch
        ex = x + dirs[k0, 1] * (run + 1)
        stops = ey < 0 or ey >= R or ex < 0 or ex >= C or walk[ey, ex] == BLOCKED
        if stops or (RUSH_OVERSHOOT and run < d):  # never run past the goal itself
            return RUSH_ACTIONS[k0]
    return MOVE_ACTIONS[k0]


@numba.njit(cache=True, nogil=True)
def _walk_map(g, kflags, tflags, mon_of, locked, failed, peaceful, y, x, walk, doors):
    # pragma: no cover - jitted
    """Fill ``walk`` with the walk classes the teacher moves by (locked doors, cells that
    refused moves and monsters not to hit are blocked; trap doors are free); returns whether
    the hero stands in a door (no diagonal moves), as ``doors`` remembers the doorway it stands
    in (a doorless one allows them), or else when it stands between two walls."""
    R, C = g.shape
    for yy in range(R):
        for xx in range(C):
            gl = g[yy, xx]
            f = kflags[gl]
            w = (f >> _K_WALK_SHIFT) & 3
            if f & _B_DOOR:
                doors[yy, xx] = 2 if w == DOOR else 1
            if (f & _B_CLOSED) and locked[yy, xx]:
                w = BLOCKED
            if failed[yy, xx] >= FAIL_LIMIT:
                w = BLOCKED
            tf = tflags[gl]
            if tf & T_TRAPDOOR:
                w = FREE
            if tf & T_TARGET:
                m = mon_of[gl]
                if (tf & (T_PASSIVE | T_DEADLY)) or (m >= 0 and peaceful[m]):
                    w = BLOCKED
            walk[yy, xx] = w
    # the hero hides the terrain it stands on: between two walls it stands in a doorway
    wl = kflags[g[y, x - 1]] if x > 0 else 0
    wr = kflags[g[y, x + 1]] if x + 1 < C else 0
    wu = kflags[g[y - 1, x]] if y > 0 else 0
    wd = kflags[g[y + 1, x]] if y + 1 < R else 0
    hero_door = (((wl & wr) | (wu & wd)) & _K_WALL) != 0
    if doors[y, x] > 0:
        hero_door = doors[y, x] == 2
    walk[y, x] = DOOR if hero_door else FREE
    return hero_door


@numba.njit(cache=True, nogil=True, inline="always")
def _near_unseen_stone(g, kflags, seen, y, x):  # pragma: no cover - jitted
    """Whether one of the 8 cells around (y, x) is blank map the hero has never been next to
    (unexplored, not known rock): (y, x) is a frontier."""
    R, C = g.shape
    for k in range(8):
        ny = y + DIRS[k, 0]
        nx = x + DIRS[k, 1]
        if 0 <= ny < R and 0 <= nx < C and (kflags[g[ny, nx]] & _B_STONE) and not seen[ny, nx]:
            return True
    return False


@numba.njit(cache=True, nogil=True, inline="always")
def _mark_seen(seen, y, x):  # pragma: no cover - jitted
    """Mark (y, x) and the 8 cells around it seen."""
    R, C = seen.shape
    for yy in range(max(y - 1, 0), min(y + 2, R)):
        for xx in range(max(x - 1, 0), min(x + 2, C)):
            seen[yy, xx] = True


@numba.njit(cache=True, nogil=True)
def _mark_walked(walk, seen, y, x, py, px, dist, parent, qy, qx):  # pragma: no cover - jitted
    """Mark seen the cells along the shortest walk from (py, px) to the hero at (y, x): the
    way a rush went along a corridor's bends."""
    _bfs_all(walk, y, x, DIRS, dist, parent, qy, qx)
    if dist[py, px] < 0:
        return
    while dist[py, px] > 0:
        _mark_seen(seen, py, px)
        k = parent[py, px]
        py -= DIRS[k, 0]
        px -= DIRS[k, 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _n_legal(walk, y, x):  # pragma: no cover - jitted
    """Number of the 8 cells around (y, x) one legal move away."""
    R, C = walk.shape
    here_door = walk[y, x] == DOOR
    n = 0
    for k in range(8):
        ny = y + DIRS[k, 0]
        nx = x + DIRS[k, 1]
        if 0 <= ny < R and 0 <= nx < C and walk[ny, nx] != BLOCKED:
            if k < 4 or not (here_door or walk[ny, nx] == DOOR):
                n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _search_score(g, kflags, walk, covered, limit, y, x):  # pragma: no cover - jitted
    """How likely a search at (y, x) finds a hidden passage (0: not worth it). Each of the 8
    cells around that was searched fewer than ``limit`` times adds: a wall, the share of
    blank (unexplored) map in the 6 cells behind it (a hidden door); a blank cell next to a dead
    end (one neighbour a legal move away at most) or a doorway, ``SEARCH_OPENING`` (a hidden
    corridor). Such an opening adds ``SEARCH_OPENING`` more."""
    R, C = walk.shape
    here_door = walk[y, x] == DOOR
    dead_end = _n_legal(walk, y, x) <= 1
    # a doorway or a dead end with blank map around it: a hidden corridor may start there
    opening = dead_end or (kflags[g[y, x]] & _B_DOOR) != 0 or here_door
    score = 0.0
    for k in range(8):
        ny = y + DIRS[k, 0]
        nx = x + DIRS[k, 1]
        if ny < 0 or ny >= R or nx < 0 or nx >= C or covered[ny, nx] >= limit:
            continue
        f = kflags[g[ny, nx]]
        if f & _K_WALL:
            blank = 0
            for s in range(1, SEARCH_RAY + 1):
                ty = ny + DIRS[k, 0] * s
                tx = nx + DIRS[k, 1] * s
                if 0 <= ty < R and 0 <= tx < C and (kflags[g[ty, tx]] & _B_STONE):
                    blank += 1
            score += blank / SEARCH_RAY
        elif opening and (f & _B_STONE):
            score += SEARCH_OPENING
    if opening and score > 0.0:
        score += SEARCH_OPENING
    return score


_SCRATCH: dict[str, np.ndarray] = {}
