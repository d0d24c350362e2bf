"""Baselines as players (random, hint follower), ``evaluate --baseline``, and the routing a
checkpoint is evaluated with."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nethack_moe import cli
from nethack_moe import features as F
from nethack_moe.config.train import make_config
from nethack_moe.evaluation.evaluate import evaluate
from nethack_moe.evaluation.loading import checkpoint_routing, load_policy
from nethack_moe.evaluation.players import (
    HINT_COLUMNS,
    HintFollower,
    RandomPlayer,
    hint_actions,
    zero_hint,
)
from nethack_moe.game.actions import MORE_ACTION, SEARCH_ACTION, WAIT_ACTION
from nethack_moe.models.acting import Obs
from nethack_moe.models.policy import build_model
from nethack_moe.runs.checkpoint import CheckpointPayload, save_checkpoint

RECORD_KEYS = {"seed", "score", "reward", "length", "depth", "died"}


def _obs(nav: list[int], atoms: dict[int, str] | None = None) -> Obs:
    """A batch with hint entry ``nav[i]`` (-1: none) in row i and the named atoms set."""
    n = len(nav)
    state = torch.zeros(n, F.STATE_DIM)
    for i, k in enumerate(nav):
        if k >= 0:
            state[i, F.NAV_ONEHOT + k] = 1.0
    at = torch.zeros(n, F.N_ATOMS, dtype=torch.bool)
    for i, name in (atoms or {}).items():
        at[i, F.ATOM_INDEX[name]] = True
    return Obs(state, torch.zeros(n, 9, 9, dtype=torch.int16), at)


# ------------------------------------------------------------------------------ players
def test_hint_follower_rules():
    p = HintFollower(random_share=0.0)
    for s in range(6):
        p.start_episode(s, 100000 + s)
    obs = _obs([0, 3, 8, -1, 2, 5], {4: "more_prompt", 5: "question_prompt"})
    a = p.choose(obs).action
    # N, W, '>' on the stairs (the hint's 9th entry), SEARCH without a hint, prompts answered
    assert a.tolist() == [1, 4, 18, SEARCH_ACTION, MORE_ACTION, WAIT_ACTION]
    assert hint_actions(obs.state.numpy()).tolist() == [1, 4, 18, -1, 3, 6]


def test_hint_follower_random_moves_are_seeded_per_episode():
    def run(seed: int, slot: int) -> np.ndarray:
        p = HintFollower()
        p.start_episode(slot, seed)
        obs = _obs([1] * (slot + 1))
        return np.array([p.choose(obs).action[slot] for _ in range(2000)])

    a = run(100000, 0)
    assert np.array_equal(a, run(100000, 3))  # the slot does not matter, only the seed
    assert not np.array_equal(a, run(100001, 0))
    off = a != 2  # the hint says E (action 2)
    assert 0.02 < off.mean() < 0.08  # about 5 % random moves (1/8 of them happen to be E)
    assert set(a[off].tolist()) <= set(range(1, 9))


def test_random_player_is_uniform_and_seeded():
    p = RandomPlayer(23)
    p.start_episode(0, 7)
    p.start_episode(1, None)  # an idle slot
    acts = np.array([p.choose(_obs([-1, -1])).action for _ in range(4600)])
    assert set(acts[:, 1].tolist()) == {0}
    counts = np.bincount(acts[:, 0], minlength=23)
    assert counts.min() > 140 and counts.max() < 260
    q = RandomPlayer(23)
    q.start_episode(0, 7)
    assert np.array_equal(acts[:50, 0], [q.choose(_obs([-1])).action[0] for _ in range(50)])


def test_zero_hint_clears_only_the_hint_columns():
    obs = Obs(torch.ones(2, F.STATE_DIM), torch.zeros(2, 9, 9), torch.zeros(2, F.N_ATOMS))
    z = zero_hint(obs)
    assert z.state[:, HINT_COLUMNS].abs().sum() == 0
    keep = np.setdiff1d(np.arange(F.STATE_DIM), HINT_COLUMNS)
    assert torch.all(z.state[:, keep] == 1) and torch.all(obs.state == 1)
    assert {F.STATE_NAMES[i] for i in HINT_COLUMNS} >= {"nav_0", "nav_8", "nav_dist"}


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_baselines_write_the_checkpoint_format_on_the_same_seeds(tmp_path):
    out = tmp_path / "b.json"
    res = evaluate([], episodes=3, num_envs=2, workers=0, out=out, max_steps=40,
                   baselines=["random", "hint-follower"])  # fmt: skip
    data = json.loads(out.read_text())
    assert data["protocol"] == "E3-40steps" and data["max_steps"] == 40
    assert list(data["checkpoints"]) == ["random", "hint-follower"]
    for name, entry in data["checkpoints"].items():
        assert entry["player"] == name and entry["path"] is None
        assert [e["seed"] for e in entry["episodes"]] == [100000, 100001, 100002]
        for e in entry["episodes"]:
            assert RECORD_KEYS <= set(e) and 1 <= e["length"] <= 40
        s = entry["summary"]
        for k in ("n", "mean", "median", "iqm", "ci_mean", "ci_iqm", "died", "depth", "hint"):
            assert k in s, k
        assert "routing" not in s
    follow = data["checkpoints"]["hint-follower"]["summary"]["hint"]["follow_share"]
    rand = data["checkpoints"]["random"]["summary"]["hint"]["follow_share"]
    assert follow > 0.8 and rand < 0.3
    # the same games whatever the number of envs
    again = evaluate(
        [], episodes=3, num_envs=3, workers=0, max_steps=40, baselines=["hint-follower"]
    )
    assert (
        again["checkpoints"]["hint-follower"]["episodes"]
        == res["checkpoints"]["hint-follower"]["episodes"]
    )


def test_cli_evaluate_baseline(tmp_path, capsys):
    out = tmp_path / "cli.json"
    argv = ["evaluate", "--baseline", "hint-follower", "--baseline", "random", "--episodes", "2",
            "--max-steps", "15", "--workers", "0", "--num-envs", "2", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "hint-follower — baseline" in text and "side by side" in text and "hinted move" in text
    assert set(json.loads(out.read_text())["checkpoints"]) == {"random", "hint-follower"}
    assert cli.main(["evaluate", "--episodes", "2"]) == 2
    assert "--baseline" in capsys.readouterr().err


# ------------------------------------------------------------------------------ routing of a checkpoint
def test_checkpoint_routing_prefers_the_trainer_entry_over_the_curriculum():
    cfg = make_config("s500")
    # episode 1,004: the count after the last warmup rollout, already inside the transition phase
    old = {"counters": {"episodes": 1004}}
    r = checkpoint_routing(CheckpointPayload.from_dict(old), cfg)
    assert r.source == "curriculum" and r.kind == cfg.curriculum.phase_at(1004).routing
    new = {**old, "routing": {"kind": "softmax", "temperature": 1.0}}
    r = checkpoint_routing(CheckpointPayload.from_dict(new), cfg)
    assert (r.kind, r.temperature, r.source) == ("softmax", 1.0, "checkpoint")


def test_load_policy_uses_the_routing_the_checkpoint_was_trained_with(tmp_path):
    cfg = make_config("smoke")
    model = build_model(cfg.model, F.FeatureSpec(crop_size=cfg.env.crop_size), 23)
    payload = {"config": cfg.to_dict(), "model": model.state_dict(), "n_actions": 23,
               "counters": {"episodes": 10**6}, "routing": {"kind": "entmax15", "temperature": 0.7}}  # fmt: skip
    save_checkpoint(tmp_path / "c.pt", payload)
    m, _, _ = load_policy(tmp_path / "c.pt")
    assert (m.cfg.routing, m.cfg.temperature) == ("entmax15", 0.7)
    m, _, _ = load_policy(tmp_path / "c.pt", routing="softmax", temperature=2.0)
    assert (m.cfg.routing, m.cfg.temperature) == ("softmax", 2.0)
    del payload["routing"]
    save_checkpoint(tmp_path / "old.pt", payload)
    m, _, _ = load_policy(tmp_path / "old.pt")
    last = cfg.curriculum.phase_at(10**6)
    assert m.cfg.routing == last.routing
    assert m.cfg.temperature == pytest.approx(cfg.curriculum.temperature_at(10**6))
