"""Pure, batched features from NLE observations.

Three views of one observation:

* ``state``: a normalized float vector built from ``blstats`` (and a few map summaries);
* ``crop``: an egocentric ``C x C`` crop of *glyph groups* around the hero, padded at map edges;
* ``atoms``: a boolean vector of named scene predicates (:data:`ATOMS`).

Everything is computed with lookup tables built once from NLE's own glyph helpers
(``nle.nethack.glyph_is_monster``, ``glyph_is_pet``, ``glyph_to_cmap`` ...), never from hand-written
glyph id ranges. All functions take batches (leading dimension ``B``) and write into preallocated
output arrays when given them, so the vector env can fill shared memory without allocating.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from nle import nethack as nh

from nethack_moe.game.navigation import BLOCKED, DOOR, FREE, bfs_step, nav_batch

# --------------------------------------------------------------------------------------------
# Glyph lookup tables (built once from NLE's helpers)
# --------------------------------------------------------------------------------------------

N_GLYPHS = int(nh.MAX_GLYPH) + 1  # glyph ids 0..MAX_GLYPH (MAX_GLYPH is "nothing")
_ALL = np.arange(N_GLYPHS, dtype=np.int32)


def _cmap_index(name_pred) -> np.ndarray:
    """Cmap indices whose NLE explanation satisfies ``name_pred``."""
    idx = [i for i in range(nh.MAXPCHARS) if name_pred(nh.symdef.from_idx(i).explanation)]
    return np.asarray(idx, dtype=np.int32)


IS_MONSTER = np.asarray(nh.glyph_is_monster(_ALL), dtype=bool)
IS_PET = np.asarray(nh.glyph_is_pet(_ALL), dtype=bool)
IS_OBJECT = np.asarray(nh.glyph_is_object(_ALL), dtype=bool)
IS_TRAP = np.asarray(nh.glyph_is_trap(_ALL), dtype=bool)
IS_CMAP = np.asarray(nh.glyph_is_cmap(_ALL), dtype=bool)
IS_INVISIBLE = np.asarray(nh.glyph_is_invisible(_ALL), dtype=bool)
IS_WARNING = np.asarray(nh.glyph_is_warning(_ALL), dtype=bool)
IS_SWALLOW = np.asarray(nh.glyph_is_swallow(_ALL), dtype=bool)
#: Hostile as far as NLE tells: a monster glyph that is not a pet (glyphs do not mark peacefuls).
IS_HOSTILE = (IS_MONSTER & ~IS_PET) | IS_INVISIBLE | IS_WARNING

CMAP_OF = np.full(N_GLYPHS, -1, dtype=np.int32)
CMAP_OF[IS_CMAP] = np.asarray(nh.glyph_to_cmap(_ALL[IS_CMAP]), dtype=np.int32)

_DOWNSTAIRS = _cmap_index(lambda e: e in ("staircase down", "ladder down"))
_UPSTAIRS = _cmap_index(lambda e: e in ("staircase up", "ladder up"))
_DOORS = _cmap_index(lambda e: e in ("doorway", "open door", "closed door"))
_CLOSED_DOORS = _cmap_index(lambda e: e == "closed door")
_CORRIDOR = _cmap_index(lambda e: e in ("corridor", "lit corridor"))
_FLOOR = _cmap_index(lambda e: e == "floor of a room")
#: NetHack's S_stone (cmap index 0: solid rock, drawn blank) shares its explanation with S_darkroom.
S_STONE = 0
_DARK = _cmap_index(lambda e: e == "dark part of a room")
_DARK = _DARK[_DARK != S_STONE]
_WATER = _cmap_index(lambda e: e in ("water", "molten lava"))
_FOUNTAIN = _cmap_index(lambda e: e in ("fountain", "sink", "altar"))
_WALL = _cmap_index(lambda e: e == "wall")


def _glyph_mask(cmaps: np.ndarray) -> np.ndarray:
    return np.isin(CMAP_OF, cmaps) & IS_CMAP


IS_DOWNSTAIRS = _glyph_mask(_DOWNSTAIRS)
IS_UPSTAIRS = _glyph_mask(_UPSTAIRS)
IS_DOOR = _glyph_mask(_DOORS)
IS_CLOSED_DOOR = _glyph_mask(_CLOSED_DOORS)
IS_CORRIDOR = _glyph_mask(_CORRIDOR)
IS_FLOOR = _glyph_mask(_FLOOR)
IS_DARK_FLOOR = _glyph_mask(_DARK)
IS_WATER = _glyph_mask(_WATER)
IS_FEATURE = _glyph_mask(_FOUNTAIN)
IS_WALL = _glyph_mask(_WALL)
#: "Solid rock / unexplored" as NLE draws it: the cmap stone glyph (S_stone, index 0).
IS_STONE = IS_CMAP & (CMAP_OF == S_STONE)
IS_FOOD = np.zeros(N_GLYPHS, dtype=bool)
IS_BOULDER = np.zeros(N_GLYPHS, dtype=bool)
_obj_glyphs = _ALL[IS_OBJECT & ~np.asarray(nh.glyph_is_statue(_ALL), dtype=bool)]
for _g in _obj_glyphs:
    _o = nh.objclass(nh.glyph_to_obj(int(_g)))
    if ord(_o.oc_class) == nh.FOOD_CLASS:
        IS_FOOD[_g] = True
    if nh.OBJ_NAME(_o) == "boulder":
        IS_BOULDER[_g] = True
IS_CORPSE = np.asarray(nh.glyph_is_body(_ALL), dtype=bool)
IS_FOOD |= IS_CORPSE
IS_ITEM = IS_OBJECT & ~IS_BOULDER

IS_FLOATING_EYE = np.zeros(N_GLYPHS, dtype=bool)
for _g in _ALL[IS_MONSTER]:
    if nh.permonst(nh.glyph_to_mon(int(_g))).mname == "floating eye":
        IS_FLOATING_EYE[_g] = True


def _build_groups() -> tuple[np.ndarray, int]:
    """Map every glyph to a small *group* id: cmap feature, monster class, object class, ..."""
    group = np.zeros(N_GLYPHS, dtype=np.int16)
    nxt = 1  # 0 = padding outside the map
    # every cmap symbol is its own group (walls, doors, stairs, traps ... keep their meaning)
    for i in range(nh.MAXPCHARS):
        group[IS_CMAP & (CMAP_OF == i)] = nxt
        nxt += 1
    # monsters by class letter, pets separately
    mon_classes: dict[int, int] = {}
    for g in _ALL[IS_MONSTER]:
        pm = nh.permonst(nh.glyph_to_mon(int(g)))
        cls = int(ord(pm.mlet)) if isinstance(pm.mlet, str) else int(pm.mlet)
        if cls not in mon_classes:
            mon_classes[cls] = nxt
            nxt += 1
        group[g] = mon_classes[cls]
    pet_group = nxt
    nxt += 1
    group[IS_PET] = pet_group
    floating_eye_group = nxt
    nxt += 1
    group[IS_FLOATING_EYE] = floating_eye_group
    # objects by object class
    obj_classes: dict[int, int] = {}
    for g in _ALL[IS_OBJECT]:
        if IS_CORPSE[g]:
            continue
        cls = int(ord(nh.objclass(nh.glyph_to_obj(int(g))).oc_class))
        if cls not in obj_classes:
            obj_classes[cls] = nxt
            nxt += 1
        group[g] = obj_classes[cls]
    group[IS_CORPSE] = nxt
    nxt += 1
    group[IS_BOULDER] = nxt
    nxt += 1
    other = nxt  # invisible, warnings, swallow, zaps, explosions ...
    nxt += 1
    group[(group == 0)] = other
    return group, nxt


GLYPH_GROUP, N_GLYPH_GROUPS = _build_groups()
PAD_GROUP = 0
#: MAX_GLYPH ("nothing", never drawn on the map) is the padding glyph: it must map to PAD_GROUP.
GLYPH_GROUP[int(nh.MAX_GLYPH)] = PAD_GROUP

# --------------------------------------------------------------------------------------------
# Scene atoms
# --------------------------------------------------------------------------------------------

#: (name, one-line meaning). The order is the order of the atom vector.
ATOM_SPECS: tuple[tuple[str, str], ...] = (
    ("hp_low", "HP below 1/3 of max HP"),
    ("hp_critical", "HP below 1/6 of max HP (or at most 5)"),
    ("hp_full", "HP at max HP"),
    ("hungry", "hunger state is Hungry"),
    ("weak", "hunger state is Weak or Fainting (or worse)"),
    ("satiated", "hunger state is Satiated"),
    ("confused", "the Conf status condition is set"),
    ("stunned", "the Stun status condition is set"),
    ("blind", "the Blind status condition is set"),
    ("hallucinating", "the Hallu status condition is set"),
    ("sick", "FoodPois or TermIll status condition is set"),
    ("encumbered", "carrying capacity is Burdened or worse"),
    ("hostile_adjacent", "a non-pet monster (or invisible/warning marker) in the 8 cells around"),
    ("hostile_near", "a non-pet monster within Chebyshev distance 3"),
    ("hostile_visible", "a non-pet monster anywhere on the map"),
    ("many_hostiles", "three or more non-pet monsters on the map"),
    ("floating_eye_adjacent", "a floating eye in the 8 cells around (never melee it)"),
    ("pet_adjacent", "the pet is in the 8 cells around"),
    ("pet_visible", "the pet is on the map"),
    (
        "downstairs_visible",
        "a down staircase or ladder is on the map (or remembered on this level)",
    ),
    ("on_downstairs", "standing on a down staircase or ladder (remembered under the hero)"),
    ("upstairs_visible", "an up staircase or ladder is on the map"),
    ("door_adjacent", "a doorway, open or closed door in the 4 orthogonal cells"),
    ("closed_door_adjacent", "a closed door in the 4 orthogonal cells"),
    ("in_corridor", "the hero stands in a corridor"),
    ("in_room", "the hero stands on a room floor or doorway"),
    ("dark_room", "the hero is in an unlit room (dark floor 2 cells away; not blind)"),
    ("item_here", "an object lies under the hero (from the last message or remembered glyph)"),
    ("item_adjacent", "an object (not a boulder) in the 8 cells around"),
    ("food_visible", "a food item or corpse on the map"),
    ("trap_adjacent", "a known trap in the 8 cells around"),
    ("boulder_adjacent", "a boulder in the 8 cells around"),
    ("water_adjacent", "water or lava in the 8 cells around"),
    ("dead_end", "at most one walkable cell among the 8 around"),
    ("unexplored_adjacent", "blank (unexplored/solid) cells in the 4 orthogonal cells"),
    ("more_prompt", "a --More-- is shown on the screen"),
    ("question_prompt", "the game asks a question (direction, menu or y/n)"),
    ("deeper_than_1", "dungeon depth is 2 or more"),
    ("low_xp", "experience level is 1 or 2"),
    ("prayer_ready", "more than 300 turns have passed (first prayer is usually safe)"),
)
ATOMS: tuple[str, ...] = tuple(n for n, _ in ATOM_SPECS)
ATOM_INDEX: dict[str, int] = {n: i for i, n in enumerate(ATOMS)}
N_ATOMS = len(ATOMS)

# blstats hunger codes (NetHack u.uhs): 0 not hungry, 1 satiated? -> NetHack: 0 SATIATED? see below
# NetHack hunger states: NOT_HUNGRY=0? In NetHack 3.6: SATIATED=0, NOT_HUNGRY=1, HUNGRY=2, WEAK=3,
# FAINTING=4, FAINTED=5, STARVED=6.
HUNGER_SATIATED, HUNGER_NOT_HUNGRY, HUNGER_HUNGRY, HUNGER_WEAK = 0, 1, 2, 3
N_HUNGER = 7
N_ENCUMBRANCE = 6
_CONDITION_BITS = (
    nh.BL_MASK_STONE,
    nh.BL_MASK_SLIME,
    nh.BL_MASK_STRNGL,
    nh.BL_MASK_FOODPOIS,
    nh.BL_MASK_TERMILL,
    nh.BL_MASK_BLIND,
    nh.BL_MASK_DEAF,
    nh.BL_MASK_STUN,
    nh.BL_MASK_CONF,
    nh.BL_MASK_HALLU,
    nh.BL_MASK_LEV,
    nh.BL_MASK_FLY,
    nh.BL_MASK_RIDE,
)

# --------------------------------------------------------------------------------------------
# State vector layout
# --------------------------------------------------------------------------------------------
_STATE_SCALARS = (
    "hp_ratio",
    "hp_log",
    "energy_ratio",
    "depth",
    "xl",
    "ac",
    "gold_log",
    "str",
    "dex",
    "con",
    "time_log",
    "score_log",
    "x",
    "y",
    "down_dx",
    "down_dy",
    "down_visible",
    "near_hostile_dx",
    "near_hostile_dy",
    "nav_has_goal",
    "nav_goal_is_stairs",
    "nav_dist",
)
N_NAV = 9  # one-hot hint: the 8 moves (navigation.DIRS order), then "descend here"
NAV_DIST = _STATE_SCALARS.index("nav_dist")
NAV_STAIRS = _STATE_SCALARS.index("nav_goal_is_stairs")
_COND_ARRAY = np.asarray(_CONDITION_BITS, dtype=np.int64)
_NAV_SCALARS = np.array(
    [_STATE_SCALARS.index(n) for n in ("nav_has_goal", "nav_goal_is_stairs", "nav_dist")],
    dtype=np.int64,
)
STATE_NAMES: tuple[str, ...] = (
    _STATE_SCALARS
    + tuple(f"hunger_{i}" for i in range(N_HUNGER))
    + tuple(f"enc_{i}" for i in range(N_ENCUMBRANCE))
    + tuple(f"cond_{i}" for i in range(len(_CONDITION_BITS)))
    + tuple(f"nav_{i}" for i in range(N_NAV))
)
STATE_DIM = len(STATE_NAMES)
NAV_ONEHOT = STATE_NAMES.index("nav_0")
#: Columns of the state vector that carry the navigation hint (every ``nav_*`` feature).
HINT_STATE_COLUMNS: tuple[int, ...] = tuple(
    i for i, n in enumerate(STATE_NAMES) if n.startswith("nav_")
)

ROWS, COLS = int(nh.DUNGEON_SHAPE[0]), int(nh.DUNGEON_SHAPE[1])
_MORE = np.frombuffer(b"--More--", dtype=np.uint8)
_LOCKED = np.frombuffer(b"This door is locked", dtype=np.uint8)


@dataclass(frozen=True)
class FeatureSpec:
    """Shapes of the features, shared by the env layer and the model."""

    crop_size: int = 9
    """Side of the egocentric glyph-group crop (odd)."""

    @property
    def state_dim(self) -> int:
        return STATE_DIM

    @property
    def n_atoms(self) -> int:
        return N_ATOMS

    @property
    def n_glyph_groups(self) -> int:
        return int(N_GLYPH_GROUPS)

    @property
    def atom_names(self) -> tuple[str, ...]:
        return ATOMS


_RING8 = np.array([0, 1, 2, 3, 5, 6, 7, 8])  # indices into the flattened 3x3 block around the hero
_RING4 = np.array([1, 3, 5, 7])
#: (dy, dx) of the 16 cells at Chebyshev distance 2 (the 8 around the hero are always seen lit)
_RING16 = np.array(
    [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2]
)
_WALKABLE = IS_FLOOR | IS_DARK_FLOOR | IS_CORRIDOR | IS_DOOR | IS_DOWNSTAIRS | IS_UPSTAIRS | IS_ITEM
_WALKABLE |= IS_MONSTER | IS_FEATURE | IS_TRAP
_IS_OPEN_OR_CLOSED_DOOR = _glyph_mask(_cmap_index(lambda e: e in ("open door", "closed door")))
#: Walk classes for the navigation hint: 0 blocked, 1 free, 2 door (no diagonal moves). Known
#: traps and boulders block; monsters do not (one fights or swaps with them).
WALK_CLASS = np.zeros(N_GLYPHS, dtype=np.uint8)
WALK_CLASS[_WALKABLE & ~IS_TRAP & ~IS_BOULDER] = 1
WALK_CLASS[_IS_OPEN_OR_CLOSED_DOOR] = 2

# one flag word per glyph, so one lookup answers every per-cell question
_FLAG_TABLES = (
    ("hostile", IS_HOSTILE),
    ("pet", IS_PET),
    ("down", IS_DOWNSTAIRS),
    ("up", IS_UPSTAIRS),
    ("food", IS_FOOD),
    ("door", IS_DOOR),
    ("closed_door", IS_CLOSED_DOOR),
    ("corridor", IS_CORRIDOR),
    ("floor", IS_FLOOR | IS_DARK_FLOOR),
    ("dark", IS_DARK_FLOOR),
    ("item", IS_ITEM),
    ("trap", IS_TRAP),
    ("boulder", IS_BOULDER),
    ("water", IS_WATER),
    ("walkable", _WALKABLE),
    ("stone", IS_STONE),
)
_BIT = {name: np.uint32(1 << k) for k, (name, _) in enumerate(_FLAG_TABLES)}
GLYPH_FLAGS = np.zeros(N_GLYPHS, dtype=np.uint32)
for _name, _tab in _FLAG_TABLES:
    GLYPH_FLAGS[_tab] |= _BIT[_name]
#: Glyph used for cells outside the map (matches no table).
PAD_GLYPH = int(nh.MAX_GLYPH)
_BIG = 10_000


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


@dataclass
class Memory:
    """Per-env memory of the current level, updated in place by :func:`compute_features`.

    The hero's glyph hides what it stands on, so "standing on the stairs" needs the remembered
    stairs position; and rock and unexplored map look the same, so the navigation hint needs to
    know where the hero has already been. Clear a row with :meth:`clear` when its env starts a
    new episode; the level part clears itself when the depth changes.
    """

    stairs: np.ndarray
    """``[B, 3]`` int64: depth, y, x of the last seen down staircase (-1 = none)."""
    level: np.ndarray
    """``[B]`` int64: depth the ``visited`` map belongs to (-1 = none)."""
    visited: np.ndarray
    """``[B, 21, 79]`` bool: cells the hero has stood on, on this level."""
    locked: np.ndarray
    """``[B, 21, 79]`` bool: doors found locked on this level (the hint routes around them)."""
    n_visited: np.ndarray
    """``[B]`` int64: number of cells in ``visited`` (kept as a count, not summed every step)."""

    def rows(self, sl) -> Memory:
        """View (slice) or copy (index array) of some rows."""
        return Memory(
            self.stairs[sl], self.level[sl], self.visited[sl], self.locked[sl], self.n_visited[sl]
        )

    def clear(self, i) -> None:
        self.stairs[i] = -1
        self.level[i] = -1
        self.visited[i] = False
        self.locked[i] = False
        self.n_visited[i] = 0


def new_memory(batch: int) -> Memory:
    """Fresh (empty) memory for ``batch`` envs."""
    return Memory(
        np.full((batch, 3), -1, dtype=np.int64),
        np.full(batch, -1, dtype=np.int64),
        np.zeros((batch, ROWS, COLS), dtype=bool),
        np.zeros((batch, ROWS, COLS), dtype=bool),
        np.zeros(batch, dtype=np.int64),
    )


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


def atom_names_true(atoms_row: np.ndarray) -> list[str]:
    """Names of the atoms set in one atom vector."""
    return [ATOMS[i] for i in np.flatnonzero(atoms_row)]


# --------------------------------------------------------------------------------------------
# The fused kernel: every feature of a batch in one compiled pass per row
# --------------------------------------------------------------------------------------------
# The kernel reads NLE's constants (blstats indices, condition masks) as compile-time constants;
# nle is pinned (==1.3.0), so numba's on-disk cache cannot go stale on them. The glyph tables are
# passed as arguments.

#: Per-glyph flag word of the kernel: GLYPH_FLAGS (bits 0..15), then wall, floating eye, and the
#: walk class (WALK_CLASS) in bits 18..19.
_K_WALL = 1 << 16
_K_FEYE = 1 << 17
_K_WALK_SHIFT = 18
KERNEL_FLAGS = GLYPH_FLAGS.copy()
KERNEL_FLAGS[IS_WALL] |= np.uint32(_K_WALL)
KERNEL_FLAGS[IS_FLOATING_EYE] |= np.uint32(_K_FEYE)
KERNEL_FLAGS |= WALK_CLASS.astype(np.uint32) << np.uint32(_K_WALK_SHIFT)
if KERNEL_FLAGS[PAD_GLYPH] != 0 or GLYPH_GROUP[PAD_GLYPH] != PAD_GROUP:
    raise RuntimeError("the padding glyph must match no glyph table")  # the kernel relies on it

_B_HOSTILE, _B_PET, _B_DOWN, _B_UP, _B_FOOD = (int(_BIT[k]) for k in ("hostile", "pet", "down", "up", "food"))  # fmt: skip
_B_DOOR, _B_CLOSED, _B_CORRIDOR, _B_FLOOR = (int(_BIT[k]) for k in ("door", "closed_door", "corridor", "floor"))  # fmt: skip
_B_DARK, _B_ITEM, _B_TRAP, _B_BOULDER = (int(_BIT[k]) for k in ("dark", "item", "trap", "boulder"))
_B_WATER, _B_WALKABLE, _B_STONE = (int(_BIT[k]) for k in ("water", "walkable", "stone"))
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
    return state, crop, atoms
