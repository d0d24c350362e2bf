"""Learning curves per env step of two recipes over their training seeds, side by side
(issue 18: S500 and kickstart). Training-episode scores (not an evaluation), a moving average of
500 episodes per seed, on a common env-step grid.

    python experiments/learning_curves.py            # docs/figures/learning_curves_s500_kickstart.{png,md}
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nethack_moe.runs.records import EPISODE, EpisodeLine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"S500 (gat_moe)": "gat_moe", "kickstart (gat_moe_ks)": "gat_moe_ks"}
SEEDS = (1, 2, 3)
WINDOW = 500
GRID = np.linspace(0.25e6, 2.4e6, 87)
MARKS = (0.5e6, 1.0e6, 1.5e6, 2.0e6, 2.4e6)


def episodes(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, score) of every training episode of a run's metrics.jsonl(.gz)."""
    path = run / "metrics.jsonl.gz"
    opener = gzip.open if path.exists() else open
    path = path if path.exists() else run / "metrics.jsonl"
    steps, scores = [], []
    with opener(path, "rt") as f:  # type: ignore[operator]
        for line in f:
            r = json.loads(line)
            if r.get("type") == EPISODE:
                e = EpisodeLine.from_json(r)  # the runs layer's record, as every reader
                steps.append(e.env_steps)
                scores.append(e.score)
    return np.asarray(steps, float), np.asarray(scores, float)


def curve(run: Path) -> np.ndarray:
    """Moving average of the last WINDOW episodes' scores at each GRID env step (NaN before)."""
    steps, scores = episodes(run)
    c = np.concatenate([[0.0], np.cumsum(scores)])
    out = np.full(len(GRID), np.nan)
    for i, s in enumerate(GRID):
        n = int(np.searchsorted(steps, s, side="right"))
        if n >= WINDOW:
            out[i] = (c[n] - c[n - WINDOW]) / WINDOW
    return out


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    rows = []
    for (label, row), color in zip(RECIPES.items(), ("tab:blue", "tab:red"), strict=True):
        curves = np.stack([curve(ROOT / "docs" / "ablations" / f"{row}_s{s}") for s in SEEDS])
        mean = np.nanmean(curves, 0)
        ax.plot(GRID / 1e6, mean, color=color, label=f"{label}, mean of seeds {SEEDS}")
        ax.fill_between(GRID / 1e6, np.nanmin(curves, 0), np.nanmax(curves, 0), color=color,
                        alpha=0.2, lw=0)  # fmt: skip
        for m in MARKS:
            k = int(np.argmin(np.abs(GRID - m)))
            rows.append((label, m, [float(x) for x in curves[:, k]], float(mean[k])))
    ax.set_xlabel("env steps (millions)")
    ax.set_ylabel(f"training score, mean of the last {WINDOW} episodes")
    ax.set_title("Learning curves per env step (band: min-max over training seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "learning_curves_s500_kickstart.png", dpi=120)
    lines = [
        "| recipe | env steps | seed 1 | seed 2 | seed 3 | mean |",
        "|---|---|---|---|---|---|",
    ]
    for label, m, per_seed, mean in rows:
        cells = " | ".join(f"{x:.1f}" for x in per_seed)
        lines.append(f"| {label} | {m / 1e6:.1f} M | {cells} | {mean:.1f} |")
    (out_dir / "learning_curves_s500_kickstart.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "figures")
