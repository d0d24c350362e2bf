"""Scenario labels of visited states (DESIGN.md, "Scenarios"); the first match wins.

1. **survival**: HP < 1/3 of max (``hp_low``), hunger Weak or worse (``weak``), or a bad condition
   (``confused``, ``stunned``, ``blind``, ``sick`` = food-poisoned or ill);
2. **combat**: a hostile monster adjacent (``hostile_adjacent``) or within distance 3
   (``hostile_near``);
3. **exploration**: none of the above and the hero moved on the step into the state (position or
   depth changed since the previous step, or the previous action was search / descend: see
   :func:`moved_from_trajectory`);
4. **general**: everything else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nethack_moe.features import ATOM_INDEX

SCENARIOS: tuple[str, ...] = ("survival", "combat", "exploration", "general")
SURVIVAL, COMBAT, EXPLORATION, GENERAL = range(4)

SURVIVAL_ATOMS: tuple[str, ...] = ("hp_low", "weak", "confused", "stunned", "blind", "sick")
COMBAT_ATOMS: tuple[str, ...] = ("hostile_adjacent", "hostile_near")


def _any_atoms(atoms: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    idx = [ATOM_INDEX[n] for n in names]
    return np.asarray(atoms[:, idx].any(axis=1), dtype=bool)


def label_scenarios(atoms: Any, moved: Any) -> np.ndarray:
    """Scenario index (into :data:`SCENARIOS`) of each state.

    Args:
        atoms: ``[S, A]`` bool atom vectors in the order of ``nethack_moe.features.ATOMS``
            (a single ``[A]`` vector is accepted as ``S = 1``).
        moved: ``[S]`` bool, the hero moved / searched / descended at this step.

    Returns:
        ``[S]`` int64 labels.
    """
    a = np.asarray(atoms).astype(bool, copy=False)
    if a.ndim == 1:
        a = a[None, :]
    mv = np.asarray(moved).astype(bool, copy=False).reshape(-1)
    if a.ndim != 2 or a.shape[0] != mv.shape[0]:
        raise ValueError(f"atoms {a.shape} and moved {mv.shape} do not match")
    if a.shape[1] < len(ATOM_INDEX):
        raise ValueError(f"atoms have {a.shape[1]} columns, features.ATOMS has {len(ATOM_INDEX)}")
    out = np.full(a.shape[0], GENERAL, dtype=np.int64)
    out[mv] = EXPLORATION
    out[_any_atoms(a, COMBAT_ATOMS)] = COMBAT
    out[_any_atoms(a, SURVIVAL_ATOMS)] = SURVIVAL
    return out


def moved_from_trajectory(
    x: Any,
    y: Any,
    depth: Any,
    episode_ids: Any = None,
    forced_action: Any = None,
) -> np.ndarray:
    """``moved[s]``: the hero moved on the step that led into state ``s``.

    Both parts refer to that one step (``s - 1`` → ``s`` of the same episode): the position or
    depth changed, or the action taken in state ``s - 1`` was one that counts as moving although
    the hero may stay in place (``forced_action[s - 1]``, e.g. search or descend). The label of a
    state therefore never depends on the action chosen in it. Rows must be in time order within
    each episode; the first step of an episode has not moved.
    """
    xs = np.asarray(x).reshape(-1)
    ys = np.asarray(y).reshape(-1)
    ds = np.asarray(depth).reshape(-1)
    n = xs.shape[0]
    mv = np.zeros(n, dtype=bool)
    if n > 1:
        changed = (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1]) | (ds[1:] != ds[:-1])
        if forced_action is not None:
            changed |= np.asarray(forced_action).astype(bool).reshape(-1)[:-1]
        if episode_ids is not None:
            e = np.asarray(episode_ids).reshape(-1)
            changed &= e[1:] == e[:-1]
        mv[1:] = changed
    return mv


def scenario_counts(labels: Any) -> dict[str, int]:
    """Number of states per scenario name."""
    c = np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=len(SCENARIOS))
    return {name: int(c[i]) for i, name in enumerate(SCENARIOS)}
