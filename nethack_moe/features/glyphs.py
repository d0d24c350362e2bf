"""Per-glyph tables from NLE: glyph classes, map features, glyph groups, walk classes and the
flag word that answers every per-cell question in one lookup."""

from __future__ import annotations

import numpy as np
from nle import nethack as nh

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
#: Distance of a cell the BFS never reached.
_BIG = 10_000

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
