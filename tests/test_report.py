"""Report, metrics reader and compare on synthetic run directories (no NLE, no model)."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from nethack_moe.metrics.routing import routing_figures, scenario_table
from nethack_moe.metrics.scenarios import SCENARIOS
from nethack_moe.report import check_expectation, write_report
from nethack_moe.report.compare import compare
from nethack_moe.runs.metrics_io import load_run, read_metrics

PHASES = [
    {
        "name": "warmup",
        "start_episode": 0,
        "routing": "softmax",
        "temperature": [1.0, 1.0],
        "lr": 1e-4,
        "coefficients": {"entropy": 0.02},
    },
    {
        "name": "transition",
        "start_episode": 400,
        "routing": "sparsemax",
        "temperature": [1.0, 0.5],
        "lr": 5e-5,
        "coefficients": {"entropy": 0.02},
    },
    {
        "name": "finetune",
        "start_episode": 800,
        "routing": "sparsemax",
        "temperature": [0.5, 0.5],
        "lr": 1e-5,
        "coefficients": {"entropy": 0.01},
    },
]


def _phase_of(ep: int) -> str:
    return "warmup" if ep <= 400 else ("transition" if ep <= 800 else "finetune")


def make_run(root: Path, n_episodes: int = 1200, with_config: bool = True) -> Path:
    """A run directory with episode/update/checkpoint/event records and a torn last line."""
    rng = np.random.default_rng(123)
    run = root / "synthetic_run"
    (run / "checkpoints").mkdir(parents=True)
    recs: list[dict] = []
    config = {
        "name": "synthetic",
        "curriculum": {"total_episodes": 1200, "phases": PHASES},
        "expectations": {
            "final_phase_mean_score": ">= 0",
            "final_phase_alpha_entropy": "0.3..0.5",
            "final_phase_routing_mi": "<= -1",
            "nonsense_metric": ">= 1",
            "warmup_mean_score": 12,
        },
    }
    recs.append({"type": "run_start", "config": config, "wall": 0.0})
    boost = {"warmup": 0, "transition": 2, "finetune": 5}
    steps = 0
    upd = 0
    for ep in range(1, n_episodes + 1):
        ph = _phase_of(ep)
        score = int(rng.geometric(0.12)) - 1 + boost[ph] * int(rng.integers(0, 2))
        length = int(rng.integers(50, 501))
        steps += length
        recs.append(
            {
                "type": "episode",
                "episode": ep,
                "env_steps": steps,
                "score": score,
                "reward": float(score * 0.9 + rng.normal()),
                "length": length,
                "depth": int(1 + rng.integers(0, 3)),
                "died": bool(rng.random() < 0.3),
                "phase": ph,
                "temperature": 1.0,
                "routing": "softmax" if ph == "warmup" else "sparsemax",
                "seed_core": ep,
                "seed_disp": ep,
                "wall": ep * 0.5,
            }
        )
        if ep % 4 == 0:
            upd += 1
            h = {"warmup": 1.38, "transition": 0.9, "finetune": 0.7}[ph] + rng.normal(0, 0.01)
            mi = {"warmup": 0.001, "transition": 0.2, "finetune": 0.4}[ph] + rng.normal(0, 0.005)
            u = rng.dirichlet(np.ones(4) * 20).tolist()
            recs.append(
                {
                    "type": "update",
                    "update": upd,
                    "episode": ep,
                    "env_steps": steps,
                    "phase": ph,
                    "routing": "sparsemax",
                    "temperature": 0.5,
                    "lr": 1e-4,
                    "loss/total": 0.1,
                    "approx_kl": 0.01,
                    "clip_frac": 0.1,
                    "explained_var": 0.5,
                    "grad_norm": 1.0 + rng.random(),
                    "skipped": upd == 7,
                    "nonfinite_term": "loss/value" if upd == 7 else None,
                    "routing/alpha_entropy": float(h),
                    "routing/alpha_entropy_std": 0.01,
                    "routing/usage_entropy": float(h + mi),
                    "routing/mi": float(mi),
                    "routing/effective_experts": float(math.exp(h + mi)),
                    "routing/sparsity": 0.0 if ph == "warmup" else 0.4,
                    "routing/usage": u,
                    "routing/argmax_share": u,
                    "sps": 1000.0,
                    "wall": ep * 0.5,
                }
            )
        if ep % 400 == 0:
            recs.append(
                {
                    "type": "checkpoint",
                    "episode": ep,
                    "path": str(run / "checkpoints" / f"model_{ep:05d}.pt"),
                    "kind": "periodic",
                }
            )
    recs.append(
        {"type": "event", "kind": "worker_restart", "episode": 500, "count": 2, "dropped_total": 3}
    )
    recs.append({"type": "event", "kind": "dropped_episode", "episode": 500})
    for ep in (400, 800):
        (run / "checkpoints" / f"model_{ep:05d}.pt").write_bytes(b"x" * 2048)
    (run / "checkpoints" / "best.pt").write_bytes(b"y" * 100)
    with (run / "metrics.jsonl").open("w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
        f.write('{"type": "episode", "episode": 1201, "sco')  # torn last line
    if with_config:
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def _parse_table(md: str, header_start: str) -> list[list[str]]:
    lines = md.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(header_start))
    rows = []
    for ln in lines[i + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def test_read_metrics_skips_torn_line(tmp_path, caplog):
    run = make_run(tmp_path, n_episodes=20)
    with caplog.at_level(logging.WARNING):
        recs = read_metrics(run / "metrics.jsonl")
    assert any("torn" in r.message for r in caplog.records)
    assert sum(r["type"] == "episode" for r in recs) == 20
    assert len(read_metrics(run / "metrics.jsonl", "update")) == 5
    # a torn record glued to the next one: the second record is recovered
    p = tmp_path / "glued.jsonl"
    p.write_text('{"type":"episode","epi{"type":"update","update":1}\n{"type":"event"}\n')
    bad: list[int] = []
    assert [r["type"] for r in read_metrics(p, bad_lines=bad)] == ["update", "event"]
    assert bad == []


def test_report_phase_table_matches_records(tmp_path):
    run = make_run(tmp_path)
    (run / "eval").mkdir()
    ev = _eval_json(run / "eval" / "final.json", list(range(200)))
    data = json.loads(ev.read_text())
    alpha = np.eye(4)[np.arange(200) % 4]
    rfig = routing_figures(alpha, episode_ids=np.arange(200) // 50)
    rfig["scenario_table"] = scenario_table(alpha, np.arange(200) % 4, SCENARIOS)
    data["checkpoints"]["final"]["summary"] = {"routing": rfig}
    ev.write_text(json.dumps(data))
    out = write_report(run, n_resamples=500)
    assert out == run / "report.md"
    md = out.read_text()
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()[:-1]]
    eps = [r for r in recs if r["type"] == "episode"]
    ups = [r for r in recs if r["type"] == "update"]
    rows = _parse_table(md, "| phase (episode range)")
    assert [r[0] for r in rows] == ["warmup (0–400)", "transition (400–800)", "finetune (800–1200)"]
    for row, ph in zip(rows, ("warmup", "transition", "finetune"), strict=True):
        pe = [e for e in eps if e["phase"] == ph]
        pu = [u for u in ups if u["phase"] == ph]
        sc = np.array([e["score"] for e in pe], dtype=float)
        assert row[1] == f"{pe[0]['episode']}–{pe[-1]['episode']}"
        assert int(row[2]) == len(pe) == 400
        assert float(row[3]) == pytest.approx(sc.mean(), abs=0.005)
        assert float(row[4]) == pytest.approx(np.mean([e["reward"] for e in pe]), abs=0.005)
        m = re.match(r"(\d+) \(ep (\d+)\)", row[5])
        assert m is not None
        i = int(np.argmax(sc))
        assert int(m.group(1)) == int(sc.max()) and int(m.group(2)) == pe[i]["episode"]
        h = np.array([u["routing/alpha_entropy"] for u in pu])
        mean_s, std_s = row[6].split(" ± ")
        assert float(mean_s) == pytest.approx(h.mean(), abs=5e-5)
        assert float(std_s) == pytest.approx(h.std(ddof=1), abs=5e-5)
        assert float(row[7]) == pytest.approx(sc.std(ddof=1), abs=0.005)
        assert float(row[8]) == pytest.approx(np.mean([u["routing/mi"] for u in pu]), abs=5e-5)
        eff = np.mean([u["routing/effective_experts"] for u in pu])
        assert float(row[9]) == pytest.approx(eff, abs=0.005)
    # other sections
    seg = _parse_table(md, "| episodes | phase | n |")
    assert len(seg) == 3 and seg[0][0] == "0–500" and int(seg[0][2]) == 500
    assert "More high scores or more low scores?" in md
    assert (
        "worker restarts | 2" in md and "dropped episodes (unfinished when a worker died) | 3" in md
    )
    assert "updates skipped (NaN/Inf) | 1 (loss/value: 1)" in md
    assert "torn / non-JSON lines skipped in metrics.jsonl | 1" in md
    exp = {r[0]: r for r in _parse_table(md, "| metric | target |")}
    assert exp["`final_phase_mean_score`"][3].endswith("met")
    assert "not met" in exp["`final_phase_alpha_entropy`"][3]
    assert "not met" in exp["`final_phase_routing_mi`"][3]
    assert exp["`nonsense_metric`"][3] == "unknown metric"
    assert "not understood" in exp["`warmup_mean_score`"][3]
    assert "`model_00400.pt`" in md and "`best.pt`" in md
    assert "```yaml" in md and "total_episodes: 1200" in md
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (run / img).is_file(), img
    assert (run / "report_plots" / "training_scores.png").is_file()
    assert (run / "report_plots" / "training_routing.png").is_file()
    # evaluation: executive summary line, table, routing verdict and scenario heatmap
    assert "**Latest evaluation** (E200, `eval/final.json`, checkpoint `final`, n = 200): " in md
    assert "mean 99.50 [" in md
    ev_rows = _parse_table(md, "| run | source |")
    assert ev_rows[0][2] == "200" and ev_rows[0][3].startswith("99.50 [")
    assert "`final` (`eval/final.json`): alpha entropy 0.0000" in md and "state-dependent" in md
    assert (run / "report_plots" / "scenario_alpha_final.png").is_file()


def test_report_smoke_run_without_config(tmp_path):
    run = tmp_path / "smoke"
    run.mkdir()
    with (run / "metrics.jsonl").open("w") as f:
        for ep in range(1, 11):
            f.write(
                json.dumps(
                    {
                        "type": "episode",
                        "episode": ep,
                        "score": ep % 3,
                        "reward": 0.5,
                        "length": 10,
                        "depth": 1,
                        "died": False,
                        "phase": "warmup",
                        "env_steps": 10 * ep,
                    }
                )
                + "\n"
            )
    out = write_report(run, tmp_path / "elsewhere" / "r.md", n_resamples=200)
    md = out.read_text()
    assert "No config file" in md
    rows = _parse_table(md, "| phase (episode range)")
    assert len(rows) == 1 and rows[0][2] == "10" and rows[0][3] == "1.00"
    assert "Only one phase" in md
    assert (tmp_path / "elsewhere" / "report_plots" / "training_scores.png").is_file()
    # an empty run directory does not crash either
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No episode records" in write_report(empty).read_text()


def test_load_run_keeps_last_record_after_resume(tmp_path):
    run = tmp_path / "resumed"
    run.mkdir()
    rows = [{"type": "episode", "episode": e, "score": 1, "phase": "a"} for e in (1, 2, 3)]
    rows += [{"type": "event", "kind": "resumed", "episode": 2}]
    rows += [{"type": "episode", "episode": 3, "score": 7, "phase": "a"}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_run(run)
    assert [e.score for e in data.episodes] == [1, 1, 7]
    assert data.duplicate_episodes == 1
    assert [p.name for p in data.phases] == ["a"]


def test_check_expectation():
    assert check_expectation(">= 15", 15.0)[0] == "met"
    assert check_expectation("> 15", 15.0)[0] == "not met"
    assert check_expectation("0.3..0.5", 0.4)[0] == "met"
    assert check_expectation("0.3-0.5", 0.6)[0] == "not met"
    assert check_expectation({"min": 1, "max": 2}, 1.5)[0] == "met"
    assert check_expectation("<= -1", -2.0)[0] == "met"
    assert check_expectation(">= 1", None)[0] == "no data"
    assert check_expectation(15, 20.0)[0] == "unparsed"
    assert check_expectation("about 15", 20.0)[0] == "unparsed"


def _eval_json(path: Path, scores: list[int], name: str = "final") -> Path:
    eps = [
        {
            "seed": 100000 + i,
            "score": s,
            "reward": float(s),
            "length": 100,
            "depth": 1 + (s > 20),
            "died": i % 4 == 0,
        }
        for i, s in enumerate(scores)
    ]
    path.write_text(
        json.dumps(
            {
                "protocol": "E200",
                "created": "2026-01-01T00:00:00",
                "machine": "test",
                "checkpoints": {
                    name: {
                        "path": f"runs/x/{name}.pt",
                        "greedy": False,
                        "summary": {},
                        "episodes": eps,
                    }
                },
            }
        )
    )
    return path


def test_compare_two_eval_files(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.geometric(0.1, 200).tolist()
    b = (rng.geometric(0.05, 200) + 3).tolist()
    fa = _eval_json(tmp_path / "a.json", a)
    fb = _eval_json(tmp_path / "b.json", b)
    table, plot = compare([fa, fb], tmp_path / "cmp", n_resamples=500)
    assert plot.is_file() and (tmp_path / "cmp" / "compare.md").is_file()
    rows = _parse_table(table, "| run |")
    assert [r[0] for r in rows] == ["a", "b"]
    for row, s in zip(rows, (a, b), strict=True):
        assert int(row[2]) == 200
        m = re.match(r"([\d.]+) \[([\d.]+), ([\d.]+)\]", row[3])
        assert m is not None
        mean, lo, hi = (float(x) for x in m.groups())
        assert mean == pytest.approx(np.mean(s), abs=0.005) and lo < mean < hi
        assert row[7] == "25.0 %"
    # a run directory without evaluation: its last training phase, labelled as training
    run = make_run(tmp_path / "r", n_episodes=40)
    table2, _ = compare([run, fa], tmp_path / "cmp2", n_resamples=200)
    rows2 = _parse_table(table2, "| run |")
    assert rows2[0][1].startswith("training, phase warmup") and rows2[0][2] == "40"
    # with evaluation files, a run directory contributes its evaluated checkpoints
    (run / "eval").mkdir()
    _eval_json(run / "eval" / "e1.json", a, name="best")
    _eval_json(run / "eval" / "e2.json", b, name="final")
    table3, _ = compare([run], tmp_path / "cmp3", n_resamples=200)
    rows3 = _parse_table(table3, "| run |")
    assert sorted(r[0] for r in rows3) == ["synthetic_run:best", "synthetic_run:final"]
    assert all(r[2] == "200" for r in rows3)


# ------------------------------------------------------------------------------ new evaluation keys
def _entry(scores: list[int], *, player: str = "policy", greedy: bool = False) -> dict:
    """An evaluation entry as ``evaluate`` writes it (seeds 100000.., summary blocks)."""
    eps = [
        {"seed": 100000 + i, "score": s, "reward": float(s), "length": 100, "depth": 1,
         "died": i % 2 == 0}
        for i, s in enumerate(scores)
    ]  # fmt: skip
    summary: dict = {"hint": {"follow_share": 0.97 if player == "hint-follower" else 0.4}}
    if player == "policy":
        alpha = np.eye(4)[np.arange(80) % 4]
        summary["routing"] = routing_figures(alpha, episode_ids=np.arange(80) // 20)
        summary["specialization"] = {
            "scenario_mi": 0.31,
            "scenario_mi_normalized": 0.25,
            "scenario_mi_shuffled_p95": 0.02,
            "scenario_mi_shifted_p95": 0.05,
            "scenario_mi_p_value": 0.005,
            "scenario_mi_shifted_p_value": 0.01,
        }
        summary["reliance"] = {
            "graph_mean": {"argmax_change": 0.125, "policy_kl": 0.1},
            "state_mean": {"argmax_change": 0.5, "policy_kl": 0.3},
        }
        # a sentence stored by an old file: never printed back (the verdict is rebuilt)
        summary["verdict"] = "The router routes on neither h_state nor h_graph (stored sentence)."
    return {
        "player": player,
        "path": None if player != "policy" else "runs/x/final.pt",
        "greedy": greedy,
        "summary": summary,
        "episodes": eps,
    }


def _eval_json_full(path: Path) -> Path:
    """A checkpoint with its greedy run beside it and both baselines, on the same 40 seeds."""
    sampled = [10 + (i % 7) for i in range(40)]
    entry = _entry(sampled)
    entry["greedy_result"] = _entry([s + 3 for s in sampled], greedy=True)
    data = {
        "protocol": "E40",
        "created": "2026-02-01T00:00:00",
        "checkpoints": {
            "final": entry,
            "random": _entry([s - 8 for s in sampled], player="random"),
            "hint-follower": _entry([s - 5 for s in sampled], player="hint-follower"),
        },
    }
    path.write_text(json.dumps(data))
    return path


def test_report_shows_greedy_baselines_and_specialization(tmp_path):
    run = make_run(tmp_path, n_episodes=40)
    (run / "eval").mkdir()
    _eval_json_full(run / "eval" / "full.json")
    md = write_report(run, n_resamples=200).read_text()
    # executive summary: greedy beside sampled, specialization next to its baselines
    assert "**Latest evaluation** (E40, `eval/full.json`, checkpoint `final`, n = 40)" in md
    assert "greedy beside it: mean 15.88 [15.35, 16.40], died 50.0 %, depth 1.00" in md
    assert (
        "scenario information 0.3100 nats, above its permutation baselines (p95 0.0500, "
        "within-episode shift null, p = 0.010)" in md
    )
    assert "12.5 % of the states with h_graph replaced by its mean, 50.0 % with h_state" in md
    # every played set is a row of the evaluation table, labelled by what played it
    rows = {r[0]: r for r in _parse_table(md, "| run | source |")}
    assert set(rows) == {"full:final", "full:final (greedy)", "full:random", "full:hint-follower"}
    assert rows["full:final (greedy)"][1] == "E40 full.json greedy"
    assert rows["full:random"][1] == "E40 full.json baseline"
    # greedy and baselines against the sampled policy on the same seeds (paired differences)
    same = {r[0]: r for r in _parse_table(md, "| played by | against (sampled policy) |")}
    assert set(same) == {"full:final (greedy)", "full:random", "full:hint-follower"}
    assert all(r[1] == "full:final" and r[2] == "40" for r in same.values())
    assert same["full:final (greedy)"][5] == "+3.00 [3.00, 3.00]"
    assert same["full:random"][5] == "-8.00 [-8.00, -8.00]" and same["full:random"][3] == "4.88"
    # the specialization block, with the hint follower's follow share as the hint baseline
    spec = {r[0]: r for r in _parse_table(md, "| played by | scenario information (nats) |")}
    f = spec["full:final"]
    assert f[1] == "0.3100 (25.0 % of H)" and f[2] == "0.0200" and f[3] == "0.0500"
    assert f[4] == "yes" and f[5] == "12.5 %" and f[6] == "50.0 %" and f[7] == "40.0 %"
    assert spec["full:hint-follower"][7] == "97.0 %" and spec["full:hint-follower"][1] == "–"
    assert "stored sentence" not in md
    assert "- **full:final**: The router routes on h_state and h_graph: it uses h_state" in md
    assert "within-episode shift null (p95 0.0500, p = 0.010" in md
    assert f[8] == "0.010 (within-episode shift)"
    # routing of the evaluation rollouts, sampled and greedy, under the schema's names
    assert "- `final` (`eval/full.json`): alpha entropy 0.0000, routing MI 1.3863" in md
    assert "- `final (greedy)` (`eval/full.json`)" in md


def test_compare_reads_the_same_keys_as_the_report(tmp_path):
    ev = _eval_json_full(tmp_path / "full.json")
    table, _ = compare([ev], tmp_path / "cmp", n_resamples=200)
    same = _parse_table(table, "| played by | against (sampled policy) |")
    assert [r[0] for r in same] == ["full:final (greedy)", "full:random", "full:hint-follower"]
    spec = {r[0]: r for r in _parse_table(table, "| played by | scenario information (nats) |")}
    assert spec["full:final"][4] == "yes" and spec["full:random"][7] == "40.0 %"
    assert "stored sentence" not in table and "routes on h_state and h_graph" in table
    assert (
        "Specialization, each figure next to its baseline"
        in (tmp_path / "cmp" / "compare.md").read_text()
    )


def test_an_old_evaluation_file_is_read_through_the_legacy_names(tmp_path):
    """Files written before the schema call the routing MI ``routing_mi``: still read."""
    run = make_run(tmp_path, n_episodes=40)
    (run / "eval").mkdir()
    ev = _eval_json(run / "eval" / "old.json", list(range(40)))
    data = json.loads(ev.read_text())
    rfig = routing_figures(np.eye(4)[np.arange(40) % 4])
    rfig["routing_mi"] = rfig.pop("mi")
    data["checkpoints"]["final"]["summary"] = {"routing": rfig}
    ev.write_text(json.dumps(data))
    md = write_report(run, n_resamples=200).read_text()
    assert "- `final` (`eval/old.json`): alpha entropy 0.0000, routing MI 1.3863" in md
    assert "### Greedy beside sampled" not in md and "### Specialization" not in md


def test_metric_names_one_schema_for_records_and_evaluation_files():
    import torch

    from nethack_moe.metrics import names as mn
    from nethack_moe.metrics.router_figures import HintReliance, RelianceFigure, ScenarioInformation
    from nethack_moe.metrics.routing import routing_figures_torch
    from nethack_moe.metrics.state_report import SpecializationReport
    from nethack_moe.runs.metrics_io import SpecializationFigures

    alpha = np.random.default_rng(0).dirichlet(np.ones(4), size=32)
    fig = routing_figures(alpha)
    rec = routing_figures_torch(torch.tensor(alpha))
    for name in mn.ROUTING_SCALARS:  # the update record and the figures dict: the same names
        assert rec[mn.record_key(name)] == pytest.approx(fig[name], abs=1e-6), name
        assert mn.routing_value(rec, name) == pytest.approx(mn.routing_value(fig, name), abs=1e-6)
    legacy = {"routing_mi": 0.5, "routing/routing_mi": 0.7}
    assert mn.routing_value(legacy, mn.MI) == 0.5
    assert mn.routing_value({"routing/routing_mi": 0.7}, mn.MI) == 0.7
    assert mn.routing_value({}, mn.MI) is None
    # the keys the report / compare read are the keys the specialization figures are written under
    rel = {
        n: RelianceFigure(n, 0.2 if n == mn.GRAPH_MEAN else 0.3, 0.1, 10)
        for n in (mn.GRAPH_MEAN, mn.STATE_MEAN)
    }
    report = SpecializationReport(
        scenario=ScenarioInformation(0.4, 1.2, 0.01, 0.02, 0.005, 200, 100, 0.03, 0.005),
        reliance=rel,  # type: ignore[arg-type]
        hint=HintReliance(0.6, 50),
        usage_balance=1.0,
        per_state_sharpness=0.2,
        effective_experts=3.9,
        n_experts=4,
    )
    sp = SpecializationFigures.from_summary(report.to_json())
    assert (sp.scenario_mi, sp.shuffled_p95, sp.shifted_p95) == (0.4, 0.02, 0.03)
    assert (sp.graph_argmax_change, sp.state_argmax_change, sp.hint_follow_share) == (0.2, 0.3, 0.6)
    assert sp.above_baseline is True and sp.baseline_p95 == 0.03 and sp.verdict
    assert SpecializationFigures.from_summary({}).empty
