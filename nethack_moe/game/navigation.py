"""Navigation hint: the first step of a shortest walkable path to a goal, from the glyph map.

The goal is the known down staircase of the level when there is one (seen or remembered),
otherwise the nearest *frontier*: a walkable cell next to unexplored (blank) map. This is the
information a player reads off the map at a glance; the policy still has to learn to use it.

Walkability comes from NLE's glyph tables in :mod:`nethack_moe.features`. Moves obey NetHack's
rule that one cannot move diagonally into or out of a door. The breadth-first search is compiled
with numba (one search is a few microseconds on a 21 x 79 map).
"""

from __future__ import annotations

import numba
import numpy as np

# Order of the 8 compass moves = NetHackScore-v0 action ids 1..8 (N, E, S, W, NE, SE, SW, NW).
DIRS = np.array(
    [(-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)], dtype=np.int64
)
N_DIRS = 8
#: Cell classes of the walk map.
BLOCKED, FREE, DOOR = 0, 1, 2


@numba.njit(cache=True, nogil=True, inline="always")
def bfs_expand(walk, y, x, dirs, dist, parent, qy, qx, tail):  # pragma: no cover - jitted
    """Queue the unvisited walkable neighbours of (y, x) (no diagonal moves into or out of
    doors), with their distance and the move that reached them; returns the new queue tail.
    Inlined into every breadth-first search of the walk map (hint, frontier, teacher)."""
    R, C = walk.shape
    here_door = walk[y, x] == DOOR
    for k in range(8):
        ny = y + dirs[k, 0]
        nx = x + dirs[k, 1]
        if ny < 0 or ny >= R or nx < 0 or nx >= C:
            continue
        if dist[ny, nx] >= 0 or walk[ny, nx] == BLOCKED:
            continue
        if k >= 4 and (here_door or walk[ny, nx] == DOOR):
            continue  # no diagonal moves into or out of doors
        dist[ny, nx] = dist[y, x] + 1
        parent[ny, nx] = k
        qy[tail] = ny
        qx[tail] = nx
        tail += 1
    return tail


@numba.njit(cache=True, nogil=True)
def _bfs_first_step(walk, goal, y0, x0, dirs, qy, qx, parent, dist):  # pragma: no cover - jitted
    """BFS from (y0, x0); returns (first move index or -1, path length or -1)."""
    R, C = walk.shape
    for y in range(R):
        for x in range(C):
            dist[y, x] = -1
    head = 0
    tail = 0
    qy[tail] = y0
    qx[tail] = x0
    tail += 1
    dist[y0, x0] = 0
    parent[y0, x0] = -1
    while head < tail:
        y = qy[head]
        x = qx[head]
        head += 1
        if goal[y, x] and not (y == y0 and x == x0):
            # walk back to the move taken from the start
            d = dist[y, x]
            while dist[y, x] > 1:
                k = parent[y, x]
                y -= dirs[k, 0]
                x -= dirs[k, 1]
            return parent[y, x], d
        tail = bfs_expand(walk, y, x, dirs, dist, parent, qy, qx, tail)
    return -1, -1


@numba.njit(cache=True, nogil=True)
def _nav_batch(
    walk, frontier, down_vis, d_y, d_x, ys, xs, dirs, out_k, out_d, out_stairs
):  # pragma: no cover
    """For each row: first move toward the known down stairs, else toward the nearest frontier."""
    B, R, C = walk.shape
    qy = np.empty(R * C, np.int64)
    qx = np.empty(R * C, np.int64)
    parent = np.empty((R, C), np.int64)
    dist = np.empty((R, C), np.int64)
    goal = np.zeros((R, C), np.bool_)
    for b in range(B):
        k = -1
        d = -1
        stairs = False
        if down_vis[b]:
            goal[d_y[b], d_x[b]] = True
            keep = walk[b, d_y[b], d_x[b]]
            walk[b, d_y[b], d_x[b]] = FREE  # the stairs may lie under a monster or the hero
            k, d = _bfs_first_step(walk[b], goal, ys[b], xs[b], dirs, qy, qx, parent, dist)
            walk[b, d_y[b], d_x[b]] = keep
            goal[d_y[b], d_x[b]] = False
            stairs = k >= 0
        if k < 0:
            k, d = _bfs_first_step(walk[b], frontier[b], ys[b], xs[b], dirs, qy, qx, parent, dist)
        out_k[b] = k
        out_d[b] = d
        out_stairs[b] = stairs


def nav_batch(
    walk, frontier, down_vis, d_y, d_x, ys, xs
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched hint: (first move index or -1, path length, goal is the stairs) per row.

    ``walk`` [B, R, C] uint8 walk classes (modified in place temporarily), ``frontier`` [B, R, C]
    bool, ``down_vis`` [B] bool with stairs position ``d_y, d_x``, hero at ``ys, xs``.
    """
    B = walk.shape[0]
    k = np.empty(B, np.int64)
    d = np.empty(B, np.int64)
    st = np.empty(B, np.bool_)
    _nav_batch(
        walk, frontier, down_vis, d_y.astype(np.int64), d_x.astype(np.int64),
        ys.astype(np.int64), xs.astype(np.int64), DIRS, k, d, st,
    )  # fmt: skip
    return k, d, st


# ---------------------------------------------------------------------------------------------
# The BFS of the fused feature kernel (features._fused_rows): same search, same queue order as
# _bfs_first_step, but the frontier goal is tested lazily on the cells the search reaches instead
# of being built for the whole map first.
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _near_stone(stone, y, x):  # pragma: no cover - jitted
    """Whether one of the 8 map cells around (y, x) is blank (unexplored) map."""
    R, C = stone.shape
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if dy == 0 and dx == 0:
                continue
            ny = y + dy
            nx = x + dx
            if 0 <= ny < R and 0 <= nx < C and stone[ny, nx]:
                return True
    return False


@numba.njit(cache=True, nogil=True)
def bfs_step(
    walk, y0, x0, gy, gx, stone, visited, use_visited, qy, qx, parent, dist
):  # pragma: no cover - jitted
    """First move and path length from (y0, x0) to the goal; (-1, -1) when it is unreachable.

    The goal is the cell (gy, gx) when ``gy >= 0``, else the nearest *frontier* cell: a cell
    next to blank map (``stone`` [R, C]) that the hero has not stood on (``visited`` [R, C], used
    when ``use_visited``). ``walk`` [R, C] holds the walk classes; ``qy, qx`` [R*C] and
    ``parent, dist`` [R, C] are scratch space.
    """
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
        if not (y == y0 and x == x0):
            if gy >= 0:
                hit = y == gy and x == gx
            else:
                hit = _near_stone(stone, y, x) and not (use_visited and visited[y, x])
            if hit:
                d = dist[y, x]
                while dist[y, x] > 1:
                    k = parent[y, x]
                    y -= DIRS[k, 0]
                    x -= DIRS[k, 1]
                return parent[y, x], d
        tail = bfs_expand(walk, y, x, DIRS, dist, parent, qy, qx, tail)
    return -1, -1
