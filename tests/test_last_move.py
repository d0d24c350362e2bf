"""The short memory (``last_move_*``, ``last_moved``, ``still_steps``, ``last_action_*`` state
columns; ``model.last_move_inputs``, ``still_inputs``, ``action_inputs``) on real NLE play."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from model_inputs import random_inputs
from nle import nethack as nh
from nle.env.tasks import TASK_ACTIONS

import nethack_moe.features as F
from nethack_moe.config.train import make_config
from nethack_moe.envs.factory import EnvConfig, SeedPlan
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.evaluation.frames import play_frames
from nethack_moe.evaluation.players import Choice
from nethack_moe.features import FeatureSpec
from nethack_moe.game.actions import (
    KICK_ACTION,
    MORE_ACTION,
    MOVE_ACTIONS,
    MOVE_DIR,
    N_TASK_ACTIONS,
    RUSH_ACTIONS,
    SEARCH_ACTION,
    task_slots,
)
from nethack_moe.models.acting import Obs, Teacher
from nethack_moe.models.policy import build_model

LM = F.LAST_MOVE


def _pos(bl: np.ndarray) -> tuple[int, int, int]:
    return int(bl[nh.NLE_BL_X]), int(bl[nh.NLE_BL_Y]), int(bl[nh.NLE_BL_DEPTH])


def _want(action: int, before: np.ndarray, after: np.ndarray, still: int) -> np.ndarray:
    """The columns by hand: the move's direction one-hot, whether the hero moved, the steps
    since it last moved (``still``, before this step) capped at 8, /8, and the action one-hot
    (NetHackScore's action ids are the task's slots)."""
    want = np.zeros(10 + N_TASK_ACTIONS, np.float32)
    if MOVE_DIR[action] >= 0:
        want[MOVE_DIR[action]] = 1.0
    want[8] = float(_pos(before) != _pos(after))
    want[9] = 0.0 if want[8] else min(still + 1, 8) / 8
    want[10 + action] = 1.0
    return want


def test_vector_env_writes_the_last_move_of_every_step():
    rng = np.random.default_rng(5)
    # steps, rushes and a search, in an order that bumps walls as well as walks
    pool = np.concatenate(
        [MOVE_ACTIONS, RUSH_ACTIONS[:2], [SEARCH_ACTION, KICK_ACTION, MORE_ACTION]]
    )
    seen = {"moved": 0, "bumped": 0, "other": 0, "still 8+": 0, "kick": 0}
    still = np.zeros(2, np.int64)
    with VectorEnv(EnvConfig(max_episode_steps=40), 2, 0, SeedPlan("train", 4)) as v:
        assert not v.buf.state[:, LM:].any()  # the first observation of an episode
        for t in range(120):
            acts = rng.choice(pool, 2)
            if t % 40 >= 30:  # ten searches in a row: the still counter passes its cap
                acts[:] = SEARCH_ACTION
            before = v.buf.blstats.copy()
            v.step(acts)
            for i in range(2):
                st = v.buf.final_state[i] if v.buf.truncated[i] else v.buf.state[i]
                if v.buf.terminated[i]:
                    still[i] = 0
                    continue  # NLE zeroes blstats at the game's end
                after = v.buf.blstats[i]
                if v.buf.truncated[i]:
                    # the new episode starts with no memory; the final state keeps the last move
                    assert not v.buf.state[i, LM:].any()
                    still[i] = 0
                    continue  # (its blstats are the new episode's)
                want = _want(int(acts[i]), before[i], after, int(still[i]))
                np.testing.assert_array_equal(st[LM:], want)
                still[i] = 0 if want[8] else still[i] + 1
                seen["still 8+"] += int(still[i] >= 8)
                kind = "other" if MOVE_DIR[acts[i]] < 0 else ("moved" if want[8] else "bumped")
                seen[kind] += 1
                seen["kick"] += int(acts[i] == KICK_ACTION)
    assert min(seen.values()) >= 5, seen  # every case was exercised


def test_a_truncated_episode_keeps_its_last_move_in_the_final_state():
    with VectorEnv(EnvConfig(max_episode_steps=3), 1, 0, SeedPlan("train", 1)) as v:
        for a in (SEARCH_ACTION, SEARCH_ACTION, int(MOVE_ACTIONS[2])):
            v.step(np.array([a]))
        assert v.buf.truncated[0]
        assert v.buf.final_state[0, LM + 2] == 1.0 and v.buf.final_state[0, LM : LM + 8].sum() == 1
        la = v.buf.final_state[0, F.LAST_ACTION :]
        assert la[int(MOVE_ACTIONS[2])] == 1.0 and la.sum() == 1
        assert not v.buf.state[0, LM:].any()


def test_resume_restores_the_last_move_before_any_step():
    rng = np.random.default_rng(2)
    acts = rng.choice(MOVE_ACTIONS, (25, 2))
    with VectorEnv(EnvConfig(max_episode_steps=100), 2, 0, SeedPlan("train", 3)) as v:
        for a in acts:
            v.step(a)
        snap, want = v.get_state(), v.buf.state.copy()
    assert want[:, LM : LM + 8].sum() == 2  # both envs carry a move
    with VectorEnv(EnvConfig(max_episode_steps=100), 2, 0, SeedPlan("train", 3)) as w:
        w.set_state(snap)
        np.testing.assert_array_equal(w.buf.state, want)


@dataclass
class _Scripted:
    """A rule player that presses a fixed list of actions and keeps what it saw."""

    actions: list[int]
    name: str = "scripted"
    expert_names: list[str] = field(default_factory=list)
    routing: str | None = None
    temperature: float | None = None
    needs_teacher: bool = False
    seen: list[np.ndarray] = field(default_factory=list)

    def start_episode(self, slot: int, seed: int | None) -> None:
        self.seen.clear()

    def choose(self, obs: Obs, teacher: Teacher | None = None) -> Choice:
        self.seen.append(obs.state[0].numpy().copy())
        return Choice(np.array([self.actions[len(self.seen) - 1]]))


def test_watch_and_replays_see_the_same_columns_as_the_vector_env():
    rng = np.random.default_rng(8)
    acts = [
        int(a) for a in rng.choice(np.concatenate([MOVE_ACTIONS, [SEARCH_ACTION, KICK_ACTION]]), 30)
    ]
    cfg = EnvConfig(max_episode_steps=100)
    player = _Scripted(acts)
    list(play_frames(player, cfg, seed=100003, steps=30))
    with VectorEnv(cfg, 1, 0, SeedPlan("eval", 100003)) as v:
        want = []
        for a in acts:
            want.append(v.buf.state[0].copy())
            v.step(np.array([a]))
    np.testing.assert_array_equal(np.stack(player.seen)[:, LM:], np.stack(want)[:, LM:])
    assert np.stack(want)[:, LM + 8].sum() >= 3  # the hero did walk


@pytest.mark.parametrize("variant", ["gat_moe", "mlp_single"])
def test_the_model_reads_the_columns_only_when_asked(variant):
    state, crop, atoms = random_inputs()
    other = state.clone()
    other[:, LM:] = torch.rand(len(state), F.STATE_DIM - LM) * 3
    torch.manual_seed(0)
    off = build_model(make_config("s500", [f"model.variant={variant}"]).model, FeatureSpec(), 23)
    assert off.encoder.state_mlp[0].in_features == F.BASE_STATE_DIM  # old checkpoints load
    a, b = off(state, crop, atoms), off(other, crop, atoms)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.value, b.value)
    torch.manual_seed(0)
    cfg = make_config("s500", [f"model.variant={variant}", "model.last_move_inputs=true"])
    on = build_model(cfg.model, FeatureSpec(), 23)
    assert on.encoder.state_mlp[0].in_features == F.LAST_MOVE_DIM
    still = other.clone()
    still[:, F.LAST_MOVE_DIM] += 1.0  # still_steps: read only with model.still_inputs
    assert torch.equal(on(other, crop, atoms).logits, on(still, crop, atoms).logits)
    torch.manual_seed(0)
    more = [f"model.variant={variant}", "model.last_move_inputs=true", "model.still_inputs=true"]
    with_still = build_model(make_config("s500", more).model, FeatureSpec(), 23)
    assert with_still.encoder.state_mlp[0].in_features == F.LAST_MOVE_DIM + 1 == F.LAST_ACTION
    assert not torch.allclose(
        with_still(other, crop, atoms).logits, with_still(still, crop, atoms).logits
    )
    acted = still.clone()
    acted[:, F.LAST_ACTION + SEARCH_ACTION] += 1.0  # last_action_*: only with model.action_inputs
    assert torch.equal(with_still(still, crop, atoms).logits, with_still(acted, crop, atoms).logits)
    torch.manual_seed(0)
    with_acts = build_model(
        make_config("s500", [*more, "model.action_inputs=true"]).model, FeatureSpec(), 23
    )
    assert with_acts.encoder.state_mlp[0].in_features == F.STATE_DIM
    assert not torch.allclose(
        with_acts(still, crop, atoms).logits, with_acts(acted, crop, atoms).logits
    )
    assert not torch.allclose(on(state, crop, atoms).logits, on(other, crop, atoms).logits)
    # the weights of the memory columns learn
    out = on(other, crop, atoms)
    (out.logits.logsumexp(-1).sum() + out.value.sum()).backward()
    grad = on.encoder.state_mlp[0].weight.grad
    assert grad is not None and grad[:, LM:].abs().sum() > 0


def test_still_inputs_without_last_move_inputs_are_refused():
    with pytest.raises(ValueError, match="still_inputs: needs last_move_inputs=true"):
        make_config("s500", ["model.still_inputs=true"])
    with pytest.raises(ValueError, match="action_inputs: needs still_inputs=true"):
        make_config("s500", ["model.last_move_inputs=true", "model.action_inputs=true"])


def test_the_action_slots_are_the_task_actions():
    assert F.N_LAST_ACTIONS == N_TASK_ACTIONS
    np.testing.assert_array_equal(task_slots(TASK_ACTIONS), np.arange(N_TASK_ACTIONS))
    assert task_slots([TASK_ACTIONS[5], nh.actions.Command.PRAY]).tolist() == [5, -1]
