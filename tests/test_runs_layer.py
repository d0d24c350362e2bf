"""The runs layer's typed records (issue 20): the checkpoint payload, the metrics.jsonl records and
the run directory's paths give back exactly what is on disk."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from nethack_moe.runs import records
from nethack_moe.runs.checkpoint import (
    CheckpointError,
    CheckpointPayload,
    Counters,
    check_model_compat,
    load_checkpoint,
    load_payload,
    save_checkpoint,
)
from nethack_moe.runs.metrics_io import load_run
from nethack_moe.runs.rundir import RunDir, RunDirExists

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "s500_final.pt"


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


def test_the_shipped_checkpoint_round_trips_to_the_same_dict_in_the_same_order():
    raw = load_checkpoint(SHIPPED)
    payload = CheckpointPayload.from_dict(raw)
    again = {"format": raw["format"], "format_version": raw["format_version"], **payload.to_dict()}
    assert _same(again, raw)
    assert payload.extra == {} and payload.world_size is None and payload.ranks is None
    assert payload.counters == Counters(**raw["counters"]) and payload.episodes == 5002


def test_a_saved_payload_loads_back_equal(tmp_path):
    p = CheckpointPayload(config={"model": {}}, counters=Counters(episodes=3, updates=2),
                          routing={"kind": "softmax", "temperature": 1.0}, metrics_offset=10)  # fmt: skip
    save_checkpoint(tmp_path / "c.pt", p)
    back = load_payload(tmp_path / "c.pt")
    assert back == p
    assert list(load_checkpoint(tmp_path / "c.pt"))[-1] == "metrics_offset"


def test_an_old_checkpoint_keeps_the_defaults_of_what_it_lacks():
    p = CheckpointPayload.from_dict({"format": "x", "counters": {"episodes": 7}, "other": 1})
    assert p.routing is None and p.pending is None and p.config is None and p.n_actions is None
    assert p.counters == Counters(episodes=7) and p.extra == {"other": 1}


def test_one_config_comparison_for_the_model():
    model = {"hidden": 64, "conv_channels": [16, 32]}
    old = CheckpointPayload(config={"model": {"hidden": 64, "conv_channels": (16, 32)}})
    with pytest.raises(CheckpointError, match="hidden: checkpoint 64 vs requested 128"):
        check_model_compat(old, {**model, "hidden": 128}, "x.pt")


def test_the_rank_state_of_a_torchrun_checkpoint():
    p = CheckpointPayload(rng={"r": 0}, world_size=2, ranks=[{"rng": {"r": 0}}, {"rng": {"r": 1}}])
    assert p.rank_state(1).rng == {"r": 1} and p.rank_state(0).rng == {"r": 0}
    assert CheckpointPayload().rank_state(1) == CheckpointPayload()


@pytest.mark.parametrize("name", ["s500", "ablations/gat_moe_ks_s1"])
def test_every_committed_metrics_record_round_trips_byte_for_byte(name):
    with gzip.open(ROOT / "docs" / name / "metrics.jsonl.gz", "rt") as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    types = set()
    for line in lines:
        raw = json.loads(line)
        rec = records.from_json(raw)
        assert rec is not None
        types.add(rec.TYPE)
        assert json.dumps(rec.to_json(), separators=(",", ":")) == line
    assert {"run_start", "episode", "update", "checkpoint"} <= types


def test_an_update_record_sorts_its_keys_into_groups():
    raw = {"type": "update", "update": 3, "episode": 9, "loss/policy": 0.5, "teacher/agree": 0.25,
           "approx_kl": 0.01, "routing/mi": 0.2, "routing/usage": [0.5, 0.5], "sps": 10.0,
           "time/env": 1.0, "wall": 5.0, "novel": 1}  # fmt: skip
    rec = records.UpdateLine.from_json(raw)
    assert rec.losses == {"policy": 0.5} and rec.teacher == {"agree": 0.25}
    assert rec.routing_figures == {"mi": 0.2, "usage": [0.5, 0.5]} and rec.times == {"env": 1.0}
    assert rec.routing_value("mi") == 0.2 and rec.extra == {"novel": 1}
    old = records.UpdateLine.from_json({"type": "update", "routing/routing_mi": 0.3})
    assert old.routing_value("mi") == 0.3 and old.lr is None


def test_events_keep_their_fields_in_order():
    ev = records.event_line("resumed", episode=4, **{"from": "x.pt"})
    assert list(ev.to_json()) == ["type", "kind", "episode", "from"]
    assert records.EventLine.from_json(ev.to_json()) == ev and ev.get("from") == "x.pt"


def test_the_accessors_of_update_and_event_records():
    up = records.UpdateLine.from_json({"type": "update", "loss/total": 0.1, "time/env": 2.0})
    assert (up.loss("total"), up.loss("teacher"), up.time("env"), up.time("learning")) == (
        0.1, None, 2.0, None)  # fmt: skip
    ev = records.event_line("worker_restart", episode=3, dropped_total=5, count=2)
    assert (ev.count, ev.dropped_total) == (2, 5)
    bare = records.event_line("dropped_episode", count="x")
    assert (bare.count, bare.dropped_total) == (1, None)


def test_load_run_reads_typed_records_old_lines_and_unknown_types(tmp_path):
    lines = [
        {"type": "run_start", "config": {"curriculum": {}}, "wall": 0.0},
        {"type": "episode", "episode": 1, "score": 3},  # an old record: no phase, no depth
        {"type": "update", "update": 1, "episode": 1, "routing/routing_mi": 0.4},
        {"type": "checkpoint", "episode": 1, "path": "checkpoints/ep_000001.pt"},
        {"type": "event", "kind": "resumed", "episode": 1, "from": "x.pt"},
        {"type": "someday", "what": 1},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    run = load_run(tmp_path)
    (ep,), (up,), (ck,), (ev,) = run.episodes, run.updates, run.checkpoints, run.events
    assert isinstance(ep, records.EpisodeLine) and (ep.score, ep.phase, ep.depth) == (3, None, None)
    assert up.routing_value("mi") == 0.4 and ck.kind is None and ev.get("from") == "x.pt"
    assert run.run_start is not None and run.config == {"curriculum": {}}
    assert [r["type"] for r in run.records][-1] == "someday" and [p.name for p in run.phases] == [
        "?"
    ]


def test_the_run_directory_layout(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config == tmp_path / "r" / "config.yaml"
    assert run.metrics == tmp_path / "r" / "metrics.jsonl"
    assert run.periodic(500) == tmp_path / "r" / "checkpoints" / "ep_000500.pt"
    assert (run.final.name, run.best.name, run.tensorboard.name) == ("final.pt", "best.pt", "tb")
    assert run.eval_file("final", "E200", greedy=True) == run.eval_dir / "final_E200_greedy.json"
    assert run.analysis_dir("final") == tmp_path / "r" / "analysis" / "final"
    loose = tmp_path / "elsewhere" / "x.pt"
    assert RunDir.of_checkpoint(run.final) == run and RunDir.of_checkpoint(loose) is None
    assert RunDir.owner_dir(loose) == loose.parent and RunDir.owner_dir(run.best) == run.path
    run.prepare_fresh(overwrite=False)
    for ep in (500, 1000):
        run.periodic(ep).write_bytes(b"")
    run.best.write_bytes(b"")
    assert run.periodic_checkpoints() == [run.periodic(500), run.periodic(1000)]
    assert run.best not in run.resumable_checkpoints()
    with pytest.raises(RunDirExists):
        run.prepare_fresh(overwrite=False)
    run.prepare_fresh(overwrite=True)
    assert run.checkpoint_files() == []


def test_continuing_into_a_new_run_carries_the_metrics_up_to_the_offset(tmp_path):
    src, dst = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    src.make()
    src.metrics.write_bytes(b'{"type":"episode"}\n{"type":"upd')
    dst.continue_from(src, offset=19)
    assert dst.metrics.read_bytes() == b'{"type":"episode"}\n'
    src.continue_from(src, offset=None)  # in place: the torn line dropped
    assert src.metrics.read_bytes() == b'{"type":"episode"}\n'
