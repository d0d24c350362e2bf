"""Kickstarting (issue 18, part 2): the teacher term of the loss, its coefficient schedule, the
teacher's advice carried by the rollout storage, and a smoke run that resumes exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_train import _records  # the records without wall-clock fields

from nethack_moe.config.train import make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.ppo.loss import LossBatch, ppo_loss, teacher_term
from nethack_moe.ppo.trainer import Trainer, TrainingInterrupted
from nethack_moe.runs.checkpoint import load_checkpoint

KS = ["env.teacher=true"]
PHASES = (
    "curriculum.phases=["
    "{name: warmup, start_episode: 0, routing: softmax, lr: 1.0e-3, teacher: [2.0, 1.0]},"
    "{name: transition, start_episode: 4, routing: sparsemax, temperature: [1.0, 0.5], lr: 5.0e-4, teacher: [1.0, 0.0]},"
    "{name: finetune, start_episode: 8, routing: sparsemax, temperature: [0.5, 0.5], lr: 1.0e-4}]"
)


def _cfg(tmp: Path, name: str, *extra: str):
    return make_config(
        "smoke",
        [f"run.out_dir={tmp}", f"run.name={name}", "run.num_workers=1", "run.device=cpu", *KS, PHASES,
         *extra],
    )  # fmt: skip


def test_teacher_term_by_hand():
    # 3 rows, 3 actions; row 1 has no advice. CE = -(log p0[2] + log p2[0]) / 2
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    logp = torch.log_softmax(logits, -1)
    a = torch.tensor([2, -1, 0])
    z0 = math.log(1 + math.e + math.e**2)
    z2 = math.log(2 * math.e + 1)
    want = ((z0 - 2.0) + (z2 - 1.0)) / 2
    assert float(teacher_term(logp, a)) == pytest.approx(want)
    assert float(teacher_term(logp, torch.tensor([-1, -1, -1]))) == 0.0
    assert float(teacher_term(logp, None)) == 0.0


def test_teacher_term_enters_the_total_with_its_coefficient_and_pulls_toward_the_teacher():
    torch.manual_seed(0)
    logits = torch.randn(4, 5, requires_grad=True)
    out = type("Out", (), {})()
    out.logits, out.value = logits, torch.zeros(4)
    out.alpha = torch.full((4, 2), 0.5)
    out.expert_logits = logits[:, None].expand(4, 2, 5)
    z = torch.zeros(4)
    a = torch.tensor([1, 2, 3, 4])
    batch = LossBatch(torch.zeros(4, dtype=torch.long), torch.log_softmax(logits, -1)[:, 0].detach(),
                      z, z, z, None, a)  # fmt: skip
    t0, terms0 = ppo_loss(out, batch, {}, 0.2, 0.5, False, False)
    t1, terms1 = ppo_loss(out, batch, {"teacher": 0.7}, 0.2, 0.5, False, False)
    assert float((t1 - t0).detach()) == pytest.approx(0.7 * float(terms1["teacher"]))
    t1.backward()
    g = logits.grad
    assert g is not None
    # minimizing moves mass toward the teacher's action: its logit's gradient is negative
    assert all(float(g[i, a[i]]) < 0 for i in range(4))


def test_a_teacher_term_without_the_teacher_is_refused():
    with pytest.raises(ConfigError, match="needs env.teacher=true"):
        make_config("smoke", [PHASES])


def test_kickstart_preset_anneals_to_zero_and_turns_the_teacher_on():
    cfg = make_config("kickstart")
    c = cfg.curriculum
    assert cfg.env.teacher and c.teacher_at(0) == 1.0 and c.teacher_at(1000) == 0.5
    assert c.teacher_at(2000) == pytest.approx(0.25) and c.teacher_at(3000) == 0.0
    s500 = make_config("s500").to_dict()
    ks = cfg.to_dict()
    for section in ("model", "ppo"):
        assert ks[section] == s500[section]
    assert {k: v for k, v in ks["env"].items() if k != "teacher"} == {
        k: v for k, v in s500["env"].items() if k != "teacher"
    }


@pytest.fixture(scope="module")
def ks_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ks")
    Trainer(_cfg(tmp, "full")).run()
    return tmp


def test_smoke_kickstart_logs_the_term_and_the_agreement(ks_run):
    recs = [json.loads(x) for x in (ks_run / "full" / "metrics.jsonl").read_text().splitlines()]
    ups = [r for r in recs if r["type"] == "update"]
    assert ups and all(r["loss/teacher"] is not None and r["loss/teacher"] > 0 for r in ups)
    assert all(0.0 <= r["teacher/agree"] <= 1.0 for r in ups)
    assert any(k.startswith("teacher/agree/") for k in ups[0])
    coefs = [r["teacher/coef"] for r in ups]
    assert coefs[0] == pytest.approx(2.0) and coefs[-1] == 0.0
    assert coefs == sorted(coefs, reverse=True)
    ck = load_checkpoint(ks_run / "full" / "checkpoints" / "final.pt")
    assert ck["config"]["env"]["teacher"] is True


def test_kickstart_resumes_exactly_under_overlap(ks_run, tmp_path):
    cut = _cfg(tmp_path, "cut")
    with pytest.raises(TrainingInterrupted):
        Trainer(cut, stop_after_updates=5).run()
    ck = load_checkpoint(sorted((tmp_path / "cut" / "checkpoints").glob("ep_*.pt"))[-1])
    pend = ck["pending"]
    assert pend is not None and (pend["storage"]["teacher_actions"] >= 0).any()
    Trainer(cut, resume=tmp_path / "cut").run()
    assert _records(tmp_path / "cut") == _records(ks_run / "full")


def test_the_teacher_term_changes_what_is_learned(ks_run, tmp_path):
    """Same seeds without the term (λ = 0, teacher still computed): other updates."""
    zero = PHASES.replace("teacher: [2.0, 1.0]", "teacher: [0.0, 0.0]").replace(
        "teacher: [1.0, 0.0]", "teacher: [0.0, 0.0]"
    )
    Trainer(_cfg(tmp_path, "zero", zero)).run()
    a = [r for r in _records(ks_run / "full") if "loss/teacher" in r]
    b = [r for r in _records(tmp_path / "zero") if "loss/teacher" in r]
    assert a[0]["teacher/agree"] == b[0]["teacher/agree"]  # the same first rollout
    assert a[0]["loss/teacher"] != b[0]["loss/teacher"]  # learned differently from it
    assert a[-1]["loss/policy"] != b[-1]["loss/policy"]
