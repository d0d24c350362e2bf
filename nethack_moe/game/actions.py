"""NetHackScore-v0's action space, the one owner of which action id is which command.

The task plays NLE's 23 ``TASK_ACTIONS`` (``nle.env.tasks``): ``MORE``, the 8 steps, the 8 rush
moves, ``UP``, ``DOWN``, ``WAIT``, ``KICK``, ``EAT``, ``SEARCH``. The navigation hint names a
step in :data:`nethack_moe.game.navigation.DIRS` order or "descend here"; the rule players and
the scripted teacher press the ids below. Nothing here is learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from nle.env.tasks import TASK_ACTIONS
from nle.nethack.actions import (
    Command,
    CompassDirection,
    CompassDirectionLonger,
    MiscAction,
    MiscDirection,
)

from nethack_moe.game.navigation import DIRS

#: Number of actions of the task.
N_TASK_ACTIONS = len(TASK_ACTIONS)


def task_action_id(cmd: Any) -> int:
    """The task's action id of an NLE command (``ValueError`` if the task lacks it)."""
    return TASK_ACTIONS.index(cmd)


#: The hint's entries (navigation.DIRS order, then "descend here") as NLE commands.
HINT_COMMANDS: tuple[int, ...] = (*CompassDirection, MiscDirection.DOWN)
#: Action ids of the hint's entries.
HINT_ACTIONS: np.ndarray = np.array([task_action_id(c) for c in HINT_COMMANDS], dtype=np.int64)
#: Action ids of the 8 steps and the 8 rush moves, in navigation.DIRS order (N, E, S, W, NE ...).
MOVE_ACTIONS = np.array([task_action_id(d) for d in CompassDirection], dtype=np.int64)
RUSH_ACTIONS = np.array([task_action_id(d) for d in CompassDirectionLonger], dtype=np.int64)
#: Single actions the rule players and the teacher press.
MORE_ACTION = task_action_id(MiscAction.MORE)
DOWN_ACTION = task_action_id(MiscDirection.DOWN)
WAIT_ACTION = task_action_id(MiscDirection.WAIT)
SEARCH_ACTION = task_action_id(Command.SEARCH)
KICK_ACTION = task_action_id(Command.KICK)
EAT_ACTION = task_action_id(Command.EAT)

if [(-DIRS[k][0], DIRS[k][1]) for k in range(8)] != [
    (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (-1, -1), (1, -1)
]:  # fmt: skip
    raise RuntimeError("navigation.DIRS is not in CompassDirection order")  # N = up = y - 1


def move_dirs(raw_actions: Sequence[Any]) -> np.ndarray:
    """``[len(raw_actions)]`` int64: the direction (navigation.DIRS order) of each action of an
    env's list that steps or rushes, -1 for the others (any NLE action set)."""
    out = np.full(len(raw_actions), -1, dtype=np.int64)
    for i, a in enumerate(raw_actions):
        for enum in (CompassDirection, CompassDirectionLonger):
            if isinstance(a, enum):
                out[i] = list(enum).index(a)
    return out


def task_slots(raw_actions: Sequence[Any]) -> np.ndarray:
    """``[len(raw_actions)]`` int64: the index in the task's 23 actions of each action of an env's
    list (its slot in the state's ``last_action_*`` one-hot), -1 for commands the task lacks."""
    return np.array([TASK_ACTIONS.index(a) if a in TASK_ACTIONS else -1 for a in raw_actions],
                    dtype=np.int64)  # fmt: skip


#: Direction index (0..7) of every action id that moves (steps and rushes); -1 otherwise.
MOVE_DIR = move_dirs(TASK_ACTIONS)
#: Action id that types each key (its ASCII code), -1 for keys no action types: the inventory
#: letters an ``eat`` prompt can be answered with.
KEY_ACTION = np.full(256, -1, dtype=np.int64)
for _i, _a in enumerate(TASK_ACTIONS):
    if 32 < int(_a) < 127:
        KEY_ACTION[int(_a)] = _i


def action_label(action: Any) -> str:
    """A readable name of an NLE action enum: ``N``, ``far N`` (a rush move), ``DOWN``, ``SEARCH``."""
    name = getattr(action, "name", str(action))
    return f"far {name}" if isinstance(action, CompassDirectionLonger) else name


def action_index(raw_actions: Sequence[Any], action: Any) -> int | None:
    """Index of ``action`` (an ``nle.nethack.actions`` enum) in the env's list, ``None`` if absent."""
    for i, a in enumerate(raw_actions):
        if a == action and type(a) is type(action):
            return i
    return None


def check_action_set(raw_actions: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``raw_actions`` gives the ids above their commands (the ids the
    rule players press are NetHackScore-v0's)."""
    want = {
        MORE_ACTION: MiscAction.MORE,
        WAIT_ACTION: MiscDirection.WAIT,
        SEARCH_ACTION: Command.SEARCH,
        DOWN_ACTION: MiscDirection.DOWN,
    }
    want.update({int(i): d for i, d in zip(MOVE_ACTIONS, CompassDirection, strict=True)})
    for i, a in want.items():
        if i >= len(raw_actions) or raw_actions[i] != a:
            raise ValueError(
                f"the baselines need NetHackScore-v0's 23 actions; action {i} of this task is "
                f"{raw_actions[i] if i < len(raw_actions) else 'missing'}, not {a}"
            )
