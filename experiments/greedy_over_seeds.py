"""Greedy E200 over training seeds for two ablation rows: each row's mean over seeds and IQM with
its stratified-bootstrap CI, and P(second row > first row) with its CI (the figures
``sweep --table`` gives for sampled play, here for the greedy runs beside them).

    python experiments/greedy_over_seeds.py gat_moe_ks mlp_moe_ks
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from nethack_moe.analysis.ablation_table import final_entry
from nethack_moe.analysis.over_runs import (
    aligned_scores,
    poi_ci,
    probability_of_improvement,
    row_figures,
)


def greedy_scores(table_dir: Path, row: str):
    """``[R, T]`` greedy scores of the row's finished seeds, on their common game seeds."""
    pattern = re.compile(rf"{re.escape(row)}_s\d+")  # not gat_moe_softmax_s1 for gat_moe
    runs = sorted(
        p for p in table_dir.iterdir()
        if pattern.fullmatch(p.name) and (p / "eval_E200.json").is_file()
    )  # fmt: skip
    if not runs:
        raise SystemExit(f"no finished run of row {row!r} in {table_dir}")
    eps = []
    for r in runs:
        entry = final_entry(
            json.loads((r / "eval_E200.json").read_text())
        )  # the final checkpoint's
        eps.append(entry["greedy_result"]["episodes"])
    return aligned_scores(eps)[0], [r.name for r in runs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--dir", type=Path, default=Path("docs/ablations"))
    a = ap.parse_args()
    out = []
    scores = {}
    for row in (a.first, a.second):
        s, names = greedy_scores(a.dir, row)
        f = row_figures(s)
        ci = "–" if f.iqm_ci is None else f"[{f.iqm_ci[0]:.1f}, {f.iqm_ci[1]:.1f}]"
        per = ", ".join(f"{n}: {m:.1f}" for n, m in zip(names, s.mean(axis=1), strict=True))
        out.append(
            f"{row}: greedy mean over seeds {f.mean_over_runs:.1f} ({per}); IQM {f.iqm:.1f} {ci}"
        )
        scores[row] = s
    x, y = scores[a.second], scores[a.first]
    lo, hi = poi_ci(x, y)
    out.append(
        f"P({a.second} > {a.first}), greedy: {probability_of_improvement(x, y):.2f} [{lo:.2f}, {hi:.2f}]"
    )
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
