"""Fault 4: NaN / Inf in a loss term or in the gradients, injected into the real trainer (through
the CLI, in this process) by wrapping the real ``ppo_loss``.

Update 2: an Inf loss whose terms look finite -> the gradients are not finite. Updates 4, 5, 6: a NaN
/ Inf value loss. Each bad update is skipped (no optimizer step) and logged with the offending term;
``run.max_nonfinite=3`` bad updates in a row stop the run with a checkpoint and an error naming the
term (exit 1)."""

from __future__ import annotations

import math

import torch
from rel_helpers import events, records, train_args

import nethack_moe.ppo.storage as storage_mod
import nethack_moe.ppo.update as update_mod
from nethack_moe import cli
from nethack_moe.runs.checkpoint import load_checkpoint

NAN, INF = float("nan"), float("inf")


def test_nonfinite_updates_are_skipped_then_the_run_stops_naming_the_term(
    tmp_path, monkeypatch, capsys
):
    update = [0]  # number of the update in progress (compute_gae runs once per update)
    real_gae, real_loss = storage_mod.compute_gae, update_mod.ppo_loss

    def gae(*a, **k):
        update[0] += 1
        return real_gae(*a, **k)

    def loss_fn(*a, **k):
        loss, terms = real_loss(*a, **k)
        if update[0] == 2:
            return loss * INF, terms  # finite terms, infinite gradients
        if update[0] >= 4:
            bad = NAN if update[0] < 6 else INF
            terms = {**terms, "value": torch.tensor(bad)}
            return loss + bad, terms
        return loss, terms

    monkeypatch.setattr(storage_mod, "compute_gae", gae)
    monkeypatch.setattr(update_mod, "ppo_loss", loss_fn)
    out = tmp_path / "out"
    args = train_args(
        out, "run.num_workers=0", "run.max_nonfinite=3", "curriculum.total_episodes=400"
    )
    rc = cli.main(args)

    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("nethack-moe: ")
    assert "3 consecutive updates had non-finite values (last: value)" in err[0]
    run_dir = out / "smoke"
    assert f"stopped with a checkpoint in {run_dir / 'checkpoints'}" in err[0]

    recs = records(run_dir)
    skips = [(e["update"], e["term"]) for e in events(recs, "nonfinite_skip")]
    assert skips == [(2, "gradients"), (4, "value"), (5, "value"), (6, "value")]
    ups = {r["update"]: r for r in recs if r["type"] == "update"}
    assert sorted(ups) == [1, 2, 3, 4, 5, 6]
    assert [ups[u]["skipped"] for u in range(1, 7)] == [False, True, False, True, True, True]
    assert ups[5]["nonfinite_term"] == "value" and ups[5]["loss/value"] is None

    ck_path = run_dir / [r for r in recs if r["type"] == "checkpoint"][-1]["path"]
    ck = load_checkpoint(ck_path)
    c = ck["counters"]
    assert (c["updates"], c["nonfinite_streak"], c["nonfinite_total"]) == (6, 3, 4)
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    # only updates 1 and 3 stepped the optimizer (2 minibatches each): skipped updates changed nothing
    steps = {float(s["step"]) for s in ck["optimizer"]["state"].values()}
    assert steps == {4.0}
    assert not math.isnan(ups[3]["loss/value"])
