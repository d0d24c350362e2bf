"""The navigation hint: BFS rules on hand-made maps, and a hint-follower that descends for real."""

import numpy as np

from nethack_moe import features as F
from nethack_moe.envs.factory import EnvConfig, SeedPlan
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.game.navigation import BLOCKED, DOOR, FREE, nav_batch


def _grid(rows: list[str]):
    walk = np.array([[{"#": BLOCKED, ".": FREE, "+": DOOR}[c] for c in r] for r in rows], np.uint8)
    return walk[None]


def test_shortest_path_first_step_and_length():
    walk = _grid(["....", "....", "...."])
    goal = np.zeros_like(walk, bool)
    goal[0, 2, 3] = True
    k, d, st = nav_batch(
        walk, goal, np.array([False]), np.array([0]), np.array([0]), np.array([0]), np.array([0])
    )
    assert d[0] == 3 and k[0] in (1, 5)  # E or SE first: 3 moves in all
    assert not st[0]


def test_no_diagonal_moves_through_doors_and_walls_block():
    walk = _grid(["..#..", "..+..", "..#.."])
    goal = np.zeros_like(walk, bool)
    goal[0, 0, 4] = True
    k, d, _ = nav_batch(
        walk, goal, np.array([False]), np.array([0]), np.array([0]), np.array([1]), np.array([1])
    )
    # from (1,1) the only way is E into the door, E out of it, then NE
    assert k[0] == 1 and d[0] == 3


def test_stairs_take_precedence_and_unreachable_gives_minus_one():
    walk = _grid(["..#..", "..#..", "..#.."])
    frontier = np.zeros_like(walk, bool)
    frontier[0, 0, 0] = True
    k, d, st = nav_batch(
        walk, frontier, np.array([True]), np.array([2]), np.array([1]), np.array([0]), np.array([1])
    )
    assert st[0] and k[0] == 2 and d[0] == 2  # S to the stairs at (2,1)
    k, _, st = nav_batch(walk, np.zeros_like(frontier), np.array([True]), np.array([0]), np.array([4]),
                         np.array([0]), np.array([0]))  # fmt: skip
    assert k[0] == -1 and not st[0]


def test_a_hint_follower_goes_down_for_real():
    """Following the hint and pressing '>' on the stairs reaches Dlvl 2 on most E200 seeds."""
    n = 8
    rng = np.random.default_rng(0)
    i0 = F.STATE_NAMES.index("nav_0")
    on, q = F.ATOM_INDEX["on_downstairs"], F.ATOM_INDEX["question_prompt"]
    best = np.zeros(n, int)
    with VectorEnv(EnvConfig(), n, 0, SeedPlan("eval", 100000, n)) as v:
        for _ in range(500):
            nav = v.buf.state[:, i0 : i0 + 8]
            act = np.where(nav.any(1), nav.argmax(1) + 1, 22)
            act = np.where(v.buf.atoms[:, on], 18, act)
            act = np.where(rng.random(n) < 0.05, rng.integers(1, 9, n), act)  # unstick
            act = np.where(v.buf.atoms[:, q], 19, act)
            v.step(act)
            best = np.maximum(best, v.buf.blstats[:, 12])
    assert (best >= 2).sum() >= n // 2, best
