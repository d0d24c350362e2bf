"""Where the teacher walks (rules 4-6 of :mod:`nethack_moe.envs.teacher`): the goal of each
walking branch, picked from the cells a BFS from the hero reached (``qy, qx``: BFS order,
``n`` of them; ``dist``: steps from the hero, -1 = unreachable)."""

from __future__ import annotations

import numba

from nethack_moe.envs.teacher_paths import _near_unseen_stone, _search_score
from nethack_moe.envs.teacher_tables import (
    GOAL_KEEP,
    KICK_LIMIT,
    SEARCH_DIST,
    SEARCH_LIMIT,
    SEARCH_MIN,
    SEARCH_ROUNDS,
    T_TRAPDOOR,
)
from nethack_moe.features.glyphs import _B_CLOSED, _B_ITEM
from nethack_moe.game.navigation import DIRS


@numba.njit(cache=True, nogil=True)
def _stairs_goal(g, tflags, known, sy, sx, dist, qy, qx, n):  # pragma: no cover - jitted
    """Rule 4: the nearer of the known stairs and a trap door or hole, ``(-1, -1)`` if none."""
    gy = -1
    gx = -1
    best = 1 << 30
    if known and dist[sy, sx] > 0:
        best = dist[sy, sx]
        gy, gx = sy, sx
    for i in range(1, n):
        yy, xx = qy[i], qx[i]
        if dist[yy, xx] >= best:
            break
        if tflags[g[yy, xx]] & T_TRAPDOOR:
            return yy, xx
    return gy, gx


@numba.njit(cache=True, nogil=True)
def _frontier_goal(g, kflags, seen, goal, branch, dist, qy, qx, n):  # pragma: no cover - jitted
    """Rule 5: the nearest frontier cell, ``(-1, -1)`` if none; the committed one (``goal``, a
    row of :attr:`TeacherMemory.goal` of ``branch``) while it is still a frontier and no other
    is ``GOAL_KEEP`` steps nearer."""
    for i in range(1, n):
        yy, xx = qy[i], qx[i]
        if _near_unseen_stone(g, kflags, seen, yy, xx):
            if (
                _committed(goal, branch, dist)
                and dist[goal[1], goal[2]] > 0
                and _near_unseen_stone(g, kflags, seen, goal[1], goal[2])
                and dist[goal[1], goal[2]] < dist[yy, xx] + GOAL_KEEP
            ):
                return goal[1], goal[2]
            return yy, xx
    return -1, -1


@numba.njit(cache=True, nogil=True)
def _item_goal(kflags, g, visited, qy, qx, n):  # pragma: no cover - jitted
    """Rule 5b: the nearest object the hero has not stood on, ``(-1, -1)`` if none."""
    for i in range(1, n):
        yy, xx = qy[i], qx[i]
        if (kflags[g[yy, xx]] & _B_ITEM) and not visited[yy, xx]:
            return yy, xx
    return -1, -1


@numba.njit(cache=True, nogil=True)
def _kick_goal(g, kflags, locked, kicks, qy, qx, n):  # pragma: no cover - jitted
    """Rule 6a: ``(gy, gx, k)``: the nearest cell next to a locked door still worth kicking
    (``gy = -1``: none), and the door's direction ``k`` when the hero stands there (else -1)."""
    R, C = g.shape
    for i in range(0, n):
        yy, xx = qy[i], qx[i]
        for k in range(4):
            dy = yy + DIRS[k, 0]
            dx = xx + DIRS[k, 1]
            if dy < 0 or dy >= R or dx < 0 or dx >= C:
                continue
            if (kflags[g[dy, dx]] & _B_CLOSED) and locked[dy, dx] and kicks[dy, dx] < KICK_LIMIT:
                return yy, xx, (k if i == 0 else -1)
    return -1, -1, -1


@numba.njit(cache=True, nogil=True)
def _search_goal(g, kflags, walk, searched, goal, branch, dist, qy, qx, n):
    # pragma: no cover - jitted
    """Rule 6b: the best spot to search for a hidden passage (its score less its distance),
    ``(-1, -1, 0)`` if none, with the search limit of the round it was found in; spots searched
    ``SEARCH_LIMIT`` times get more rounds only when no spot is left in the earlier ones. The
    committed spot (``goal`` of ``branch``) is kept until it is searched out."""
    if (
        _committed(goal, branch, dist)
        and _search_score(g, kflags, walk, searched, goal[3], goal[1], goal[2]) >= SEARCH_MIN
    ):
        return goal[1], goal[2], goal[3]
    gy = -1
    gx = -1
    limit = SEARCH_LIMIT
    while limit <= SEARCH_LIMIT * SEARCH_ROUNDS:  # more rounds if in vain
        best_score = -1.0e9
        for i in range(0, n):
            yy, xx = qy[i], qx[i]
            s = _search_score(g, kflags, walk, searched, limit, yy, xx)
            if s >= SEARCH_MIN:
                s -= SEARCH_DIST * dist[yy, xx]
                if s > best_score:
                    best_score = s
                    gy, gx = yy, xx
        if gy >= 0:
            return gy, gx, limit
        limit += SEARCH_LIMIT
    return -1, -1, 0


@numba.njit(cache=True, nogil=True)
def _committed(goal, branch, dist):  # pragma: no cover - jitted
    """Whether ``goal`` (a row of :attr:`TeacherMemory.goal`) is a goal of ``branch`` the hero
    can still walk to."""
    return goal[0] == branch and dist[goal[1], goal[2]] >= 0
