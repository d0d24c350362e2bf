"""Shapes, dtypes, the hero-centred crop, batching and in-place outputs of the features, on real NLE
observations from seeded random play."""

from __future__ import annotations

import numpy as np
import pytest
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.envs.factory import EnvConfig, make_env, seed_env

#: Seed 9's hero spends its first steps in a room at the top of the map (y <= 4).
SEED, STEPS = 9, 40
KEYS = ("glyphs", "blstats", "message", "tty_chars")


@pytest.fixture(scope="module")
def obs() -> dict[str, np.ndarray]:
    """``STEPS`` real observations of one seeded random game, stacked per key (copies)."""
    env = make_env(EnvConfig(max_episode_steps=STEPS + 5)).unwrapped
    seed_env(env, SEED, SEED)
    o, _ = env.reset()
    rng = np.random.default_rng(SEED)
    rows = []
    for _ in range(STEPS):
        rows.append({k: np.array(o[k], copy=True) for k in KEYS})  # NLE reuses its arrays
        o, _, done, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        assert not (done or truncated)
    env.close()
    return {k: np.stack([r[k] for r in rows]) for k in KEYS}


def _batch(obs, idx):
    return tuple(obs[k][idx] for k in KEYS)


def _hero(obs, i):
    bl = obs["blstats"][i]
    return int(bl[nh.NLE_BL_Y]), int(bl[nh.NLE_BL_X])


def _reference_crop(glyphs, y, x, c):
    """The crop by hand: glyph groups around (y, x), 0 outside the map."""
    r = c // 2
    out = np.zeros((c, c), np.int16)
    for i in range(c):
        for j in range(c):
            yy, xx = y - r + i, x - r + j
            if 0 <= yy < F.ROWS and 0 <= xx < F.COLS:
                out[i, j] = F.GLYPH_GROUP[glyphs[yy, xx]]
    return out


@pytest.mark.parametrize("crop", [5, 9])
@pytest.mark.parametrize("batch", [1, 3, 17])
def test_shapes_dtypes_and_ranges(obs, batch, crop):
    idx = np.arange(batch) * 2 % STEPS  # spread over the game
    state, crops, atoms = F.compute_features(*_batch(obs, idx), F.FeatureSpec(crop_size=crop))
    assert state.shape == (batch, F.STATE_DIM) and state.dtype == np.float32
    assert np.isfinite(state).all()
    assert crops.shape == (batch, crop, crop) and crops.dtype == np.int16
    assert crops.min() >= 0 and crops.max() < F.N_GLYPH_GROUPS
    assert atoms.shape == (batch, F.N_ATOMS) and atoms.dtype == np.bool_


def test_spec_matches_module_constants():
    spec = F.FeatureSpec(crop_size=7)
    assert spec.state_dim == F.STATE_DIM == len(F.STATE_NAMES)
    assert spec.n_atoms == F.N_ATOMS == len(F.ATOMS)
    assert spec.n_glyph_groups == F.N_GLYPH_GROUPS
    assert spec.atom_names == F.ATOMS


def test_group_zero_is_left_for_padding():
    assert F.PAD_GROUP == 0
    assert F.GLYPH_GROUP.shape == (F.N_GLYPHS,)
    real = F.GLYPH_GROUP[: nh.MAX_GLYPH]  # every glyph a map cell can show
    assert real.min() >= 1 and F.GLYPH_GROUP.max() < F.N_GLYPH_GROUPS


def _outside(y, x, c):
    """Which cells of a ``c x c`` crop around (y, x) lie outside the map."""
    r = c // 2
    ii, jj = np.mgrid[0:c, 0:c]
    return (y - r + ii < 0) | (y - r + ii >= F.ROWS) | (x - r + jj < 0) | (x - r + jj >= F.COLS)


@pytest.mark.parametrize("crop", [5, 9])
def test_crop_is_centred_on_the_hero(obs, crop):
    r = crop // 2
    _, crops, _ = F.compute_features(*_batch(obs, slice(None)), F.FeatureSpec(crop_size=crop))
    near_edge = 0
    for i in range(STEPS):
        y, x = _hero(obs, i)
        g = obs["glyphs"][i]
        assert F.IS_MONSTER[g[y, x]], "blstats (x, y) is the hero's cell in the glyph map"
        assert crops[i, r, r] == F.GLYPH_GROUP[g[y, x]]
        inside = ~_outside(y, x, crop)
        np.testing.assert_array_equal(crops[i][inside], _reference_crop(g, y, x, crop)[inside])
        near_edge += bool((~inside).any())
    if crop == 9:
        assert near_edge > 0, "the seeded game should bring the hero within 4 cells of the map edge"


def test_crop_is_padded_with_zero_outside_the_map(obs):
    _, crops, _ = F.compute_features(*_batch(obs, slice(None)), F.FeatureSpec(crop_size=9))
    padded = 0
    for i in range(STEPS):
        out = _outside(*_hero(obs, i), 9)
        padded += int(out.sum())
        assert (crops[i][out] == F.PAD_GROUP).all(), f"padding groups {set(crops[i][out].tolist())}"
        assert (crops[i][~out] != F.PAD_GROUP).all()
    assert padded > 0


@pytest.mark.parametrize("crop", [5, 9])
def test_batched_equals_row_by_row(obs, crop):
    spec = F.FeatureSpec(crop_size=crop)
    idx = np.arange(17) * 2 % STEPS
    mem = F.new_memory(17)
    state, crops, atoms = F.compute_features(*_batch(obs, idx), spec, memory=mem)
    for b, i in enumerate(idx):
        mem1 = F.new_memory(1)
        s1, c1, a1 = F.compute_features(*_batch(obs, [i]), spec, memory=mem1)
        np.testing.assert_array_equal(state[b], s1[0])
        np.testing.assert_array_equal(crops[b], c1[0])
        np.testing.assert_array_equal(atoms[b], a1[0])
        np.testing.assert_array_equal(mem.stairs[b], mem1.stairs[0])
        np.testing.assert_array_equal(mem.visited[b], mem1.visited[0])
        # without memory too
        s0, c0, a0 = F.compute_features(*_batch(obs, [i]), spec)
        np.testing.assert_array_equal(c0[0], crops[b])
    # no tty_chars: same except the --More-- atom, which is then false
    _, _, a_none = F.compute_features(
        obs["glyphs"][idx],
        obs["blstats"][idx],
        obs["message"][idx],
        None,
        spec,
        memory=F.new_memory(17),
    )
    assert not a_none[:, F.ATOM_INDEX["more_prompt"]].any()


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_preallocated_outputs_are_filled_in_place(obs, batch):
    spec = F.FeatureSpec(crop_size=9)
    idx = np.arange(batch) * 2 % STEPS + 1
    want = F.compute_features(*_batch(obs, idx), spec)
    out_state = np.full((batch, F.STATE_DIM), np.nan, np.float32)
    out_crop = np.full((batch, 9, 9), -7, np.int16)
    out_atoms = np.ones((batch, F.N_ATOMS), bool)
    got = F.compute_features(
        *_batch(obs, idx), spec, out_state=out_state, out_crop=out_crop, out_atoms=out_atoms
    )
    assert got[0] is out_state and got[1] is out_crop and got[2] is out_atoms
    for w, o in zip(want, (out_state, out_crop, out_atoms), strict=True):
        np.testing.assert_array_equal(o, w)


def test_every_atom_has_a_one_line_meaning():
    assert len(F.ATOM_SPECS) == F.N_ATOMS and len(set(F.ATOMS)) == F.N_ATOMS
    for name, meaning in F.ATOM_SPECS:
        assert name.isidentifier(), name
        assert isinstance(meaning, str) and meaning.strip(), f"atom {name!r} has no meaning"
        assert "\n" not in meaning, f"atom {name!r} has a multi-line meaning"
    assert F.atom_names_true(np.eye(F.N_ATOMS, dtype=bool)[3]) == [F.ATOMS[3]]


def test_visited_count_matches_the_visited_map(obs):
    spec = F.FeatureSpec(crop_size=9)
    mem = F.new_memory(1)
    for i in range(STEPS):
        F.compute_features(*_batch(obs, [i]), spec, memory=mem)
        assert mem.n_visited[0] == mem.visited[0].sum()
