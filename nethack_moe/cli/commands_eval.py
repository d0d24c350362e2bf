"""Subcommands ``evaluate``, ``analyze``, ``report``, ``compare`` and ``watch`` of ``nethack-moe``.

:func:`register` adds them to the CLI's subparsers. Handlers return an exit status; bad input
raises :class:`nethack_moe.cli.UsageError` or lets :class:`CheckpointError` through (``cli.main``
maps both to exit status 2 with a one-line message). An evaluation in which an episode failed twice
still writes its file but exits with status 1.
The text they print is laid out by :mod:`nethack_moe.cli.eval_text`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from nethack_moe.analysis.probes import DEFAULT_PROBE_EPISODES
from nethack_moe.cli.errors import UsageError
from nethack_moe.cli.eval_text import _columns, analysis_text, evaluation_text
from nethack_moe.evaluation.evaluate import ACTION_MODES
from nethack_moe.evaluation.players import BASELINES
from nethack_moe.evaluation.runner import E200_EPISODES, E200_SEED_START
from nethack_moe.metrics.information import DEFAULT_PERMUTATIONS
from nethack_moe.runs.rundir import RunDir


def _usage_error(msg: str) -> Exception:

    return UsageError(msg)


def _say(text: str = "", file: TextIO | None = None) -> None:
    (file or sys.stdout).write(text + "\n")


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{v} must be positive")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} must be >= 0")
    return v


def _check_files(paths: Sequence[str]) -> None:
    for p in paths:
        if not Path(p).is_file():
            what = "a directory" if Path(p).is_dir() else "not found"
            raise _usage_error(f"checkpoint {p!r}: {what}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nethack_moe.evaluation.evaluate import evaluate

    if not args.checkpoints and not args.baseline:
        raise _usage_error("give a checkpoint to evaluate or --baseline random|hint-follower")
    _check_files(args.checkpoints)
    res = evaluate(
        args.checkpoints,
        episodes=args.episodes,
        seed_start=args.seed_start,
        workers=args.workers,
        num_envs=args.num_envs,
        out=args.out,
        device=args.device,
        policy_seed=args.policy_seed,
        actions="greedy" if args.greedy else args.actions,
        baselines=args.baseline or (),
        max_steps=args.max_steps,
    )
    _say(evaluation_text(res).rstrip("\n"))
    if args.replays:
        from nethack_moe.evaluation.replay import write_eval_replays

        where = Path(args.out).parent if args.out else Path(".")
        index = write_eval_replays(res, where / "replays", args.replays, args.ttyrec, args.device)
        _say(f"wrote {index} (best, median and worst {args.replays} episode(s) of each player)")
    cols = _columns(res["checkpoints"])
    failed = sum(len(e.get("failed") or []) for e in cols.values())
    if failed:
        _say(
            f"nethack-moe: {failed} episode(s) failed twice and are missing from the statistics",
            sys.stderr,
        )
        return 1
    return 0


# ------------------------------------------------------------------------------------ analyze
def cmd_analyze(args: argparse.Namespace) -> int:
    from nethack_moe.analysis.analyze import analyze

    _check_files([args.checkpoint])
    r = analyze(
        args.checkpoint,
        episodes=args.episodes,
        seed_start=args.seed_start,
        out_dir=args.out_dir,
        greedy=args.greedy,
        workers=args.workers,
        num_envs=args.num_envs,
        device=args.device,
        probe_episodes=args.probe_episodes,
        permutations=args.permutations,
    )
    _say(analysis_text(r).rstrip("\n"))
    return 1 if r.get("failed") else 0


# ------------------------------------------------------------------------------------ report
def cmd_report(args: argparse.Namespace) -> int:
    from nethack_moe.report import write_report

    run = Path(args.run_dir)
    if not run.is_dir():
        raise _usage_error(f"run directory {args.run_dir!r} does not exist")
    if not RunDir(run).metrics.is_file():
        raise _usage_error(f"{args.run_dir!r} is not a run directory (no metrics.jsonl)")
    path = write_report(run, args.out)
    _say(str(path))
    return 0


# ------------------------------------------------------------------------------------ compare
def cmd_compare(args: argparse.Namespace) -> int:
    from nethack_moe.report.compare import compare

    for p in args.inputs:
        if not Path(p).exists():
            raise _usage_error(f"{p!r} does not exist (expected a run directory or eval JSON)")
    names = (
        [n.strip() for s in args.names for n in s.split(",") if n.strip()] if args.names else None
    )
    if names is not None and len(names) != len(args.inputs):
        raise _usage_error(f"--names has {len(names)} names for {len(args.inputs)} inputs")
    out_dir = args.out_dir or "compare"
    try:
        table, plot = compare(args.inputs, out_dir, names=names)
    except json.JSONDecodeError as e:
        raise _usage_error(f"an input is not valid JSON ({e})") from e
    except ValueError as e:
        raise _usage_error(str(e)) from e
    _say(table)
    _say()
    _say(f"plot: {plot}")
    _say(f"table: {Path(out_dir) / 'compare.md'}")
    return 0


# ------------------------------------------------------------------------------------ watch
def _bar(v: float, width: int = 20) -> str:
    n = max(0, min(width, int(round(v * width))))
    return "█" * n + "·" * (width - n)


def render_frame(fr: dict[str, Any]) -> str:
    """A watch frame: the tty screen, then one bar per expert, the action and the reward."""
    lines = [fr["screen"], "-" * 80]
    w = max(len(n) for n in fr["expert_names"])
    for n, a in zip(fr["expert_names"], fr["alpha"], strict=True):
        lines.append(f"  {n.ljust(w)}  {_bar(a)}  {a:.3f}")
    lines.append(
        f"  step {fr['step']:4d}   action {fr['action']:2d} {fr['action_name']:<10}"
        f"   reward {fr['reward']:+.2f}   score {fr['score']}"
    )
    return "\n".join(lines)


def cmd_watch(args: argparse.Namespace) -> int:
    from nethack_moe.evaluation.loading import load_policy
    from nethack_moe.evaluation.watch import watch_frames

    _check_files([args.checkpoint])
    model, cfg, _ = load_policy(args.checkpoint, args.device)
    to_file = args.out is not None
    fh = open(args.out, "w", encoding="utf-8") if to_file else sys.stdout  # noqa: SIM115
    delay = args.delay if args.delay is not None else (0.0 if to_file else 0.1)
    last = None
    try:
        frames = watch_frames(model, cfg, seed=args.seed, steps=args.steps, greedy=args.greedy,
                              ttyrec_dir=args.ttyrec)  # fmt: skip
        for fr in frames:
            text = render_frame(fr)
            if to_file:
                fh.write(f"{'=' * 34} step {fr['step']:4d} {'=' * 34}\n{text}\n\n")
            else:
                fh.write("\x1b[H\x1b[2J" + text + "\n")
                fh.flush()
            last = fr
            if delay > 0:
                time.sleep(delay)
        if last is not None:
            end = "died" if last["died"] else "ended"
            if last.get("final_screen") and to_file:
                fh.write(f"{'=' * 30} final screen {'=' * 36}\n{last['final_screen']}\n")
            fh.write(
                f"episode on seed {args.seed} {end} after {last['step'] + 1} steps, "
                f"score {last['score']}\n"
            )
    finally:
        if to_file:
            fh.close()
    if to_file:
        _say(f"wrote {args.out}")
    if args.ttyrec:
        from nethack_moe.evaluation.replay import ttyrec3_to_ttyrec

        for rec in sorted(Path(args.ttyrec).glob("*.ttyrec3.bz2")):
            plain = ttyrec3_to_ttyrec(
                rec, rec.with_name(rec.name.replace(".ttyrec3.bz2", ".ttyrec"))
            )
            _say(f"ttyrec: {rec} and {plain}")
    return 0


# ------------------------------------------------------------------------------------ register
def register(sub: Any) -> None:
    """Add ``evaluate``, ``analyze``, ``report``, ``compare`` and ``watch`` to ``sub`` (the
    object returned by ``ArgumentParser.add_subparsers``)."""
    p = sub.add_parser(
        "evaluate",
        help="held-out evaluation of checkpoints (E200: 200 episodes, seeds 100000..100199)",
    )
    p.add_argument("checkpoints", nargs="*", metavar="CKPT", help="checkpoint file(s)")
    p.add_argument(
        "--baseline", action="append", choices=BASELINES,
        help="also play this baseline on the same seeds (repeatable; alone: only the baseline)",
    )  # fmt: skip
    p.add_argument("--episodes", type=_positive, default=E200_EPISODES)
    p.add_argument("--seed-start", type=_non_negative, default=E200_SEED_START)
    p.add_argument(
        "--actions", choices=ACTION_MODES, default="both",
        help="sampled and greedy actions side by side (default), or one of them",
    )  # fmt: skip
    p.add_argument("--greedy", action="store_true", help="greedy actions only (--actions greedy)")
    p.add_argument(
        "--max-steps", type=_positive,
        help="episode cap for this evaluation (named in the protocol; default: the checkpoint's)",
    )  # fmt: skip
    p.add_argument("--workers", type=_non_negative, default=2, help="env processes (0: in-process)")
    p.add_argument("--num-envs", type=_positive, default=16)
    p.add_argument("--policy-seed", type=int, default=0, help="seed of the action sampling")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", metavar="FILE", help="write the evaluation JSON here")
    p.add_argument("--replays", type=_non_negative, default=0, metavar="K",
                   help="HTML replays of the best, median and worst K episodes of each player, "
                   "in replays/ next to --out (index.html)")  # fmt: skip
    p.add_argument("--ttyrec", metavar="DIR",
                   help="with --replays: keep NLE's ttyrec recording of each replayed episode")  # fmt: skip
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("analyze", help="routing figures and per-scenario tables/plots")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--episodes", type=_positive, default=20)
    p.add_argument("--seed-start", type=_non_negative, default=E200_SEED_START)
    p.add_argument("--out-dir", help="default: RUN/analysis/<stem>/")
    p.add_argument(
        "--probe-episodes", type=_non_negative, default=DEFAULT_PROBE_EPISODES,
        help="episodes of each played probe: every expert forced, each reliance replacement, "
        "hint zeroed, hint follower, random (0: none)",
    )  # fmt: skip
    p.add_argument(
        "--permutations", type=_positive, default=DEFAULT_PERMUTATIONS,
        help="permutations of the scenario-information baseline (>= 100 per PROTOCOL.md)",
    )  # fmt: skip
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--workers", type=_non_negative, default=2)
    p.add_argument("--num-envs", type=_positive, default=16)
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_analyze)

    p = sub.add_parser("report", help="markdown report of a run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE", help="default: RUN_DIR/report.md")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("compare", help="runs or evaluation files side by side with CIs")
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_EVAL")
    p.add_argument("--out-dir", help="where compare.md and compare.png go (default: ./compare)")
    p.add_argument("--names", nargs="+", help="labels, one per input (A B C or A,B,C)")
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("watch", help="play one episode with the expert weights shown each step")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--seed", type=_non_negative, default=E200_SEED_START)
    p.add_argument("--steps", type=_positive, help="stop after this many steps (default: the cap)")
    p.add_argument("--out", metavar="FILE", help="write the frames to a text file")
    p.add_argument("--delay", type=float, help="seconds between frames (default 0.1, 0 to a file)")
    p.add_argument("--ttyrec", metavar="DIR", help="also keep NLE's ttyrec recording in DIR")
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_watch)
