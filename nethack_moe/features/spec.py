"""The feature layout: scene atoms, the state vector's columns, the hint's one-hot, the shapes
(:class:`FeatureSpec`) and the per-env level memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from nle import nethack as nh

from nethack_moe.features.glyphs import N_GLYPH_GROUPS
from nethack_moe.game.actions import N_TASK_ACTIONS, move_dirs, task_slots

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
N_LAST_ACTIONS = N_TASK_ACTIONS  # the last_action_* one-hot: NLE's TASK_ACTIONS
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
    + tuple(f"last_move_{i}" for i in range(8))
    + ("last_moved", "still_steps")
    + tuple(f"last_action_{i}" for i in range(N_LAST_ACTIONS))
)
STATE_DIM = len(STATE_NAMES)
#: First column of the one-step memory: ``last_move_0..7`` (one-hot: the direction, in
#: navigation.DIRS order, of the previous action if it was a step or a rush move) and
#: ``last_moved`` (it changed the hero's position or depth). Written by the env layer, which knows
#: the action (:func:`write_last_move`); all zero at the start of an episode and in
#: :func:`compute_features`' output. Models read them only with ``model.last_move_inputs``.
LAST_MOVE = STATE_NAMES.index("last_move_0")
#: Width of the state vector up to ``last_moved`` (what ``model.last_move_inputs`` reads); the
#: next column, ``still_steps``, counts the steps since the hero's position or depth last changed
#: (capped at 8, /8; ``model.still_inputs``): it changes while the hero repeats an action that
#: does nothing, where the other inputs do not.
LAST_MOVE_DIM = LAST_MOVE + 9
#: First column of ``last_action_0..22``: one-hot of the previous action among the task's 23
#: (``game.actions.task_slots``; all zero at an episode's start and for commands the task lacks),
#: so that a search, a kick, an eat or a prompt key just pressed is visible
#: (``model.action_inputs``).
LAST_ACTION = STATE_NAMES.index("last_action_0")
#: Width of the state vector without the one-step memory (what models without it read).
BASE_STATE_DIM = LAST_MOVE
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


def atom_names_true(atoms_row: np.ndarray) -> list[str]:
    """Names of the atoms set in one atom vector."""
    return [ATOMS[i] for i in np.flatnonzero(atoms_row)]


def hero_moved(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether the hero's position or depth differs between two blstats vectors."""
    return any(int(before[k]) != int(after[k]) for k in _WHERE)


class MoveMemory:
    """The short memory of ``n`` envs that :func:`write_last_move` puts into the state vector:
    each env's last action (its direction, -1 if not a move; its task slot, -1 if none), whether
    it moved the hero, and the steps since the hero last moved. The env layer records every step
    (it knows the action) and clears a row when its env starts an episode."""

    def __init__(self, n: int, raw_actions: Sequence[Any]) -> None:
        """``raw_actions``: the env's action list (``env.unwrapped.actions``)."""
        self.move_dir = move_dirs(raw_actions)  # action id -> direction 0..7 or -1
        self.slot = task_slots(raw_actions)  # action id -> task slot 0..22 or -1
        self.last_dir = np.full(n, -1, np.int64)
        self.last_slot = np.full(n, -1, np.int64)
        self.moved = np.zeros(n, bool)
        self.still = np.zeros(n, np.int64)

    def clear(self, j: int) -> None:
        self.last_dir[j], self.last_slot[j], self.moved[j], self.still[j] = -1, -1, False, 0

    def record(self, j: int, action: int, before: np.ndarray, after: np.ndarray) -> None:
        """Env ``j`` took ``action``; ``before``/``after``: its blstats around the step."""
        self.last_dir[j] = self.move_dir[action]
        self.last_slot[j] = self.slot[action]
        self.moved[j] = hero_moved(before, after)
        self.still[j] = 0 if self.moved[j] else self.still[j] + 1

    def write(self, state: np.ndarray, rows: slice | np.ndarray) -> None:
        """The memory of envs ``rows`` into ``state [len(rows), STATE_DIM]``, in place."""
        write_last_move(
            state, self.last_dir[rows], self.moved[rows], self.still[rows], self.last_slot[rows]
        )


def write_last_move(
    state: np.ndarray,
    last_dir: np.ndarray,
    moved: np.ndarray,
    still: np.ndarray,
    last_slot: np.ndarray,
) -> None:
    """Write the memory columns of ``state [B, STATE_DIM]`` in place: ``last_dir [B]`` (0..7, or
    -1 for none: not a move, or the first observation of an episode), ``moved [B]``, ``still [B]``
    (steps since the position or depth last changed), ``last_slot [B]`` (the last action's task
    slot 0..22, -1 for none)."""
    # row -1 of the tables (mode "wrap") is all zeros: no allocation, one pass
    np.take(
        _LAST_MOVE_TABLE, last_dir, axis=0, out=state[:, LAST_MOVE : LAST_MOVE + 8], mode="wrap"
    )
    state[:, LAST_MOVE + 8] = moved
    np.minimum(still, _STILL_CAP, out=state[:, LAST_MOVE_DIM], casting="unsafe")
    state[:, LAST_MOVE_DIM] /= _STILL_CAP
    np.take(
        _LAST_ACTION_TABLE,
        last_slot,
        axis=0,
        out=state[:, LAST_ACTION : LAST_ACTION + N_LAST_ACTIONS],
        mode="wrap",
    )


_STILL_CAP = 8
_WHERE = (nh.NLE_BL_X, nh.NLE_BL_Y, nh.NLE_BL_DEPTH)
_LAST_MOVE_TABLE = np.vstack([np.eye(8, dtype=np.float32), np.zeros((1, 8), np.float32)])
_LAST_ACTION_TABLE = np.vstack(
    [np.eye(N_LAST_ACTIONS, dtype=np.float32), np.zeros((1, N_LAST_ACTIONS), np.float32)]
)
