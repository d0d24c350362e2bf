"""Subcommand ``replay`` of ``nethack-moe``: one seeded episode as a self-contained HTML page
(:mod:`nethack_moe.evaluation.replay`), optionally with NLE's ttyrec recording and the per-step JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nethack_moe.cli.errors import UsageError
from nethack_moe.evaluation.runner import E200_SEED_START


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_replay(args: argparse.Namespace) -> int:
    from nethack_moe.evaluation.replay import record_episode, ttyrec3_to_ttyrec
    from nethack_moe.evaluation.replay_page import write_episode_json, write_html

    if (args.checkpoint is None) == (args.baseline is None):
        raise UsageError("give a checkpoint or --baseline NAME (one of them)")
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} does not exist")
    frames, meta = record_episode(
        checkpoint=args.checkpoint, baseline=args.baseline, seed=args.seed, greedy=args.greedy,
        steps=args.steps, ttyrec_dir=args.ttyrec, device=args.device,
    )  # fmt: skip
    out = write_html(frames, meta, args.out)
    size = out.stat().st_size
    _say(f"{meta.player} on seed {meta.seed}: score {frames[-1].score} after {len(frames)} steps"
         f"{', died' if frames[-1].died else ''}")  # fmt: skip
    _say(f"wrote {out} ({size / 1e6:.2f} MB)")
    if args.json:
        _say(f"wrote {write_episode_json(frames, meta, args.json)}")
    if args.ttyrec:
        for rec in sorted(Path(args.ttyrec).glob("*.ttyrec3.bz2")):
            plain = ttyrec3_to_ttyrec(
                rec, rec.with_name(rec.name.replace(".ttyrec3.bz2", ".ttyrec"))
            )
            _say(f"ttyrec: {rec} (NLE's, with actions) and {plain} (plain, for any ttyrec player)")
    return 0


def register(sub: Any) -> None:
    """Add ``replay`` to the CLI's subparsers."""
    from nethack_moe.evaluation.players import BASELINES

    p = sub.add_parser("replay", help="one seeded episode as a self-contained HTML replay")
    p.add_argument("checkpoint", nargs="?", metavar="CKPT")
    p.add_argument(
        "--baseline", choices=BASELINES, help="replay a baseline instead of a checkpoint"
    )
    p.add_argument("--seed", type=int, default=E200_SEED_START, help="game seed (core = disp)")
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampled")
    p.add_argument("--steps", type=int, help="stop after this many steps (default: the cap)")
    p.add_argument("--out", default="episode.html", metavar="FILE.html")
    p.add_argument("--json", metavar="FILE", help="also write the per-step figures as JSON")
    p.add_argument("--ttyrec", metavar="DIR", help="also keep NLE's ttyrec recording in DIR")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_replay)
