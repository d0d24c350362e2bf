"""Subcommand ``sweep`` of ``nethack-moe``: many runs from one spec, resumable (see
:mod:`nethack_moe.sweep`). A bad spec exits with status 2 and one line before anything runs; a
failed run exits 1 after the others ran; SIGINT/SIGTERM stop the running stage (training writes its
checkpoint) and exit 130/143."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from nethack_moe.cli.errors import UsageError
from nethack_moe.runs.rundir import RunDir
from nethack_moe.sweep.commands import analyze_command, evaluate_command, train_command
from nethack_moe.sweep.launch import run_sweep, submit_slurm
from nethack_moe.sweep.spec import RunSpec, SpecError, SweepSpec, load_spec
from nethack_moe.sweep.stages import SweepInterrupted, has_checkpoint, missing_outputs, status_of


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _load(path: str) -> SweepSpec:

    try:
        return load_spec(path)
    except SpecError as e:
        raise UsageError(str(e)) from e


def _pending(run: RunSpec) -> list[str]:
    """The stages of ``run`` that are not finished."""
    st = status_of(run)
    missing = missing_outputs(run)
    if st is not None and st.state == "done" and not missing:
        return []
    needs_ckpt = bool(missing) or not run.spec.after
    todo = ["train"] if needs_ckpt and not run.final_checkpoint.is_file() else []
    return todo + missing + ["collect"]


def _dry_run(spec: SweepSpec, only: list[str]) -> None:
    """One line per run: its state and the command the sweep would run next for it."""
    runs = [spec.run_named(n) for n in only] if only else spec.runs()
    for run in runs:
        todo = _pending(run)
        if not todo:
            _say(f"# {run.name}: done")
            continue
        st = status_of(run)
        failed = (
            f" (failed before at {st.stage}: {st.error})" if st and st.state == "failed" else ""
        )
        _say(f"# {run.name}: to do {', '.join(todo)}{failed}")
        if todo[0] == "train":
            cmd = train_command(run, resume=has_checkpoint(run))
        elif todo[0] == "evaluate":
            cmd = evaluate_command(run, run.out_dir / "eval_E200.json")
        elif todo[0] == "analyze":
            cmd = analyze_command(run, RunDir(run.run_dir).analysis_dir("final"))
        else:
            continue
        _say(shlex.join(["nethack-moe", *cmd[3:]]))


def _table(spec: SweepSpec) -> None:
    from nethack_moe.analysis.ablation_table import write_table

    table = write_table(spec.out, [(r.name, r.note) for r in spec.rows], list(spec.seeds))
    have = sum(len(r["seeds"]) for r in table["rows"])
    _say(f"table: {have} of {len(spec.rows) * len(spec.seeds)} runs -> {spec.out / 'table.md'}, "
         f"{spec.out / 'table.json'}")  # fmt: skip


def cmd_sweep(args: argparse.Namespace) -> int:
    spec = _load(args.spec)
    only = list(args.only or [])
    for name in only:
        try:
            spec.run_named(name)
        except SpecError as e:
            raise UsageError(str(e)) from e
    if args.dry_run:
        _dry_run(spec, only)
        return 0
    if args.table:
        _table(spec)
        return 0
    if args.launcher == "slurm":
        jobs = submit_slurm(Path(args.spec), spec)
        _say(f"submitted {len(jobs)} job(s): {', '.join(str(j.job_id) for j in jobs) or '-'}")
        return 0
    _say(f"sweep {spec.name}: {len(spec.rows)} rows x {len(spec.seeds)} seeds; "
         f"runs in {spec.work_dir}/, results in {spec.out}/")  # fmt: skip
    try:
        res = run_sweep(spec, only=only, skip_failed=args.skip_failed, say=_say)
    except SweepInterrupted as e:
        _say(f"nethack-moe: sweep interrupted ({e}); run the same command to continue")
        return 143 if "signal 15" in str(e) else 130
    _say(f"sweep {spec.name}: {len(res.done)} finished now, {len(res.skipped)} skipped, "
         f"{len(res.failed)} failed")  # fmt: skip
    for st in res.failed:
        _say(f"  failed: {st.name} at {st.stage} (exit {st.returncode}): {st.error}; log {st.log}")
    _table(spec)
    return 1 if res.failed else 0


def register(sub: Any) -> None:
    """Add ``sweep`` to the CLI's subparsers."""
    p = sub.add_parser(
        "sweep",
        help="train, evaluate and analyze rows x seeds from a spec, skipping finished runs",
        description="Runs each (row, seed) of SPEC in turn: train (resumed if interrupted), E200 "
        "sampled and greedy, analyze; then writes OUT/table.{md,json}. Run it again to continue.",
    )
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument("--dry-run", action="store_true",
                   help="print each run's state and the command it needs next; run nothing")  # fmt: skip
    p.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: in turn, here (default); slurm: a job array through submitit")  # fmt: skip
    p.add_argument("--only", action="append", metavar="ROW_sSEED",
                   help="only this run (repeatable)")  # fmt: skip
    p.add_argument("--skip-failed", action="store_true",
                   help="leave runs that failed before (default: retry them)")  # fmt: skip
    p.add_argument("--table", action="store_true",
                   help="only rebuild OUT/table.{md,json} from the finished runs")  # fmt: skip
    p.set_defaults(fn=cmd_sweep)
