"""The report and ``compare`` of a committed run (docs/s500, docs/ablations/gat_moe_s1) equal
what they were written as (tests/data/report/, but the date and the temporary directory): reading
the records another way must not change a figure. Rewrite the files with
``NETHACK_MOE_WRITE_GOLDEN=1 pytest tests/test_report_committed.py`` after a deliberate change."""

from __future__ import annotations

import gzip
import os
import re
import shutil
from pathlib import Path

from nethack_moe.report import write_report
from nethack_moe.report.compare import compare

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "report"
S500 = ROOT / "docs" / "s500"


def _s500_run(tmp: Path, *, with_eval: bool) -> Path:
    """docs/s500 as a run directory: its config, its metrics unzipped, its evaluation file."""
    run = tmp / "s500"
    run.mkdir()
    shutil.copy(S500 / "config.yaml", run / "config.yaml")
    with gzip.open(S500 / "metrics.jsonl.gz") as src:
        (run / "metrics.jsonl").write_bytes(src.read())
    if with_eval:
        (run / "eval").mkdir()
        shutil.copy(S500 / "eval_E200.json", run / "eval" / "eval_E200.json")
    return run


def _check(text: str, tmp: Path, name: str) -> None:
    text = re.sub(r"^\*\*Generated\*\*: \S+", "**Generated**: DATE", text, flags=re.M)
    text = text.replace(str(tmp), "TMP")
    path = GOLDEN / name
    if os.environ.get("NETHACK_MOE_WRITE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from {path}"


def test_report_of_a_committed_run_is_unchanged(tmp_path):
    run = _s500_run(tmp_path, with_eval=True)
    out = write_report(run)
    _check(out.read_text(encoding="utf-8"), tmp_path, "s500_report.md")


def test_compare_of_committed_runs_is_unchanged(tmp_path):
    run = _s500_run(tmp_path, with_eval=False)  # its training episodes: the metrics records
    compare([run, ROOT / "docs" / "ablations" / "gat_moe_s1"], tmp_path / "cmp")
    _check((tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8"), tmp_path, "compare.md")
