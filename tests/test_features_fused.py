"""The fused feature kernel equals the NumPy reference bit for bit, on real seeded NLE play.

Six envs play 400 steps: four NetHackScore-v0 games follow the navigation hint with random
actions mixed in (they go downstairs, fight, meet prompts and locked doors), and two
NetHackChallenge-v0 games press random keys (menus, ``--More--``, questions). Every step, the
batch goes through :func:`compute_features` and :func:`compute_features_reference`, each with its
own level memory, and state, crop, atoms and memory must be equal. The test also checks that the
play covered what it is meant to cover (level changes, prompts, monsters, the stairs hint).
"""

from __future__ import annotations

import numpy as np
import pytest
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.envs.factory import OBS_KEYS, EnvConfig, make_env, seed_env
from nethack_moe.features import reference as R

TASKS = ("NetHackScore-v0",) * 4 + ("NetHackChallenge-v0",) * 2
STEPS = 400
HINT_KEYS = np.array([1, 2, 3, 4, 5, 6, 7, 8, 18])  # NetHackScore ids of the hint's moves and '>'
MEMORY_FIELDS = ("stairs", "level", "visited", "locked", "n_visited")
#: glyphs, blstats, message, tty_chars of a batch.
Obs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _assert_same(got, want, what: str) -> None:
    for name, g, w in zip(("state", "crop", "atoms"), got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, (what, name)
        if not np.array_equal(g, w):
            rows = np.flatnonzero((g != w).reshape(len(g), -1).any(1))
            pytest.fail(f"{what}: {name} differs in rows {rows.tolist()}")


def _assert_same_memory(a: F.Memory, b: F.Memory, what: str) -> None:
    for f in MEMORY_FIELDS:
        assert np.array_equal(getattr(a, f), getattr(b, f)), f"{what}: memory.{f} differs"


class Play:
    """The six seeded games; ``obs()`` stacks the current observations (copies)."""

    def __init__(self) -> None:
        self.envs = [make_env(EnvConfig(task=t, max_episode_steps=10_000)).unwrapped for t in TASKS]
        self.rng = np.random.default_rng(7)
        self.last: list[dict] = []
        self.resets: list[int] = []
        for i, env in enumerate(self.envs):
            seed_env(env, 100_000 + i, 100_000 + i)
            self.last.append(env.reset()[0])

    def obs(self) -> Obs:
        g, b, m, t = (np.stack([np.array(o[k], copy=True) for o in self.last]) for k in OBS_KEYS)
        return g, b, m, t

    def step(self, state: np.ndarray, t: int) -> None:
        """Hint-follower with 25 % random actions for the Score games, random keys otherwise."""
        self.resets = []
        nav = state[:, F.NAV_ONEHOT : F.NAV_ONEHOT + F.N_NAV]
        for i, env in enumerate(self.envs):
            n = env.action_space.n
            if TASKS[i] == "NetHackScore-v0" and nav[i].any() and self.rng.random() > 0.25:
                a = int(HINT_KEYS[nav[i].argmax()])
            else:
                a = int(self.rng.integers(n))
            obs, _, done, trunc, _ = env.step(a)
            if done or trunc:
                seed_env(env, 200_000 + t, i)
                obs, _ = env.reset()
                self.resets.append(i)
            self.last[i] = obs

    def close(self) -> None:
        for env in self.envs:
            env.close()


def test_fused_features_equal_the_reference_on_real_play():
    play = Play()
    spec, spec5 = F.FeatureSpec(crop_size=9), F.FeatureSpec(crop_size=5)
    B = len(TASKS)
    mem_f, mem_r = F.new_memory(B), F.new_memory(B)
    out = (np.empty((B, F.STATE_DIM), np.float32), np.empty((B, 9, 9), np.int16),
           np.empty((B, F.N_ATOMS), bool))  # fmt: skip
    seen = dict.fromkeys(
        ("depth_change", "question", "more", "hostile", "stairs_hint", "on_stairs", "locked"), 0
    )
    depth = np.zeros(B, np.int64)
    A = F.ATOM_INDEX
    try:
        for t in range(STEPS):
            obs = play.obs()
            got = F.compute_features(*obs, spec, *out, memory=mem_f)
            want = R.compute_features_reference(*obs, spec, memory=mem_r)
            _assert_same(got, want, f"step {t}")
            _assert_same_memory(mem_f, mem_r, f"step {t}")
            # without memory, without tty_chars, another crop, one row at a time
            _assert_same(F.compute_features(*obs, spec), R.compute_features_reference(*obs, spec),
                         f"step {t}, no memory")  # fmt: skip
            _assert_same(F.compute_features(*obs[:3], None, spec5),
                         R.compute_features_reference(*obs[:3], None, spec5), f"step {t}, no tty")  # fmt: skip
            j = t % B
            row = (obs[0][j : j + 1], obs[1][j : j + 1], obs[2][j : j + 1], obs[3][j : j + 1])
            _assert_same(F.compute_features(*row, spec, memory=mem_f.rows([j])),
                         R.compute_features_reference(*row, spec, memory=mem_r.rows([j])),
                         f"step {t}, row {j}")  # fmt: skip
            state, _, atoms = got
            d = obs[1][:, nh.NLE_BL_DEPTH]
            seen["depth_change"] += int(((d != depth) & (depth > 0)).sum())
            depth = d.copy()
            seen["question"] += int(atoms[:, A["question_prompt"]].sum())
            seen["more"] += int(atoms[:, A["more_prompt"]].sum())
            seen["hostile"] += int(atoms[:, A["hostile_adjacent"]].sum())
            seen["stairs_hint"] += int((state[:, F.NAV_STAIRS] > 0).sum())
            seen["on_stairs"] += int(atoms[:, A["on_downstairs"]].sum())
            seen["locked"] += int(mem_f.locked.any())
            play.step(state, t)
            for i in play.resets:  # a new game: a fresh memory row, as the vector env does
                mem_f.clear(i)
                mem_r.clear(i)
                depth[i] = 0
    finally:
        play.close()
    assert all(v > 0 for v in seen.values()), seen


MESSAGES = (
    b"", b" ", b"Hello.", b"Really attack the newt?", b"Really attack?  ", b"What do you want to eat? [fg or ?*]",
    b"Eat it? [ynq] (n)", b"Eat it? [ynq] (\n)", b"] (n)", b"x] (nn)", b"Pick an object. (For instructions type a '?')",
    b"(For instructions type a '?')\t\x0b", b"In what direction?", b"In what direction do you want to kick",
    b"You see here a dagger.", b"You feel here 2 gold pieces.", b"There are several objects here.",
    b"There are no objects here.", b"You have a little trouble lifting a boulder.", b"This door is locked.",
    b"This door is locked", b"this door is locked.", b"--More--", b"]", b"?", b"a\x00b?",
    b"Eat it?\r", b"In what direction", b"[ynq] (n)\r\n ",
)  # fmt: skip


def _one_observation() -> Obs:
    env = make_env(EnvConfig(max_episode_steps=100)).unwrapped
    seed_env(env, 5, 5)
    obs, _ = env.reset()
    g, b, m, t = (np.array(obs[k], copy=True)[None] for k in OBS_KEYS)
    env.close()
    return g, b, m, t


@pytest.mark.parametrize("tail", [False, True])
@pytest.mark.parametrize("text", MESSAGES)
def test_message_atoms_equal_the_reference(text, tail):
    glyphs, blstats, message, tty = _one_observation()
    message[:] = 0
    message[0, : len(text)] = np.frombuffer(text, np.uint8)
    if tail:  # bytes after the NUL: the reference's substring and suffix tests see them too
        message[0, 200:208] = np.frombuffer(b"objects ", np.uint8)
    tty[0, 5, 76:80] = np.frombuffer(b"--Mo", np.uint8)  # --More-- across two terminal rows
    tty[0, 6, 0:4] = np.frombuffer(b"re--", np.uint8)
    spec = F.FeatureSpec(crop_size=9)
    got = F.compute_features(glyphs, blstats, message, tty, spec, memory=F.new_memory(1))
    want = R.compute_features_reference(glyphs, blstats, message, tty, spec, memory=F.new_memory(1))
    _assert_same(got, want, repr(text))
