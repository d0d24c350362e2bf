"""Subcommands ``evaluate``, ``analyze``, ``report``, ``compare`` and ``watch`` of ``nethack-moe``.

:func:`register` adds them to the CLI's subparsers. Handlers return an exit status; bad input
raises :class:`nethack_moe.cli.UsageError` or lets :class:`CheckpointError` through (``cli.main``
maps both to exit status 2 with a one-line message). An evaluation in which an episode failed twice
still writes its file but exits with status 1.
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
from nethack_moe.core.formatting import ci, num, pct
from nethack_moe.evaluation.evaluate import ACTION_MODES
from nethack_moe.evaluation.players import BASELINES
from nethack_moe.evaluation.runner import E200_EPISODES, E200_SEED_START
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.information import DEFAULT_PERMUTATIONS
from nethack_moe.metrics.router_figures import RelianceFigure, ScenarioInformation
from nethack_moe.metrics.routing import verdict as routing_verdict
from nethack_moe.metrics.teacher_figures import ALL_STATES, TeacherFigures
from nethack_moe.metrics.verdict import verdict_of


def _usage_error(msg: str) -> Exception:
    from nethack_moe.cli.errors import UsageError  # lazy: cli imports this module

    return UsageError(msg)


def _say(text: str = "", file: TextIO | None = None) -> None:
    (file or sys.stdout).write(text + "\n")


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(w)}  {v}" for k, v in rows)


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


# ------------------------------------------------------------------------------------ evaluate
def _eval_rows(entry: dict[str, Any]) -> list[tuple[str, str]]:
    s = entry["summary"]
    r = s.get("routing") or {}
    rows = [
        (
            "episodes",
            f"{s['n']}" + (f" ({len(entry['failed'])} missing)" if entry.get("failed") else ""),
        ),
        ("mean ± std", f"{num(s['mean'])} ± {num(s['std'])}"),
        ("95 % CI of mean", f"{ci(s['ci_mean'])} ({s.get('ci_method')})"),
        ("median", num(s["median"], 1)),
        ("IQM", num(s["iqm"])),
        ("95 % CI of IQM", ci(s["ci_iqm"])),
        ("max", num(s["max"], 0)),
        ("death rate", pct(s["died"])),
        ("mean depth", num(s["depth"])),
        ("mean length", num(s["length"], 1)),
        ("mean reward", num(s.get("reward"), 3)),
        ("hinted move taken", pct((s.get("hint") or {}).get("follow_share"))),
    ]
    if entry.get("greedy_result"):
        g = entry["greedy_result"]["summary"]
        rows.append(
            ("greedy: mean [CI]", f"{num(g['mean'])} {ci(g['ci_mean'])}, died {pct(g['died'])}, "
             f"depth {num(g['depth'])}, hinted move {pct((g.get('hint') or {}).get('follow_share'))}")
        )  # fmt: skip
    if not r:
        return rows + teacher_rows(s.get(mn.TEACHER)) + _entry_notes(entry)
    src = f" (from the {entry['routing_source']})" if entry.get("routing_source") else ""
    rows += [
        ("routing", f"{entry.get('routing')} T={num(entry.get('temperature'), 3)}{src}"),
        (
            "alpha entropy (per-state sharpness)",
            f"{num(r.get(mn.ALPHA_ENTROPY), 4)} ± {num(r.get(mn.ALPHA_ENTROPY_STD), 4)}",
        ),
        ("usage entropy", num(r.get(mn.USAGE_ENTROPY), 4)),
        ("routing MI (usage balance)", num(mn.routing_value(r, mn.MI), 4)),
        ("effective experts", num(r.get(mn.EFFECTIVE_EXPERTS))),
        ("sparsity", pct(r.get(mn.SPARSITY))),
        ("switch rate", pct(r.get(mn.SWITCH_RATE))),
    ]
    names = r.get("expert_names") or []
    usage, share = r.get(mn.USAGE) or [], r.get(mn.ARGMAX_SHARE) or []
    if names and usage:
        rows.append(
            (
                "usage ᾱ / argmax",
                ", ".join(
                    f"{n} {num(u)}/{pct(a)}" for n, u, a in zip(names, usage, share, strict=False)
                ),
            )
        )
    rows.append(("routing figures", routing_verdict(r, len(names))))
    rows += _specialization_rows(s)
    return rows + _entry_notes(entry)


def _specialization_rows(s: dict[str, Any], *, with_verdict: bool = True) -> list[tuple[str, str]]:
    """Scenario information next to its baselines, reliance, and the verdict built from them
    (evaluate and analyze print the same rows)."""
    rows = []
    info = ScenarioInformation.from_json(s.get("specialization"))
    if info is not None:
        null = info.null
        rows.append(
            (
                "scenario information",
                f"{num(info.mi, 4)} nats ({pct(info.normalized)} of H), permuted p95 "
                f"{num(info.shuffled_p95, 4)}, episode-shift p95 {num(info.shifted_p95, 4)}; "
                f"against the {null.name} null: p = {num(null.p_value, 3)}",
            )
        )
    for key, label in (("graph_mean", "h_graph → mean"), ("graph_zero", "h_graph → 0"),
                       ("state_mean", "h_state → mean"), ("state_zero", "h_state → 0")):  # fmt: skip
        f = RelianceFigure.from_json(key, (s.get("reliance") or {}).get(key))
        if f is not None:
            sd = f.score_diff
            score = ""
            if sd is not None and sd.diff is not None:
                score = f", score {sd.text()} (paired, {sd.n} seeds)"
            elif f.score_change is not None:
                score = f", score {f.score_change:+.1f} (no per-seed figures: no CI)"
            rows.append(
                (label, f"argmax expert changes {pct(f.argmax_change)}, α moves "
                        f"{num(f.alpha_change, 3)}, policy KL {num(f.policy_kl, 4)}{score}")
            )  # fmt: skip
    rows += teacher_rows(s.get(mn.TEACHER))
    if with_verdict and (info is not None or s.get("reliance") is not None):
        rows.append(("verdict", verdict_of(s)))
    return rows


def teacher_rows(block: Any) -> list[tuple[str, str]]:
    """The figures against the teacher's branches (a ``teacher`` block), one row each: branch
    information next to its nulls, agreement, and per branch the forced expert that most raises
    π(teacher's action)."""
    t = TeacherFigures.from_json(block)
    if t is None:
        return []
    rows = []
    info = t.information
    if info is not None:
        rows.append(
            (
                "teacher's branch information",
                f"{num(info.mi, 4)} nats ({pct(info.normalized)} of H), permuted p95 "
                f"{num(info.shuffled_p95, 4)}, episode-shift p95 {num(info.shifted_p95, 4)}; "
                f"against the {info.null.name} null: p = {num(info.null.p_value, 3)}",
            )
        )
    a = t.agreement.get(ALL_STATES)
    if a is not None:
        per = ", ".join(f"{b} {pct(x.taken)}" for b, x in t.agreement.items() if b != ALL_STATES)
        am = f", π argmax {pct(a.argmax)}" if a.argmax is not None else ""
        rows.append(
            (
                "teacher's action taken",
                f"{pct(a.taken)} of {a.n_states} states ({t.actions}){am}; {per}",
            )
        )
    for b, x in (t.interventions or {}).items():
        pb = x.ranking.point_best
        g = x.gain.get(pb) if pb is not None else None
        best = x.best or (f"undetermined (point best {pb})" if pb else "–")
        gain = f", {g.text(3)} over the router" if g is not None else ""
        rows.append(
            (
                f"branch {b}",
                f"{x.n_states} states, π(teacher's action) {num(x.router_prob, 3)} with the "
                f"router; best forced expert {best}{gain}",
            )
        )
    return rows


def _entry_notes(entry: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if entry.get("retried"):
        rows.append(("retried (crash)", ", ".join(str(x) for x in entry["retried"])))
    if entry.get("failed"):
        rows.append(("FAILED twice", ", ".join(str(f["seed"]) for f in entry["failed"])))
    return rows


def _side_by_side(ckpts: dict[str, Any]) -> str:
    cols = list(ckpts)
    keys = [
        ("n", lambda s, r: str(s["n"])),
        ("mean", lambda s, r: num(s["mean"])),
        ("95 % CI mean", lambda s, r: ci(s["ci_mean"])),
        ("std", lambda s, r: num(s["std"])),
        ("median", lambda s, r: num(s["median"], 1)),
        ("IQM", lambda s, r: num(s["iqm"])),
        ("95 % CI IQM", lambda s, r: ci(s["ci_iqm"])),
        ("max", lambda s, r: num(s["max"], 0)),
        ("died", lambda s, r: pct(s["died"])),
        ("depth", lambda s, r: num(s["depth"])),
        ("length", lambda s, r: num(s["length"], 1)),
        ("hinted move", lambda s, r: pct((s.get("hint") or {}).get("follow_share"))),
        ("alpha entropy", lambda s, r: num(r.get(mn.ALPHA_ENTROPY), 4)),
        ("routing MI", lambda s, r: num(mn.routing_value(r, mn.MI), 4)),
        ("eff. experts", lambda s, r: num(r.get(mn.EFFECTIVE_EXPERTS))),
        ("switch rate", lambda s, r: pct(r.get(mn.SWITCH_RATE))),
    ]
    table = [["", *cols]]
    for label, fn in keys:
        row = [label]
        for c in cols:
            s = ckpts[c]["summary"]
            row.append(fn(s, s.get("routing") or {}))
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for j, r in enumerate(table):
        lines.append("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _columns(ckpts: dict[str, Any]) -> dict[str, Any]:
    """One column per played set of episodes: each checkpoint (sampled, then greedy beside it)
    and each baseline."""
    cols: dict[str, Any] = {}
    for name, entry in ckpts.items():
        label = name + (" (greedy)" if entry.get("greedy") else "")
        cols[label] = entry
        if entry.get("greedy_result"):
            cols[f"{name} (greedy)"] = entry["greedy_result"]
    return cols


def _entry_header(name: str, entry: dict[str, Any], proto: str, seeds: str) -> str:
    if entry.get("player", "policy") != "policy":
        return f"{name} — baseline, {proto}, {seeds}"
    mode = "greedy" if entry.get("greedy") else "sampled"
    return f"{name} — {entry['path']} (episode {entry['episode']}), {proto} {mode}, {seeds}"


def evaluation_text(res: dict[str, Any]) -> str:
    """What ``evaluate`` prints for an evaluation JSON object, every verdict built from its
    figures (also used to re-render a stored evaluation file)."""
    proto = res["protocol"]
    seeds = f"seeds {res['seed_start']}..{res['seed_start'] + res['episodes'] - 1}"
    out: list[str] = []
    for name, entry in res["checkpoints"].items():
        out += [_entry_header(name, entry, proto, seeds), _rows(_eval_rows(entry)), ""]
    cols = _columns(res["checkpoints"])
    if len(cols) > 1:
        out += [
            f"side by side ({proto}, score; 95 % bootstrap CIs; same seeds)",
            _side_by_side(cols),
            "",
        ]
    out += [f"wrote {p}" for p in res.get("written", [])]
    return "\n".join(out) + "\n"


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


def analysis_text(r: dict[str, Any]) -> str:
    """What ``analyze`` prints for an ``analysis.json`` object, the verdict built from its
    figures (also used to re-render a stored analysis)."""
    from nethack_moe.analysis.analyze import scenario_markdown

    fig = r["figures"]
    head = (
        f"{r['name']} (episode {r['episode']}), routing {r['routing']} T={r['temperature']:.3g}, "
        f"{r['episodes']} episodes, {r['n_states']} states; probes on {r.get('probe_episodes', 0)} seeds"
    )
    rows = _rows(
        [
            ("alpha entropy (per-state sharpness)", num(fig[mn.ALPHA_ENTROPY], 4)),
            ("usage entropy", num(fig[mn.USAGE_ENTROPY], 4)),
            ("routing MI (usage balance)", num(mn.routing_value(fig, mn.MI), 4)),
            ("effective experts", num(fig[mn.EFFECTIVE_EXPERTS])),
            ("sparsity", pct(fig[mn.SPARSITY])),
            ("switch rate", pct(fig[mn.SWITCH_RATE])),
            *_specialization_rows(r, with_verdict=False),
            *_probe_rows(r),
        ]
    )
    files = r.get("files") or {}
    where = Path(files["markdown"]).parent if files.get("markdown") else Path(".")
    return (
        "\n".join(
            [
                head,
                rows,
                "",
                scenario_markdown(r["scenario_table"]),
                "",
                f"Verdict: {verdict_of(r)}",
                f"wrote {where}/ (analysis.json, analysis.md, 4 PNGs)",
            ]
        )
        + "\n"
    )


def _probe_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Interventions and hint reliance of an ``analysis.json`` object, one row each."""
    rows = []
    for name, p in (r.get("interventions") or {}).items():
        rows.append(
            (
                f"forced: {name}" if name != "router" else "learned router",
                f"score {num(p['mean_score'], 1)}, depth {num(p['depth'])}, died {pct(p['died'])}; "
                f"HP lost/step {num(p.get('hp_lost_per_step'), 3)}, kills/combat state "
                f"{num(p.get('kills_per_combat_state'), 3)}, new cells/step "
                f"{num(p.get('new_cells_per_step'), 3)}",
            )
        )
    h = r.get("hint") or {}
    if h:
        rows.append(
            (
                "hint",
                f"hinted move taken {pct(h.get('follow_share'))}; score {num(h.get('policy_mean_score'), 1)}, "
                f"hint zeroed {num(h.get('zeroed_mean_score'), 1)}, hint follower "
                f"{num(h.get('follower_mean_score'), 1)}, random {num(h.get('random_mean_score'), 1)}",
            )
        )
    return rows


# ------------------------------------------------------------------------------------ report
def cmd_report(args: argparse.Namespace) -> int:
    from nethack_moe.report import write_report

    run = Path(args.run_dir)
    if not run.is_dir():
        raise _usage_error(f"run directory {args.run_dir!r} does not exist")
    if not (run / "metrics.jsonl").is_file():
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
