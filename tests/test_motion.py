"""Where the steps take the hero (``summary.motion``): still / back / revisit / new, by hand
and on real play (the greedy loops of a policy against the hint follower)."""

from __future__ import annotations

import numpy as np
import pytest
from test_specialization import _log

from nethack_moe.metrics.motion import motion_figures


def _path(*episodes: list[tuple[int, int, int]]):
    rows = [(e, x, y, d) for e, ep in enumerate(episodes) for x, y, d in ep]
    e, x, y, d = (np.array(c) for c in zip(*rows, strict=True))
    return _log(hp=np.zeros(len(e), np.int64), episode=e, x=x, y=y, depth=d)


def test_each_step_by_hand():
    a, b, c = (1, 1, 1), (2, 1, 1), (3, 1, 1)
    st = _path(
        # step results: still, new, back, back, still, new, revisit, new (other level)
        [a, a, b, a, b, b, c, a, (1, 1, 2)],
        # a second episode starts fresh: b is new there, a->b->a is back
        [a, b, a],
    )
    m = motion_figures(st)
    assert m is not None and m.steps == 10
    counts = {k: round(getattr(m, k) * m.steps) for k in ("still", "back", "revisit", "new")}
    assert counts == {"still": 2, "back": 3, "revisit": 1, "new": 4}
    assert m.still + m.back + m.revisit + m.new == pytest.approx(1.0)


def test_the_last_row_of_an_episode_starts_nothing():
    # one row per episode: no step has a result
    assert motion_figures(_path([(1, 1, 1)], [(1, 1, 1)])) is None
    # a->b ends episode 0; episode 1 starting at b is not a step of episode 0
    m = motion_figures(_path([(1, 1, 1), (2, 1, 1)], [(2, 1, 1), (2, 1, 1)]))
    assert m is not None and m.steps == 2 and m.new == 0.5 and m.still == 0.5


def _plain(st) -> dict[str, int]:
    """The same counts by a plain loop over the rows."""
    out = {"still": 0, "back": 0, "revisit": 0, "new": 0}
    for e in np.unique(st.episode):
        rows = np.flatnonzero(st.episode == e)
        pos = [(int(st.x[r]), int(st.y[r]), int(st.depth[r])) for r in rows]
        seen = {pos[0]}
        for t in range(1, len(pos)):
            p = pos[t]
            kind = ("still" if p == pos[t - 1] else "back" if t >= 2 and p == pos[t - 2]
                    else "revisit" if p in seen else "new")  # fmt: skip
            out[kind] += 1
            seen.add(p)
    return out


@pytest.fixture(scope="module")
def played():
    from nethack_moe.envs.factory import EnvConfig
    from nethack_moe.evaluation.players import HintFollower, RandomPlayer
    from nethack_moe.evaluation.runner import play

    env = EnvConfig(max_episode_steps=150)
    return {name: play(p, env, 3, num_envs=3, workers=0, collect_states=True).states
            for name, p in (("random", RandomPlayer(23)), ("follower", HintFollower()))}  # fmt: skip


def test_real_play_matches_a_plain_count_and_tells_the_players_apart(played):
    figs = {}
    for name, st in played.items():
        m = motion_figures(st)
        assert m is not None
        counts = {k: round(getattr(m, k) * m.steps) for k in ("still", "back", "revisit", "new")}
        assert counts == _plain(st), name
        figs[name] = m
    # the follower walks to new cells; random play mostly bumps into walls or steps back
    assert figs["follower"].new > 2 * figs["random"].new
    assert (
        figs["random"].still + figs["random"].back > figs["follower"].still + figs["follower"].back
    )
