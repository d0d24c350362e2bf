"""The scripted teacher (issue 18): a stair-diver computed in the env workers, beside the hint.

Per env and step, from the same observation the features read (and the level memory they keep),
:func:`compute_teacher` writes the teacher's action (an id of NetHackScore-v0's 23 actions) and
the **branch** that chose it (an index into :data:`BRANCHES`). The first rule that applies wins:

1. ``prompt``: ``--More--`` and questions are answered with Enter (NetHack then takes the
   question's default answer, or cancels); ``eat``/``kick`` answer their own follow-up prompts;
2. ``fight``: attack an adjacent hostile monster. Peaceful monsters (those that made NetHack ask
   "Really attack?") and monsters with a passive or exploding attack (NetHack's own monster table,
   :func:`monster_attacks`) are walked around; a passive one is attacked only when nothing else
   is left to do, and one whose passive paralyses, stones or slimes never;
   ``rest``: below half its HP, with no monster to hit, the hero searches in place (heals);
3. ``descend``: ``>`` on the known down staircase, or where NetHack says one is under the
   objects the hero stepped on (the map shows the object, not the stairs);
4. ``to_stairs``: walk to the known down staircase, or a trap door or hole;
5. ``explore``: walk to the nearest frontier (a walkable cell next to blank map that the hero
   has never been next to, observed or rushing through: unexplored, not known rock); with no
   frontier left, to the nearest object the hero has not stood on (stairs may lie under it);
6. ``kick``: walk to a door found locked and kick it; ``search``: walk to where a hidden passage
   is likely (dead ends, room walls with unexplored map behind them) and search there;
   ``eat`` when hungry (before 4-6); ``stuck``: nothing applies (search in place).

Walk goals are kept: a frontier until it is explored or one is ``GOAL_KEEP`` steps nearer, a
search spot until it is searched out (re-planned every step, the goal flipped between two
cells as the hero moved, and the hero went back and forth for hundreds of steps). A hero back
on the cell it left the step before takes no rush moves for ``CALM_STEPS`` steps (a rush into a
corridor overshoots a goal one cell away, and the way back rushes past it again).

A move that leaves the hero in place counts against the cell moved into (3 = blocked), unless
a trap holds the hero (until it moves) or a stuck door resisted. A doorway the hero stands in
is the door it was last seen as (doorless ones allow diagonal moves).

Straight stretches of a path use the rush moves (``CompassDirectionLonger``) when the stretch
ends against something that stops the rush (a wall, rock or a boulder) or the path turns there,
and a path into a corridor always does (NetHack's rush follows the corridor's bends; the cells
it went through are marked seen along the shortest walk back), so one action covers many
squares. A hungry hero only steps: rushes cover more squares per action, so more turns, and the
food runs out (on seeds 100000-100079, without this rule 61 % of the games ended in death, 8 of
the 12 looked at fainting from hunger; with straight rushes still allowed when hungry 40 %; with
the rule 20 %). All state lives in :class:`TeacherMemory` (preallocated ``[N, ...]`` arrays, one row per
env, cleared at episode start); the kernel allocates nothing per step.

Pitfall: numba's on-disk cache of these kernels is keyed on this file only; after editing
``teacher_goals.py``, ``teacher_paths.py`` or ``teacher_tables.py`` alone, delete
``nethack_moe/envs/__pycache__/*.nb*`` (else the previous version runs).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.envs.teacher_goals import (
    _frontier_goal,
    _item_goal,
    _kick_goal,
    _search_goal,
    _stairs_goal,
)
from nethack_moe.envs.teacher_memory import TeacherMemory
from nethack_moe.envs.teacher_paths import (
    _SCRATCH,
    _bfs_all,
    _mark_seen,
    _mark_walked,
    _path_action,
    _walk_map,
)
from nethack_moe.envs.teacher_tables import (
    CALM_STEPS,
    EAT_LIMIT,
    MON_OF,
    RUSH_CORRIDOR,
    T_DEADLY,
    T_MON,
    T_PASSIVE,
    T_TARGET,
    TEACHER_FLAGS,
)
from nethack_moe.features.glyphs import (
    _K_WALK_SHIFT,
)
from nethack_moe.features.kernel import _contains
from nethack_moe.game.actions import (
    DOWN_ACTION,
    EAT_ACTION,
    KEY_ACTION,
    KICK_ACTION,
    MORE_ACTION,
    MOVE_ACTIONS,
    MOVE_DIR,
    SEARCH_ACTION,
)
from nethack_moe.game.navigation import DIRS, DOOR, FREE

#: Why the teacher acted, in rule order (``teacher_branch`` indexes this tuple; -1 = no teacher).
BRANCHES: tuple[str, ...] = (
    "prompt",
    "fight",
    "descend",
    "to_stairs",
    "explore",
    "search",
    "kick",
    "eat",
    "stuck",
    "rest",
)
BRANCH_INDEX: dict[str, int] = {n: i for i, n in enumerate(BRANCHES)}
(B_PROMPT, B_FIGHT, B_DESCEND, B_TO_STAIRS, B_EXPLORE, B_SEARCH, B_KICK, B_EAT, B_STUCK,
 B_REST) = range(len(BRANCHES))  # fmt: skip

_PAT = {
    k: np.frombuffer(v, dtype=np.uint8).copy()
    for k, v in {
        "direction": b"In what direction",
        "attack": b"Really attack",
        "eat": b"What do you want to eat?",
        "pit": b"pit",
        "trap": b"trap",
        "web": b"web",
        "stuck": b"stuck",
        "resists": b"door resists",
        "stairs_here": b"staircase down here",
    }.items()
}
_P_DIR, _P_ATTACK, _P_EAT = _PAT["direction"], _PAT["attack"], _PAT["eat"]
_P_PIT, _P_TRAP, _P_WEB, _P_STUCK = _PAT["pit"], _PAT["trap"], _PAT["web"], _PAT["stuck"]
_P_RESISTS = _PAT["resists"]  # a stuck door: it may open at the next try
_P_STAIRS_HERE = _PAT["stairs_here"]  # stairs under an object: the map shows the object
_A_MORE_IDX = F.ATOM_INDEX["more_prompt"]
_A_QUESTION_IDX = F.ATOM_INDEX["question_prompt"]
_BL_HUNGER = nh.NLE_BL_HUNGER
_HUNGRY = F.HUNGER_HUNGRY


@numba.njit(cache=True, nogil=True)
def _eat_letter(msg, key_action):  # pragma: no cover - jitted
    """Action typing the first inventory letter offered by "What do you want to eat? [..]" that
    some action types (ranges like ``f-h`` included); -1 if none."""
    n = msg.shape[0]
    i = 0
    while i < n and msg[i] != 91:  # '['
        i += 1
    i += 1
    prev = -1
    while i < n and msg[i] != 93 and msg[i] != 32 and msg[i] != 0:  # ']' ' '
        c = msg[i]
        if c == 45 and prev >= 0 and i + 1 < n:  # 'a-d'
            for cc in range(prev + 1, msg[i + 1] + 1):
                if key_action[cc] >= 0:
                    return key_action[cc]
            i += 2
            continue
        if key_action[c] >= 0:
            return key_action[c]
        prev = c
        i += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _remember(g, msg, tflags, y, x, depth, b, t_level, t_searched, t_failed, t_kicks, t_seen,
              t_pos, t_taken, t_kick_dir, t_stall, t_held, t_doors, t_goal, t_prev, t_calm):  # fmt: skip  # pragma: no cover - jitted
    """Update row ``b``'s memory: a new level clears its level part; the last action's effect
    (a move that left the hero in place, the cells a rush went through, a search) is recorded.
    Returns the action taken from the last observation (-1: none) and whether it moved the
    hero more than one cell other than on a straight line (a rush along a corridor's bends)."""
    R, C = g.shape
    L = msg.shape[0]
    dirs = DIRS
    if t_level[b] != depth:
        t_level[b] = depth
        t_searched[b] = 0
        t_failed[b] = 0
        t_kicks[b] = 0
        t_seen[b] = False
        t_doors[b] = 0
        t_pos[b, 0] = -1
        t_kick_dir[b] = -1
        t_goal[b, 0] = -1
        t_prev[b, 0] = -1
    taken = t_taken[b]
    t_taken[b] = -1  # consumed: the same observation twice changes nothing
    py, px = t_pos[b, 0], t_pos[b, 1]
    bent = False
    if taken >= 0 and py >= 0:
        moved = py != y or px != x
        t_stall[b] = 0 if moved else t_stall[b] + 1
        if t_calm[b] > 0:
            t_calm[b] -= 1
        if moved:
            t_held[b] = 0
            if t_prev[b, 0] == y and t_prev[b, 1] == x:  # back where it was: calm down
                t_calm[b] = CALM_STEPS
            t_prev[b, 0] = py
            t_prev[b, 1] = px
        k = MOVE_DIR[taken]
        if k >= 0 and moved:  # the cells a rush went through on a straight line
            steps = max(abs(y - py), abs(x - px))
            if y - py == steps * dirs[k, 0] and x - px == steps * dirs[k, 1]:
                for i in range(1, steps):
                    _mark_seen(t_seen[b], py + i * dirs[k, 0], px + i * dirs[k, 1])
            else:
                bent = steps > 1
        if k >= 0 and not moved:
            ty = py + dirs[k, 0]
            tx = px + dirs[k, 1]
            trapped = (
                _contains(msg, 0, L, _P_PIT) or _contains(msg, 0, L, _P_TRAP)
                or _contains(msg, 0, L, _P_WEB) or _contains(msg, 0, L, _P_STUCK)
                or _contains(msg, 0, L, _P_RESISTS)
            )  # fmt: skip
            if trapped:  # held by a trap until the hero moves again
                t_held[b] = 1
            if 0 <= ty < R and 0 <= tx < C and not trapped and t_held[b] == 0:
                if not (tflags[g[ty, tx]] & T_MON) and t_failed[b, ty, tx] < 1000:
                    t_failed[b, ty, tx] += 1
        if taken == SEARCH_ACTION:  # the search covered the 8 cells around
            for yy in range(max(y - 1, 0), min(y + 2, R)):
                for xx in range(max(x - 1, 0), min(x + 2, C)):
                    if t_searched[b, yy, xx] < 10000:
                        t_searched[b, yy, xx] += 1
    t_pos[b, 0] = y
    t_pos[b, 1] = x
    _mark_seen(t_seen[b], y, x)
    return taken, bent, py, px


@numba.njit(cache=True, nogil=True)
def _prompt(more, question, msg, g, mon_of, key_action, taken, y, x, b, t_kicks, t_peaceful,
            t_kick_dir, t_eats):  # fmt: skip  # pragma: no cover - jitted
    """Rule 1: the answer to ``--More--`` or a question, as ``(action, branch)``; ``(-1, -1)``
    when there is none (then a kick's pending direction is dropped)."""
    R, C = g.shape
    L = msg.shape[0]
    if more:
        return MORE_ACTION, B_PROMPT
    if not question:
        t_kick_dir[b] = -1
        return -1, -1
    kd = t_kick_dir[b]
    t_kick_dir[b] = -1
    if kd >= 0 and _contains(msg, 0, L, _P_DIR):
        if kd >= 8:  # a kick at a monster we cannot hit diagonally
            return MOVE_ACTIONS[kd - 8], B_FIGHT
        ty = y + DIRS[kd, 0]
        tx = x + DIRS[kd, 1]
        if t_kicks[b, ty, tx] < 1000:
            t_kicks[b, ty, tx] += 1
        return MOVE_ACTIONS[kd], B_KICK
    if _contains(msg, 0, L, _P_EAT):
        a = _eat_letter(msg, key_action)
        if a >= 0:
            return a, B_EAT
        t_eats[b] = EAT_LIMIT  # nothing to eat that a key can name: stop trying
    if _contains(msg, 0, L, _P_ATTACK) and taken >= 0 and MOVE_DIR[taken] >= 0:
        k = MOVE_DIR[taken]
        ty = y + DIRS[k, 0]
        tx = x + DIRS[k, 1]
        if 0 <= ty < R and 0 <= tx < C and mon_of[g[ty, tx]] >= 0:
            t_peaceful[b, mon_of[g[ty, tx]]] = True
    return MORE_ACTION, B_PROMPT  # Enter: the question's default answer (or cancel)


@numba.njit(cache=True, nogil=True)
def _fight(g, kflags, tflags, mon_of, peaceful, hero_door, y, x):  # pragma: no cover - jitted
    """Rule 2: directions ``(fight, wait, passive)`` (-1: none) of an adjacent hostile to hit,
    one to kick (diagonal through a doorway), and a passive one (hit only when cornered)."""
    R, C = g.shape
    fight = -1
    wait = -1
    passive = -1
    for k in range(8):
        ny = y + DIRS[k, 0]
        nx = x + DIRS[k, 1]
        if ny < 0 or ny >= R or nx < 0 or nx >= C:
            continue
        gl = g[ny, nx]
        tf = tflags[gl]
        if not (tf & T_TARGET):
            continue
        m = mon_of[gl]
        if m >= 0 and peaceful[m]:
            continue
        if k >= 4 and (hero_door or ((kflags[gl] >> _K_WALK_SHIFT) & 3) == DOOR):
            if wait < 0 and not (tf & T_DEADLY):
                wait = k  # no diagonal attack out of or into a doorway: kick it instead
            continue
        if tf & T_DEADLY:
            continue
        if tf & T_PASSIVE:
            if passive < 0:
                passive = k
            continue
        fight = k
        break
    return fight, wait, passive


@numba.njit(cache=True, nogil=True)
def _act(g, bl, msg, kflags, tflags, mon_of, stairs, visited, locked, hero_door, y, x, depth, b, t_searched,
         t_kicks, t_seen, t_peaceful, t_kick_dir, t_stall, t_eats, t_goal, t_calm, walk, dist,
         parent, qy, qx, path):  # fmt: skip  # pragma: no cover - jitted
    """Rules 2-6 (no prompt on screen) for row ``b``, as ``(action, branch)``."""
    fight, wait, passive = _fight(g, kflags, tflags, mon_of, t_peaceful[b], hero_door, y, x)
    if fight >= 0:
        return MOVE_ACTIONS[fight], B_FIGHT
    if wait >= 0:
        t_kick_dir[b] = wait + 8
        return KICK_ACTION, B_FIGHT
    if 2 * bl[nh.NLE_BL_HP] < bl[nh.NLE_BL_HPMAX] and passive < 0:  # rest: search in place
        return SEARCH_ACTION, B_REST
    known = stairs[0] == depth
    sy, sx = stairs[1], stairs[2]
    if (known and sy == y and sx == x) or _contains(msg, 0, msg.shape[0], _P_STAIRS_HERE):
        return DOWN_ACTION, B_DESCEND
    if bl[_BL_HUNGER] >= _HUNGRY and t_eats[b] < EAT_LIMIT:
        t_eats[b] += 1
        return EAT_ACTION, B_EAT
    # ---- 4.-6. walk somewhere ----
    if known:
        walk[sy, sx] = FREE  # the stairs may lie under a monster
    n = _bfs_all(walk, y, x, DIRS, dist, parent, qy, qx)
    branch = B_TO_STAIRS
    gy, gx = _stairs_goal(g, tflags, known, sy, sx, dist, qy, qx, n)
    if gy < 0:
        branch = B_EXPLORE
        gy, gx = _frontier_goal(g, kflags, t_seen[b], t_goal[b], B_EXPLORE, dist, qy, qx, n)
    if gy < 0:  # stairs may lie under an object: step on the ones not stepped on yet
        gy, gx = _item_goal(kflags, g, visited, qy, qx, n)
    if gy < 0:
        branch = B_KICK
        gy, gx, kd = _kick_goal(g, kflags, locked, t_kicks[b], qy, qx, n)
        if kd >= 0:  # next to it: kick
            t_kick_dir[b] = kd
            return KICK_ACTION, B_KICK
    limit = 0
    if gy < 0:
        branch = B_SEARCH
        gy, gx, limit = _search_goal(g, kflags, walk, t_searched[b], t_goal[b], B_SEARCH, dist,
                                     qy, qx, n)  # fmt: skip
    t_goal[b, 0] = branch if gy >= 0 else -1
    t_goal[b, 1] = gy
    t_goal[b, 2] = gx
    t_goal[b, 3] = limit
    if branch == B_SEARCH and gy == y and gx == x:
        return SEARCH_ACTION, B_SEARCH
    if gy >= 0:
        # hungry: save turns (food); calm: the hero came back where it was a step before
        no_rush = t_stall[b] > 0 or t_calm[b] > 0 or bl[_BL_HUNGER] >= _HUNGRY
        corridor = RUSH_CORRIDOR
        a = _path_action(walk, g, kflags, tflags, gy, gx, DIRS, dist, parent, path, no_rush,
                         corridor)  # fmt: skip
        return a, branch
    if passive >= 0:  # cornered by a passive monster: hit it after all
        return MOVE_ACTIONS[passive], B_FIGHT
    return SEARCH_ACTION, B_STUCK


@numba.njit(cache=True, nogil=True)
def _teacher_rows(
    glyphs, blstats, message, atoms, kflags, tflags, mon_of, key_action,
    f_stairs, f_visited, f_locked,
    t_level, t_searched, t_failed, t_kicks, t_seen, t_peaceful, t_pos, t_taken, t_kick_dir, t_stall, t_eats,
    t_held, t_doors, t_goal, t_prev, t_calm, out_action, out_branch, walk, dist, parent, qy, qx, path,
):  # fmt: skip  # pragma: no cover - jitted
    """The teacher's action and branch for every row (see the module docstring).

    Scratch: ``walk`` [R, C] uint8, ``dist``/``parent`` [R, C] int32, ``qy, qx`` [R*C] int32,
    ``path`` [R*C] int64."""
    B, R, C = glyphs.shape
    for b in range(B):
        g = glyphs[b]
        bl = blstats[b]
        msg = message[b]
        x = min(max(bl[nh.NLE_BL_X], 0), C - 1)
        y = min(max(bl[nh.NLE_BL_Y], 0), R - 1)
        depth = bl[nh.NLE_BL_DEPTH]
        taken, bent, py, px = _remember(g, msg, tflags, y, x, depth, b, t_level, t_searched, t_failed, t_kicks,
                          t_seen, t_pos, t_taken, t_kick_dir, t_stall, t_held, t_doors, t_goal, t_prev,
                          t_calm)  # fmt: skip
        a, br = _prompt(atoms[b, _A_MORE_IDX], atoms[b, _A_QUESTION_IDX], msg, g, mon_of,
                        key_action, taken, y, x, b, t_kicks, t_peaceful, t_kick_dir, t_eats)  # fmt: skip
        if a < 0:
            hero_door = _walk_map(g, kflags, tflags, mon_of, f_locked[b], t_failed[b],
                                  t_peaceful[b], y, x, walk, t_doors[b])  # fmt: skip
            if bent:
                _mark_walked(walk, t_seen[b], y, x, py, px, dist, parent, qy, qx)
            a, br = _act(g, bl, msg, kflags, tflags, mon_of, f_stairs[b], f_visited[b], f_locked[b], hero_door,
                         y, x, depth, b, t_searched, t_kicks, t_seen, t_peaceful, t_kick_dir,
                         t_stall, t_eats, t_goal, t_calm, walk, dist, parent, qy, qx, path)  # fmt: skip
        out_action[b] = a
        out_branch[b] = br


def _scratch() -> tuple[np.ndarray, ...]:
    """Scratch arrays of the kernel, allocated once per process."""
    if not _SCRATCH:
        R, C = F.ROWS, F.COLS
        _SCRATCH["walk"] = np.zeros((R, C), np.uint8)
        _SCRATCH["dist"] = np.zeros((R, C), np.int32)
        _SCRATCH["parent"] = np.zeros((R, C), np.int32)
        _SCRATCH["qy"] = np.zeros(R * C, np.int32)
        _SCRATCH["qx"] = np.zeros(R * C, np.int32)
        _SCRATCH["path"] = np.zeros(R * C, np.int64)
    return tuple(_SCRATCH[k] for k in ("walk", "dist", "parent", "qy", "qx", "path"))


def compute_teacher(
    glyphs: np.ndarray,
    blstats: np.ndarray,
    message: np.ndarray,
    atoms: np.ndarray,
    level: F.Memory,
    memory: TeacherMemory,
    out_action: np.ndarray | None = None,
    out_branch: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's ``(action, branch)`` ``[B]`` int64 for a batch of observations.

    Args:
        glyphs, blstats, message: ``[B, 21, 79]``, ``[B, 27]``, ``[B, 256]`` as NLE gives them.
        atoms: ``[B, N_ATOMS]`` bool, the features of the same observations.
        level: the features' level memory of these rows, already updated with these
            observations (:func:`nethack_moe.features.compute_features` ran first).
        memory: the teacher's memory of these rows (updated in place); set ``memory.taken`` to
            the action taken from the previous observation before the call.
        out_action, out_branch: optional preallocated ``[B]`` int64 outputs.
    """
    B = glyphs.shape[0]
    action = out_action if out_action is not None else np.empty(B, np.int64)
    branch = out_branch if out_branch is not None else np.empty(B, np.int64)
    if B == 0:
        return action, branch
    g = np.ascontiguousarray(glyphs, dtype=np.int16)
    bl = np.ascontiguousarray(blstats, dtype=np.int64)
    msg = np.ascontiguousarray(message).view(np.uint8).reshape(B, -1)
    m = memory
    kernel: Any = _teacher_rows
    kernel(
        g, bl, msg, atoms, F.KERNEL_FLAGS, TEACHER_FLAGS, MON_OF, KEY_ACTION,
        level.stairs, level.visited, level.locked,
        m.level, m.searched, m.failed, m.kicks, m.seen, m.peaceful, m.pos, m.taken, m.kick_dir, m.stall,
        m.eats, m.held, m.doors, m.goal, m.prev, m.calm, action, branch, *_scratch(),
    )  # fmt: skip
    return action, branch


def branch_names(branch: np.ndarray) -> list[str]:
    """Names of branch indices (``none`` for -1)."""
    return [BRANCHES[int(i)] if i >= 0 else "none" for i in branch]
