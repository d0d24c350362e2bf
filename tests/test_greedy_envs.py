"""DAgger rows for kickstarting (``ppo.greedy_envs``): the last envs act by argmax while the
teacher term is on; their rows enter only the teacher and routing terms, their episodes are
logged apart from the training score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_kickstart import PHASES, _cfg
from test_train import _records

from nethack_moe.config.train import make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.features import FeatureSpec
from nethack_moe.ppo import collector as collector_mod
from nethack_moe.ppo.loss import LossBatch, ppo_loss
from nethack_moe.ppo.storage import RolloutStorage
from nethack_moe.ppo.trainer import Trainer, TrainingInterrupted
from nethack_moe.runs.checkpoint import load_payload
from nethack_moe.runs.metrics_io import load_run

PPO_TERMS = ("policy", "value", "entropy", "approx_kl", "clip_frac")


def _out(logits: torch.Tensor, value: torch.Tensor):
    out = type("Out", (), {})()
    out.logits, out.value = logits, value
    M = logits.shape[0]
    out.alpha = torch.softmax(logits[:, :2], -1)
    out.expert_logits = logits[:, None].expand(M, 2, logits.shape[1])
    return out


def _batch(M: int, greedy: torch.Tensor | None, rows: slice = slice(None)) -> LossBatch:
    g = torch.Generator().manual_seed(1)
    cols = [
        torch.randint(0, 5, (M,), generator=g),  # actions
        -torch.rand(M, generator=g) - 1.0,  # old log-probs
        torch.randn(M, generator=g),  # old values
        torch.randn(M, generator=g) * 3,  # advantages
        torch.randn(M, generator=g),  # returns
    ]
    teacher = torch.randint(0, 5, (M,), generator=g)
    return LossBatch(*(c[rows] for c in cols), None, teacher[rows],
                     None if greedy is None else greedy[rows])  # fmt: skip


@pytest.mark.parametrize("clip_vloss", [True, False])
def test_greedy_rows_leave_ppos_terms_and_enter_the_teachers(clip_vloss):
    M = 8
    torch.manual_seed(0)
    logits = torch.randn(M, 5, requires_grad=True)
    value = torch.randn(M, requires_grad=True)
    greedy = torch.tensor([False, True, False, False, True, False, False, True])
    keep = (~greedy).nonzero().squeeze(1)
    _, masked = ppo_loss(_out(logits, value), _batch(M, greedy), {}, 0.2, 0.5, clip_vloss, True)
    sub = LossBatch(*(getattr(_batch(M, None), f)[keep] for f in
                      ("actions", "old_logp", "old_values", "advantages", "returns")))  # fmt: skip
    _, alone = ppo_loss(_out(logits[keep], value[keep]), sub, {}, 0.2, 0.5, clip_vloss, True)
    for k in PPO_TERMS:  # PPO's terms: the sampled rows alone
        assert float(masked[k].detach()) == pytest.approx(float(alone[k].detach()), rel=1e-5), k
    _, plain = ppo_loss(_out(logits, value), _batch(M, None), {}, 0.2, 0.5, clip_vloss, True)
    assert float(masked["teacher"].detach()) == pytest.approx(float(plain["teacher"].detach()))
    assert float(masked["policy"].detach()) != pytest.approx(float(plain["policy"].detach()))


def test_greedy_rows_get_gradient_from_the_teacher_term_only():
    M = 6
    greedy = torch.tensor([False, False, False, False, True, True])
    for coef, moved in ((0.0, False), (0.5, True)):
        logits = torch.randn(M, 5, requires_grad=True)
        value = torch.randn(M, requires_grad=True)
        total, _ = ppo_loss(_out(logits, value), _batch(M, greedy), {"teacher": coef,
                            "entropy": 0.01}, 0.2, 0.5, True, True)  # fmt: skip
        total.backward()
        assert logits.grad is not None and value.grad is not None
        # logits[:, :2] feed the (test) router's alpha; alpha terms are off here
        assert bool(logits.grad[greedy].abs().sum() > 0) == moved
        assert float(value.grad[greedy].abs().sum()) == 0.0
        assert float(logits.grad[~greedy].abs().sum()) > 0


def test_greedy_envs_are_checked():
    with pytest.raises(ConfigError, match="needs a teacher term"):
        make_config("smoke", ["ppo.greedy_envs=1"])
    with pytest.raises(ConfigError, match=r"ppo.greedy_envs=4 must be in \[0, ppo.num_envs=4\)"):
        make_config("smoke", ["env.teacher=true", PHASES, "ppo.greedy_envs=4"])


def test_a_checkpoint_without_greedy_rows_loads_as_none_greedy():
    st = RolloutStorage(2, 3, FeatureSpec(), 4, torch.device("cpu"))
    st.greedy.fill_(True)
    arrays = st.arrays()
    del arrays["greedy"]
    st.load_arrays(arrays)
    assert not bool(st.greedy.any()) and st.flat().greedy is None


@pytest.fixture(scope="module")
def greedy_run(tmp_path_factory) -> tuple[Path, list]:
    tmp = tmp_path_factory.mktemp("greedy")
    calls: list = []
    real = collector_mod.act

    def spy(model, obs, routing, temperature, noise=None, **kw):
        res = real(model, obs, routing, temperature, noise=noise, **kw)
        calls.append((noise.clone(), res.out.logits.detach().clone(), res.action.clone()))
        return res

    mp = pytest.MonkeyPatch()
    mp.setattr(collector_mod, "act", spy)
    try:
        Trainer(_cfg(tmp, "greedy", "ppo.greedy_envs=1")).run()
    finally:
        mp.undo()
    return tmp / "greedy", calls


def test_the_last_env_acts_by_argmax_while_the_teacher_term_is_on(greedy_run):
    _, calls = greedy_run
    last = [(n, lg, a) for n, lg, a in calls if n.shape[0] == 2]  # groups of 2: envs 2-3
    greedy = [(lg, a) for n, lg, a in last if bool((n[-1] == 0).all())]
    sampled = [n for n, _, _ in last if not bool((n[-1] == 0).all())]
    assert greedy and sampled  # greedy while λ > 0, sampled again in fine-tune (λ = 0)
    for lg, a in greedy:
        assert int(a[-1]) == int(lg[-1].argmax())
    assert all(bool((n[0] != 0).any()) for n, _, _ in last)  # env 2 always samples


def test_greedy_episodes_are_logged_apart(greedy_run):
    run_dir, _ = greedy_run
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    eps = [r for r in recs if r["type"] == "episode"]
    g = [r for r in eps if r.get("greedy")]
    assert g and all(r["env_index"] == 3 and r["phase"] != "finetune" for r in g)
    assert any(r["env_index"] == 3 and not r.get("greedy") for r in eps)  # λ = 0: sampled
    ups = [r for r in recs if r["type"] == "update"]
    assert any("teacher/agree_greedy" in r for r in ups if r["teacher/coef"] > 0)
    mixed = 0  # checkpoints whose last 4 episodes include greedy ones
    for path in sorted((run_dir / "checkpoints").glob("ep_*.pt")):
        ck = load_payload(path)
        done = [r for r in eps if r["episode"] <= ck.counters.episodes]
        mixed += any(r.get("greedy") for r in done[-4:])
        sampled = [float(r["score"]) for r in done if not r.get("greedy")]
        assert ck.recent_scores == sampled[-4:], path.name  # best.pt's window: sampled only
    assert mixed
    data = load_run(run_dir)
    assert len(data.greedy_episodes) == len(g)
    assert not any(e.greedy for e in data.episodes)
    assert len(data.episodes) + len(data.greedy_episodes) == len(eps)


# ------------------------------------------------------------------ ppo.greedy_refresh
#: Fine-tune from episode 10: the checkpoint at episode 8 (update 5) falls between two copies.
FROZEN = (PHASES.replace("start_episode: 8", "start_episode: 10"), "ppo.greedy_envs=1",
          "ppo.greedy_refresh=2")  # fmt: skip


def test_greedy_refresh_is_checked():
    with pytest.raises(ConfigError, match="ppo.greedy_refresh=2 must be >= 0, and > 0 only with"):
        make_config("smoke", ["env.teacher=true", PHASES, "ppo.greedy_refresh=2"])
    with pytest.raises(ConfigError, match="ppo.greedy_refresh=-1"):
        make_config("smoke", ["env.teacher=true", PHASES, "ppo.greedy_envs=1",
                              "ppo.greedy_refresh=-1"])  # fmt: skip


def _digest(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory) -> tuple[Path, list, list]:
    """A run whose greedy env plays a frozen copy taken every 2 updates: every ``act`` call
    (``frozen``: the copy's, no noise), every action ``_act`` returned, and per rollout the
    update count with the live and the frozen parameters."""
    tmp = tmp_path_factory.mktemp("frozen")
    calls: list = []
    rollouts: list = []
    real_act, real_step, real_refresh = (collector_mod.act, collector_mod.Collector._act,
                                         collector_mod.Collector._refresh_greedy_policy)  # fmt: skip

    def spy(model, obs, routing, temperature, noise=None, **kw):
        res = real_act(model, obs, routing, temperature, noise=noise, **kw)
        calls.append(("frozen" if noise is None else "live", res.out.logits.detach().clone(),
                      res.action.clone()))  # fmt: skip
        return res

    def step(self, t, lo, hi, ctx):
        actions = real_step(self, t, lo, hi, ctx)
        calls.append(("returned", lo, actions.copy()))
        return actions

    def refresh(self):
        real_refresh(self)
        rollouts.append((self.C.updates, _digest(self.acting_model), _digest(self.greedy_policy)))

    mp = pytest.MonkeyPatch()
    mp.setattr(collector_mod, "act", spy)
    mp.setattr(collector_mod.Collector, "_act", step)
    mp.setattr(collector_mod.Collector, "_refresh_greedy_policy", refresh)
    try:
        Trainer(_cfg(tmp, "frozen", *FROZEN)).run()
    finally:
        mp.undo()
    return tmp, calls, rollouts


def test_the_greedy_env_plays_the_frozen_copys_argmax(frozen_run):
    _, calls, _ = frozen_run
    played, differs = 0, 0
    for i, c in enumerate(calls):
        if c[0] != "frozen":
            continue
        live, ret = calls[i - 1], calls[i + 1]  # the group's live call, then what _act returned
        assert live[0] == "live" and ret[0] == "returned" and c[1].shape[0] == 1  # env 3 alone
        assert int(ret[2][-1]) == int(c[1][0].argmax()) == int(c[2][0])
        differs += int(live[1][-1].argmax()) != int(c[2][0])
        played += 1
    assert played and differs  # the copy's argmax, not the live policy's


def test_the_frozen_copy_is_taken_every_2_updates(frozen_run):
    _, _, rollouts = frozen_run
    taken: dict[float, int] = {}  # frozen parameters -> the update they were taken at
    for updates, live, frozen in rollouts:
        if frozen == live and frozen not in taken:
            taken[frozen] = updates
        assert frozen in taken and updates - taken[frozen] < 2
    assert len(taken) >= 3 and len(taken) < len({live for _, live, _ in rollouts})


def test_a_run_with_a_frozen_copy_resumes_exactly(frozen_run, tmp_path):
    tmp, _, _ = frozen_run
    cut = _cfg(tmp_path, "frozen", *FROZEN)
    with pytest.raises(TrainingInterrupted):
        Trainer(cut, stop_after_updates=5).run()
    ck = load_payload(sorted((tmp_path / "frozen" / "checkpoints").glob("ep_*.pt"))[-1])
    assert ck.counters.episodes == 8 and ck.greedy_policy is not None
    assert ck.greedy_policy["updates"] == ck.counters.updates - 1  # taken at the update before
    Trainer(cut, resume=tmp_path / "frozen").run()
    assert _records(tmp_path / "frozen") == _records(tmp / "frozen")
    a, b = (load_payload(d / "frozen" / "checkpoints" / "final.pt").greedy_policy
            for d in (tmp, tmp_path))  # fmt: skip
    assert a is not None and b is not None and a["updates"] == b["updates"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
