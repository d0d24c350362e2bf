"""Markdown report of a training run, in the shape of ``reference/finetune_5000_results.md``.

Every number is computed here from the run directory, never typed:

* ``metrics.jsonl`` (episode, update, checkpoint and event records; torn lines skipped),
* ``config.yaml`` (resolved config; the ``run_start`` record's config when the file is absent),
* ``checkpoints/`` (file listing),
* ``eval/*.json`` (E200 evaluations, when present: sampled and greedy runs, baselines and the
  specialization figures).

Figures are written to ``report_plots/`` next to the report and embedded with relative paths.

:mod:`~nethack_moe.report.data` loads the run once into typed records (their statistics in
:mod:`~nethack_moe.report.training_stats`),
:mod:`~nethack_moe.report.sections` turns them into markdown one section at a time, and
:func:`write_report` puts the sections together.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nethack_moe.report.data import ReportData, load_report_data, report_metrics
from nethack_moe.report.expectations import check_expectation
from nethack_moe.report.sections import SECTIONS
from nethack_moe.report.training_stats import (
    PhaseStats,
    ReportOptions,
    SegmentStats,
    StabilityCounts,
    phase_stats,
    segment_stats,
    stability_counts,
)

log = logging.getLogger(__name__)

__all__ = [
    "PhaseStats",
    "ReportData",
    "ReportOptions",
    "SegmentStats",
    "StabilityCounts",
    "check_expectation",
    "load_report_data",
    "phase_stats",
    "report_metrics",
    "segment_stats",
    "stability_counts",
    "write_report",
]


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    segment_size: int = 500,
    window: int = 100,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Path:
    """Write the markdown report of ``run_dir`` (default ``run_dir/report.md``) and its plots
    (``report_plots/`` next to it); returns the report path."""
    opts = ReportOptions(segment_size, window, n_resamples, seed)
    d = load_report_data(run_dir, out, opts)
    d.plot_dir.mkdir(parents=True, exist_ok=True)
    md = [line for section in SECTIONS for line in section(d)]
    d.out_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    log.info("report written to %s", d.out_path)
    return d.out_path
