"""The sweep's table and ``compare`` over training seeds, on hand-made evaluation files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from nethack_moe.analysis.ablation_table import build_table, table_markdown, write_table
from nethack_moe.report.compare import compare

N = 30  # episodes per evaluation


def _scores(mu: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(round(max(0.0, v))) for v in rng.normal(mu, 25, size=N)]


def _eval_file(
    path: Path, scores: list[float], greedy: list[float], extra: dict | None = None
) -> None:
    def eps(xs):
        return [{"seed": 100000 + i, "score": x, "died": i % 4 == 0, "depth": 1 + i % 2,
                 "length": 500, "reward": 0.0} for i, x in enumerate(xs)]  # fmt: skip

    summary = {"n": N, "mean": float(np.mean(scores)), "ci_mean": [0.0, 1.0], "died": 0.25,
               "depth": 1.5, "hint": {"follow_share": 0.3}, **(extra or {})}  # fmt: skip
    entry = {
        "player": "policy",
        "path": "final.pt",
        "episode": 5000,
        "greedy": False,
        "summary": summary,
        "episodes": eps(scores),
        "greedy_result": {
            "greedy": True,
            "summary": {"n": N, "mean": float(np.mean(greedy))},
            "episodes": eps(greedy),
        },  # fmt: skip
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": "E200", "episodes": N, "seed_start": 100000,
                                "checkpoints": {"final": entry}}))  # fmt: skip


@pytest.fixture
def sweep_out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    for row, mu in (("a", 50.0), ("b", 80.0)):
        for s in (1, 2, 3):
            if row == "b" and s == 3:
                continue  # a missing run
            spec = {"specialization": {"scenario_mi": 0.01, "scenario_mi_shuffled_p95": 0.002,
                                       "scenario_mi_shifted_p95": 0.004}}  # fmt: skip
            _eval_file(out / f"{row}_s{s}" / "eval_E200.json", _scores(mu + s, 10 * s + len(row)),
                       _scores(5.0, s), spec)  # fmt: skip
    # the full analysis of a_s1 takes precedence over the evaluation's summary figures
    (out / "a_s1" / "analysis.json").write_text(json.dumps({
        "specialization": {"scenario_mi": 0.2, "scenario_mi_shuffled_p95": 0.05, "scenario_mi_shifted_p95": 0.03},
        "reliance": {"graph_mean": {"argmax_change": 0.25}}}))  # fmt: skip
    with gzip.open(out / "a_s1" / "metrics.jsonl.gz", "wt") as fh:
        fh.write(
            '{"type":"update","sps":100.0}\n{"type":"episode"}\n{"type":"update","sps":250.0}\n'
        )
    return out


def _matrix(out: Path, row: str, seeds: list[int]) -> np.ndarray:
    rows = []
    for s in seeds:
        e = json.loads((out / f"{row}_s{s}" / "eval_E200.json").read_text())
        rows.append([x["score"] for x in e["checkpoints"]["final"]["episodes"]])
    return np.array(rows)


def test_table_per_seed_figures_and_over_seeds(sweep_out):
    t = build_table(sweep_out, [("a", "ref"), ("b", "")], [1, 2, 3], n_resamples=300)
    a, b = t["rows"]
    assert [f["seed"] for f in a["seeds"]] == [1, 2, 3] and b["missing_seeds"] == [3]
    s1 = a["seeds"][0]
    assert (s1["scenario_mi"], s1["scenario_mi_p95"], s1["graph_reliance"]) == (0.2, 0.05, 0.25)
    assert a["seeds"][1]["scenario_mi_p95"] == 0.004  # the stricter (larger) null of the two
    assert s1["train_sps"] == 250.0 and a["seeds"][1]["train_sps"] is None
    ma, mb = _matrix(sweep_out, "a", [1, 2, 3]), _matrix(sweep_out, "b", [1, 2])
    assert a["sampled"]["mean_over_runs"] == pytest.approx(ma.mean(axis=1).mean())
    v = np.sort(ma.ravel())
    assert a["sampled"]["iqm"] == pytest.approx(v[len(v) // 4 : len(v) - len(v) // 4].mean())
    lo, hi = a["sampled"]["iqm_ci"]
    assert lo <= a["sampled"]["iqm"] <= hi
    wins = [(x > y) + 0.5 * (x == y) for t_ in range(N) for x in mb[:, t_] for y in ma[:, t_]]
    assert b["poi_vs_first"]["p"] == pytest.approx(np.mean(wins))
    assert b["poi_vs_first"]["p"] > 0.6 and a["poi_vs_first"] is None
    assert a["greedy"]["mean_over_runs"] == pytest.approx(_matrix_greedy(sweep_out, "a").mean())
    md = table_markdown(t)
    assert "| `a` | 3 |" in md and "| `b` | 2 (missing 3) |" in md


def _matrix_greedy(out: Path, row: str) -> np.ndarray:
    rows = []
    for s in (1, 2, 3):
        e = json.loads((out / f"{row}_s{s}" / "eval_E200.json").read_text())
        rows.append([x["score"] for x in e["checkpoints"]["final"]["greedy_result"]["episodes"]])
    return np.array(rows)


def test_write_table_writes_json_and_markdown(sweep_out):
    write_table(sweep_out, [("a", ""), ("b", "")], [1, 2, 3])
    assert json.loads((sweep_out / "table.json").read_text())["rows"][0]["name"] == "a"
    assert (sweep_out / "table.md").read_text().startswith("| row | seeds |")


def test_compare_shows_figures_over_seeds_for_rows_of_several_runs(sweep_out, tmp_path):
    inputs = [str(sweep_out / n) for n in ("a_s1", "a_s2", "a_s3", "b_s1")]
    inputs.append(str(sweep_out / "b_s2" / "eval_E200.json"))  # a file input is named by its run
    table, _ = compare(inputs, tmp_path / "cmp", n_resamples=300)
    section = table.split("Over training seeds")[1]
    row_a = next(ln for ln in section.splitlines() if ln.startswith("| a |"))
    ma = _matrix(sweep_out, "a", [1, 2, 3])
    assert f"| {ma.mean(axis=1).mean():.2f} |" in row_a
    assert "P(row > a)" in section and "| b |" in section


def test_compare_leaves_rows_of_one_run_alone(sweep_out, tmp_path):
    table, _ = compare(
        [str(sweep_out / "a_s1"), str(sweep_out / "b_s1")], tmp_path / "c", n_resamples=200
    )
    assert "Over training seeds" not in table
