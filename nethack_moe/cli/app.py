"""``nethack-moe``: the command line. Library code logs; only this module prints.

Exit status: 0 success, 2 bad input (config, checkpoint, paths) or a full disk (the checkpoints
already on disk are intact), 1 failure during the work (non-finite losses, env workers that keep
dying: a checkpoint was written), 130 / 143 training interrupted by SIGINT / SIGTERM (a checkpoint
was written).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
from pathlib import Path
from typing import Any

from nethack_moe.cli.errors import EXIT_BAD_INPUT, UsageError


def _write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"wrote {path}")


def _table(rows: list[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(w)}  {v}" for k, v in rows)


# ---------------------------------------------------------------- commands
def cmd_version(args: argparse.Namespace) -> int:
    import nle
    import torch

    from nethack_moe import __version__

    print(
        f"nethack-moe {__version__} (torch {torch.__version__}, nle {getattr(nle, '__version__', '?')})"
    )
    return 0


def cmd_bench_env(args: argparse.Namespace) -> int:
    from nethack_moe.ppo.bench import bench_env

    r = bench_env(args.num_envs, args.workers, args.steps, args.task)
    m = r["machine"]
    print(
        f"bench env — {m['cpu']} ({m['cores']} cores), torch {m['torch']}, nle {m['nle']}, {m['date']}"
    )
    print(
        _table(
            [
                (
                    f"env SPS (raw NLE, random actions, {r['raw_processes']} proc)",
                    f"{r['env_sps']:,.0f}",
                ),
                (
                    f"vector SPS (N={r['num_envs']}, W={r['workers']}, features)",
                    f"{r['vector_sps']:,.0f}",
                ),
                ("ratio vector / raw", f"{r['ratio']:.2f}"),
            ]
        )
    )
    _write_json(args.json, r)
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from nethack_moe.ppo.bench import bench_train
    from nethack_moe.ppo.distributed import env_rank

    r = bench_train(
        args.config, args.max_env_steps, args.set or [], args.device,
        with_rollout=not args.no_rollout, with_env=not args.no_env, with_train=args.what == "train",
    )  # fmt: skip
    if env_rank() not in (None, 0):  # torchrun: rank 0 reports for the run
        return 0
    m = r["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    print(f"bench train — {m['cpu']} ({m['cores']} cores{gpu}), torch {m['torch']}, {m['date']}")
    print(
        f"config {r['config']} {' '.join(r['overrides'])}: N={r['num_envs']} envs, W={r['num_workers']} workers, device {r['device']}"
    )
    print(f"world_size {r['world_size']} rank(s) (torchrun), {r['envs_per_rank']} envs and "
          f"{r['num_workers']} env workers per rank")  # fmt: skip
    rows = []
    if "env_sps" in r:
        rows.append(
            (
                f"env SPS (raw NLE, {r['env_processes']} proc, random actions)",
                f"{r['env_sps']:,.0f}",
            )
        )
    if "rollout_sps" in r:
        rows.append(("rollout SPS (policy + features, no learning)", f"{r['rollout_sps']:,.0f}"))
    if "train_sps" in r:
        rows.append(
            (f"train SPS ({r['env_steps']:,} steps, learning included)", f"{r['train_sps']:,.0f}")
        )
        if r["world_size"] > 1:
            rows.append(("train SPS per rank", f"{r['train_sps_per_rank']:,.0f}"))
    sp = r["time_split_s"]
    rows.append(("time split: env wait / features* / inference / learning (s)",
                 " / ".join(f"{sp[k]:.1f}" for k in ("env", "features", "inference", "learning"))))  # fmt: skip
    print(_table(rows))
    print(
        "  * features run inside the env workers, in parallel with inference (worker CPU seconds)"
    )
    _write_json(args.json, r)
    return 0


def cmd_bench_model(args: argparse.Namespace) -> int:
    from nethack_moe.models.bench import bench_model

    sizes = tuple(int(x) for x in args.batch_sizes.split(","))
    r = bench_model(args.variant, batch_sizes=sizes, device=args.device, states=args.states,
                    threads=args.threads)  # fmt: skip
    print(f"bench model — variant {r['variant']}, {r['params']:,} parameters, device {r['device']}, "
          f"{r['threads']} threads, {r['states']} states")  # fmt: skip
    rows = [
        (f"batch {b} ({r['distinct_atoms'][b]} distinct atom vectors)",
         f"fwd {r['fwd_ms'][b]:.1f} ms   fwd+bwd {r['fwd_bwd_ms'][b]:.1f} ms "
         f"(CPU {r['fwd_bwd_cpu_ms'][b]:.1f} ms)")
        for b in sizes
    ]  # fmt: skip
    print(_table(rows))
    _write_json(args.json, r)
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from nethack_moe.knowledge.graph import format_stats
    from nethack_moe.knowledge.loader import load_graph

    g = load_graph(args.path)
    print(format_stats(g.stats()))
    return 0


def _train_sets(args: argparse.Namespace) -> list[str]:
    """``--set`` of ``train`` with its shortcuts (``--device``, ``--name``, ``--workers``) added."""
    sets = list(args.set or [])
    if getattr(args, "device", None):
        sets.append(f"run.device={args.device}")
    if getattr(args, "name", None):
        sets.append(f"run.name={args.name}")
    if getattr(args, "workers", None) is not None:
        sets.append(f"run.num_workers={args.workers}")
    return sets


def cmd_train(args: argparse.Namespace) -> int:
    from nethack_moe.config.train import make_config
    from nethack_moe.envs.vector import WorkerError
    from nethack_moe.ppo.distributed import RankFailure, env_rank
    from nethack_moe.ppo.trainer import LearnerError, NonFiniteError, Trainer, TrainingInterrupted

    main_rank = env_rank() in (None, 0)  # torchrun: rank 0 speaks for the run

    try:
        if args.resume:  # the run's own config, or (--config given) continue into that config
            from nethack_moe.runs.resume import resume_config

            plan = resume_config(Path(args.resume), args.config, _train_sets(args))
            trainer = Trainer(plan.cfg, resume=plan.checkpoint, run_dir=plan.run_dir)
        else:
            cfg = make_config(args.config or "s500", _train_sets(args))
            trainer = Trainer(cfg, overwrite=args.overwrite)
        summary = trainer.run()
    except TrainingInterrupted as e:
        if main_rank:
            print(f"nethack-moe: {e}", file=sys.stderr)
        return 130 if e.signum == 2 else 143
    except RankFailure as e:  # torchrun: another rank died or stalled
        print(f"nethack-moe: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except NonFiniteError as e:
        print(f"nethack-moe: {e}", file=sys.stderr)
        return 1
    except (WorkerError, LearnerError) as e:
        print(f"nethack-moe: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (start-up, shutdown)
        print("nethack-moe: interrupted outside a training update; no new checkpoint written",
              file=sys.stderr)  # fmt: skip
        return 130
    if not main_rank:
        return 0
    print(
        f"done: {summary['episodes']} episodes, {summary['env_steps']:,} env steps in "
        f"{summary['wall_s']:.0f} s ({summary['train_sps']:,.0f} SPS); final checkpoint {summary['final']}"
    )
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="nethack-moe",
        description="Train, evaluate and explain a GAT-guided mixture-of-experts NetHack agent.",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("version", help="print versions")
    p.set_defaults(fn=cmd_version)

    p = sub.add_parser("train", help="PPO training under the routing curriculum (default: S500)")
    p.add_argument(
        "--config",
        help="preset name (s500, smoke, finetune_7000) or YAML file (default s500); with --resume: "
        "continue the checkpoint into this config (seed, env, num_envs and model must match)",
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR_OR_CKPT",
        help="continue a run from its newest complete checkpoint; without --config: with the "
        "run's own saved config, name and directory, and --set may change only run.num_workers, "
        "run.device, run.progress, "
        "run.tensorboard, run.torch_threads, run.max_env_steps, run.checkpoint_every, "
        "run.keep_checkpoints, run.max_worker_restarts, run.dist_timeout_s, ppo.learner",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument(
        "--device", choices=["cpu", "cuda", "auto"], help="shortcut for --set run.device="
    )
    p.add_argument("--name", help="shortcut for --set run.name=")
    p.add_argument("--workers", type=int, help="shortcut for --set run.num_workers=")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("graph", help="print knowledge-graph statistics")
    p.add_argument("--path", help="graph YAML (default: the packaged one)")
    p.set_defaults(fn=cmd_graph)

    b = sub.add_parser("bench", help="throughput benchmarks").add_subparsers(
        dest="what", required=True
    )
    p = b.add_parser("env", help="raw NLE SPS vs vector env SPS (with features)")
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=40000, help="total env steps per measurement")
    p.add_argument("--task", default="NetHackScore-v0")
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(fn=cmd_bench_env)
    for what, helptext in (("train", "train SPS with learning, time split, rollout SPS and env SPS"),
                           ("rollout", "rollout SPS of the policy without learning, and env SPS")):  # fmt: skip
        p = b.add_parser(what, help=helptext)
        p.add_argument("--config", default="s500")
        p.add_argument("--set", action="append", metavar="KEY=VALUE")
        p.add_argument("--max-env-steps", type=int, default=100_000)
        p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
        p.add_argument("--no-env", action="store_true", help="skip the raw env SPS measurement")
        p.add_argument("--json", help="write the result as JSON")
        p.set_defaults(fn=cmd_bench_train, no_rollout=False)
        if what == "train":
            p.add_argument(
                "--no-rollout", action="store_true", help="skip the separate rollout run"
            )
    p = b.add_parser("model", help="parameters and forward/backward time per batch size")
    p.add_argument("--variant", default="gat_moe")
    p.add_argument("--batch-sizes", default="32,256,1024")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--states", choices=("visited", "random"), default="visited",
        help="visited: the shipped sample of states a playing agent visits (default); random: "
        "random play near the start (few distinct atom vectors: flatters the graph)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(fn=cmd_bench_model)

    from nethack_moe.cli.commands_eval import register as register_eval_commands

    register_eval_commands(sub)
    from nethack_moe.cli.commands_sweep import register as register_sweep

    register_sweep(sub)
    from nethack_moe.cli.commands_replay import register as register_replay

    register_replay(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nethack-moe`` console script."""
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from nethack_moe.core.errors import ConfigError
    from nethack_moe.runs.checkpoint import CheckpointError

    try:
        return int(args.fn(args) or 0)
    except (UsageError, ConfigError, CheckpointError, FileExistsError, FileNotFoundError) as e:
        print(f"nethack-moe: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as e:
        if type(e).__name__ in ("GraphError",):
            print(f"nethack-moe: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # full disk: the message names the file
            print(f"nethack-moe: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """torchrun: destroy the process group (if torch and one exist) before the process exits."""
    if "torch.distributed" in sys.modules:
        from nethack_moe.ppo.distributed import destroy_distributed

        destroy_distributed()


def _one_line(e: BaseException) -> str:
    """An error message on one line (YAML parser errors, for one, span several)."""
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())
