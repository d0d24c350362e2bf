"""Rewrite the shipped evaluation and analysis files in the figures-only format of issue 21.

Files written before issue 21 stored verdict sentences (``summary.verdict``,
``summary.routing.verdict``, ``verdict``, ``verdict_text``, ``routing_verdict``,
``routing_verdict_text``), some of them false (greedy entries of a GAT-MoE read "routes on
neither ... there is no h_graph" where reliance was simply not measured). This script drops every
stored sentence, adds the figures the verdict needs (``n_experts``, ``reliance_measured``, the
stricter null of the scenario information with its p95 and p-value) from the numbers already in
the file, and re-renders the text beside each file (``eval_*.txt``, ``analysis.txt``,
``analysis/analysis.md``) through the same functions the commands print with. No game is
played: every number is the stored one.

Usage: ``python experiments/issue21_regenerate_docs.py FILE.json ...`` (an evaluation file or an
``analysis.json``; the text beside it is rewritten when it exists), then
``python experiments/issue21_regenerate_docs.py --report DOC_DIR ...`` for a copied run
(``docs/s500``: ``config.yaml``, ``metrics.jsonl.gz``, ``eval_E200.json``, ``report.md``): the run
directory is rebuilt in a temporary folder (one ``eval/<checkpoint>_E200.json`` per checkpoint, as
``evaluate`` wrote them), ``nethack-moe report`` is run on it, and the new ``report.md`` replaces
the old one except for what the copy cannot rebuild: the header's note on what was copied and
section 6 (the listing of the checkpoint files, which are not in the repository) are kept.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nethack_moe.analysis.analyze import analysis_markdown
from nethack_moe.cli.eval_text import analysis_text, evaluation_text
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.router_figures import ScenarioInformation

SENTENCE_KEYS = ("verdict", "verdict_text", "routing_verdict", "routing_verdict_text")


def _null_keys(sp: Any) -> None:
    info = ScenarioInformation.from_json(sp)
    if info is None:
        return
    new = info.to_json()
    for k in (mn.SCENARIO_MI_NULL, mn.SCENARIO_MI_NULL_P95, mn.SCENARIO_MI_NULL_P_VALUE,
              "above_baseline"):  # fmt: skip
        sp[k] = new[k]


def convert_blocks(b: dict[str, Any], n_experts: int | None) -> None:
    """Drop the stored sentences of an evaluation summary or analysis object; add the figures."""
    for k in SENTENCE_KEYS:
        b.pop(k, None)
    for key in ("routing", "figures"):
        if isinstance(b.get(key), dict):
            b[key].pop("verdict", None)
    if isinstance(b.get(mn.SPECIALIZATION), dict):
        _null_keys(b[mn.SPECIALIZATION])
    if mn.RELIANCE in b:
        b[mn.RELIANCE_MEASURED] = bool(b[mn.RELIANCE])
        if n_experts is not None:
            b[mn.N_EXPERTS] = n_experts
    rb = b.get("routing_balance")
    if isinstance(rb, dict):
        rb.pop("note", None)


def _n_experts(fig: Any) -> int | None:
    names = (fig or {}).get("expert_names") if isinstance(fig, dict) else None
    return len(names) if names else None


def convert_eval(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    for entry in data[mn.CHECKPOINTS].values():
        for e in (entry, entry.get(mn.GREEDY_RESULT)):
            if isinstance(e, dict):
                s = e[mn.SUMMARY]
                convert_blocks(s, _n_experts(s.get(mn.ROUTING)))
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    txt = path.with_suffix(".txt")
    if txt.exists():
        # the paths the original command wrote are not in the file: keep its "wrote" lines
        old = txt.read_text(encoding="utf-8").splitlines()
        wrote = [line for line in old if line.startswith("wrote ")]
        txt.write_text(evaluation_text({**data, "written": []}).rstrip("\n") + "\n\n"
                       + "".join(w + "\n" for w in wrote), encoding="utf-8")  # fmt: skip
    sys.stdout.write(f"converted {path}" + (f", rewrote {txt}\n" if txt.exists() else "\n"))


def convert_analysis(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    convert_blocks(data, _n_experts(data.get("figures")))
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (path.parent / "analysis.md").write_text(analysis_markdown(data), encoding="utf-8")
    txt = path.parent.parent / "analysis.txt"
    if txt.exists():
        txt.write_text(analysis_text(data), encoding="utf-8")
    sys.stdout.write(
        f"converted {path}, rewrote analysis.md" + (f" and {txt}\n" if txt.exists() else "\n")
    )


def _section(lines: list[str], head: str) -> tuple[int, int]:
    i = lines.index(head)
    j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("## "))
    return i, j


def regenerate_report(doc: Path) -> None:
    """``nethack-moe report`` of the run copied in ``doc`` (module docstring)."""
    from nethack_moe.report import write_report

    tmp = Path(tempfile.mkdtemp())
    try:
        run = tmp / "runs" / "s500"
        (run / "eval").mkdir(parents=True)
        shutil.copy(doc / "config.yaml", run / "config.yaml")
        with gzip.open(doc / "metrics.jsonl.gz", "rb") as f:
            (run / "metrics.jsonl").write_bytes(f.read())
        data = json.loads((doc / "eval_E200.json").read_text(encoding="utf-8"))
        base = {k: v for k, v in data.items() if k != mn.CHECKPOINTS}
        for name, entry in data[mn.CHECKPOINTS].items():  # in file order: the last is the latest
            out = run / "eval" / f"{name}_{data['protocol']}.json"
            out.write_text(json.dumps({**base, mn.CHECKPOINTS: {name: entry}}, indent=1))
            time.sleep(1.1)  # same "created": the report orders them by file time
        cwd = Path.cwd()
        try:
            os.chdir(tmp)
            new = write_report(Path("runs/s500")).read_text(encoding="utf-8").split("\n")
        finally:
            os.chdir(cwd)
    finally:
        shutil.rmtree(tmp)
    old = (doc / "report.md").read_text(encoding="utf-8").split("\n")
    run_line = next(k for k, line in enumerate(new) if line.startswith("**Run directory**"))
    new[run_line] = next(line for line in old if line.startswith("**Run directory**"))
    oi, oj = _section(old, "## 6. Checkpoints")
    ni, nj = _section(new, "## 6. Checkpoints")
    new[ni:nj] = old[oi:oj]
    (doc / "report.md").write_text("\n".join(new), encoding="utf-8")
    sys.stdout.write(f"regenerated {doc / 'report.md'}\n")


def main(paths: list[str]) -> None:
    if paths and paths[0] == "--report":
        for d in paths[1:]:
            regenerate_report(Path(d))
        return
    for p in map(Path, paths):
        data = json.loads(p.read_text(encoding="utf-8"))
        (convert_eval if mn.CHECKPOINTS in data else convert_analysis)(p)


if __name__ == "__main__":
    main(sys.argv[1:])
