"""One training on 2 ranks (torchrun, gloo, CPU): parameters identical after every update, one
metrics file with both ranks' episodes on disjoint seeds, exact resume on 2 ranks, another number
of ranks refused in one line, and a dead rank that ends the run with a clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from run_records import comparable_records as _records

from nethack_moe.config.train import make_config
from nethack_moe.core.errors import ConfigError
from nethack_moe.envs.factory import SeedPlan, train_seeds
from nethack_moe.ppo.distributed import DistContext, init_distributed
from nethack_moe.ppo.trainer import Trainer
from nethack_moe.runs.checkpoint import CheckpointError, load_checkpoint
from nethack_moe.runs.rundir import find_resume_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("dist_worker.py")

#: The smoke preset made cheap for 2 shared cores (as tests/reliability): 2 envs per rank, in
#: the rank's own process.
SETS = (
    "model.variant=mlp_single", "run.tensorboard=false", "run.progress=false", "run.device=cpu",
    "run.torch_threads=1", "run.num_workers=0", "run.dist_timeout_s=60",
)  # fmt: skip


def _sets(out: Path, name: str, *extra: str) -> list[str]:
    return [*SETS, f"run.out_dir={out}", f"run.name={name}", *extra]


def _cli_sets(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def _torchrun(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (as ``python -m torch.distributed.run``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *args]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stderr[-4000:]}"
    return p


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """A full 2-rank smoke training under torchrun, each rank writing its parameter digests."""
    tmp = tmp_path_factory.mktemp("dist")
    _torchrun([str(WORKER), str(tmp), *_sets(tmp, "full")])
    return tmp


def test_parameters_are_identical_on_every_rank_after_every_update(two_ranks):
    d = [json.loads((two_ranks / f"digests_rank{r}.json").read_text()) for r in (0, 1)]
    assert [x["world_size"] for x in d] == [2, 2]
    assert len(d[0]["digests"]) >= 5
    assert d[0]["digests"] == d[1]["digests"]
    assert len(set(d[0]["digests"])) == len(d[0]["digests"]), "every update changed the model"
    ups = _records(two_ranks / "full", ("update",))
    assert len(ups) == len(d[0]["digests"]), "one update record per update (rank 0 alone)"


def test_one_metrics_file_with_both_ranks_episodes_on_disjoint_seeds(two_ranks):
    run = two_ranks / "full"
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "run_start" for r in recs) == 1
    assert next(r for r in recs if r["type"] == "run_start")["world_size"] == 2
    eps = [r for r in recs if r["type"] == "episode"]
    assert [r["episode"] for r in eps] == list(range(1, len(eps) + 1))
    assert len(eps) >= 12
    assert {r["rank"] for r in eps} == {0, 1}
    assert {r["env_index"] for r in eps if r["rank"] == 0} <= {0, 1}
    assert {r["env_index"] for r in eps if r["rank"] == 1} <= {2, 3}
    seeds = {
        rank: {(r["seed_core"], r["seed_disp"]) for r in eps if r["rank"] == rank}
        for rank in (0, 1)
    }
    assert not seeds[0] & seeds[1], "no two ranks play the same game"
    # the ranks play exactly the games of one process with the same 4 env slots
    k: Counter[int] = Counter()
    for r in eps:
        assert (r["seed_core"], r["seed_disp"]) == train_seeds(1, r["env_index"], k[r["env_index"]])
        k[r["env_index"]] += 1
    # the curriculum switched phases on the global episode count, as in one process
    assert {r["phase"] for r in eps} == {"warmup", "transition", "finetune"}
    ck = load_checkpoint(run / "checkpoints" / "final.pt")
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2
    assert ck["counters"]["episodes"] == len(eps)


def test_a_two_rank_checkpoint_resumes_exactly_on_two_ranks(two_ranks, tmp_path):
    """Interrupted after update 5 (as by SIGINT, with a checkpoint), then resumed by the CLI under
    torchrun (``-m nethack_moe``): the same records as the uninterrupted run."""
    _torchrun([str(WORKER), str(tmp_path), "--stop-after-updates", "5", *_sets(tmp_path, "cut")])
    ck = load_checkpoint(find_resume_checkpoint(tmp_path / "cut"))
    assert ck["world_size"] == 2 and ck["counters"]["updates"] == 5
    assert [r["pending"] is not None for r in ck["ranks"]] == [True, True], "ppo.overlap (smoke)"
    _torchrun(["-m", "nethack_moe", "train", "--resume", str(tmp_path / "cut"),
               "--set", "run.max_env_steps=0"])  # fmt: skip
    assert _records(tmp_path / "cut") == _records(two_ranks / "full")


def test_learner_processes_under_torchrun_match_the_thread_run_and_resume(two_ranks, tmp_path):
    """One learner process per rank, gradients averaged in the learners' own process group:
    interrupted after update 5 and resumed by the CLI, the records of the thread-learner run."""
    sets = _sets(tmp_path, "cut", "ppo.learner=process")
    _torchrun([str(WORKER), str(tmp_path), "--stop-after-updates", "5", *sets])
    ck = load_checkpoint(find_resume_checkpoint(tmp_path / "cut"))
    assert ck["counters"]["updates"] == 5
    _torchrun(["-m", "nethack_moe", "train", "--resume", str(tmp_path / "cut"),
               "--set", "run.max_env_steps=0"])  # fmt: skip
    assert _records(tmp_path / "cut") == _records(two_ranks / "full")


def test_another_number_of_ranks_is_refused_in_one_line(two_ranks):
    cfg = make_config("smoke", _sets(two_ranks, "full"))
    with pytest.raises(CheckpointError, match="2-rank run") as e:
        Trainer(cfg, resume=two_ranks / "full")
    assert "\n" not in str(e.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_rank_ends_the_run_with_a_clear_error_and_a_usable_checkpoint(tmp_path):
    """Rank 1 dies at update 4 (after the checkpoint of episode 4): rank 0 (the CLI) stops with
    one error line naming the last checkpoint, well before the collective timeout."""
    # the plain loop (no ppo.overlap) on 2 ranks is covered here too
    sets = _sets(tmp_path, "dead", "run.dist_timeout_s=30", "ppo.overlap=false")
    base = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(_free_port()), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")  # fmt: skip
    procs = []
    for rank, cmd in enumerate((
        [sys.executable, "-m", "nethack_moe", "train", "--config", "smoke", *_cli_sets(sets)],
        [sys.executable, str(WORKER), str(tmp_path), "--die-at-update", "4", *sets],
    )):  # fmt: skip
        env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    t0 = time.monotonic()
    try:
        _, err0 = procs[0].communicate(timeout=180)
        _, err1 = procs[1].communicate(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[1].returncode == 7, err1[-3000:]
    assert procs[0].returncode == 1, err0[-3000:]
    assert time.monotonic() - t0 < 150
    lines = [ln for ln in err0.splitlines() if ln.startswith("nethack-moe:")]
    assert len(lines) == 1 and "another rank died or stalled" in lines[0], err0[-3000:]
    assert "last checkpoint" in lines[0] and "--resume" in lines[0]
    ck = load_checkpoint(find_resume_checkpoint(tmp_path / "dead"))
    assert ck["world_size"] == 2 and ck["counters"]["episodes"] >= 4


# ---------------------------------------------------------------------- pieces, one process
def test_seed_plan_offset_is_the_global_slot():
    plan, shifted = SeedPlan("train", 7), SeedPlan("train", 7, offset=2)
    assert [shifted.seeds(i, k) for i in range(2) for k in range(3)] == [
        plan.seeds(i + 2, k) for i in range(2) for k in range(3)
    ]


def test_one_process_creates_no_process_group(monkeypatch):
    import torch
    import torch.distributed as tdist

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed(torch.device("cpu"), 10.0)
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert not tdist.is_initialized()
    assert ctx.rank_seed(5) == 5


def test_envs_are_split_over_the_ranks_or_refused():
    ppo = make_config("smoke", ["run.device=cpu"]).ppo
    assert DistContext().local_ppo(ppo) is ppo
    assert DistContext(rank=1, world_size=2).local_ppo(ppo).num_envs == 2
    with pytest.raises(ConfigError, match="divisible"):
        DistContext(world_size=3).local_ppo(ppo)
    assert DistContext(rank=1, world_size=2).rank_seed(5) != 5


def test_kickstart_under_torchrun_keeps_the_ranks_identical(tmp_path):
    """The teacher term on 2 ranks: each rank's workers advise on its own envs, the gradients
    (teacher term included) are averaged, the parameters agree after every update."""
    phases = (
        "curriculum.phases=[{name: warmup, start_episode: 0, lr: 1.0e-3, teacher: [1.0, 0.5]},"
        "{name: transition, start_episode: 6, routing: sparsemax, lr: 5.0e-4, teacher: [0.5, 0.0]}]"
    )
    sets = _sets(tmp_path, "ks", "env.teacher=true", phases, "model.variant=mlp_moe")
    _torchrun([str(WORKER), str(tmp_path), *sets])
    d = [json.loads((tmp_path / f"digests_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(d[0]["digests"]) >= 5 and d[0]["digests"] == d[1]["digests"]
    ups = _records(tmp_path / "ks", ("update",))
    assert all(u["loss/teacher"] > 0 and 0 <= u["teacher/agree"] <= 1 for u in ups)
    assert ups[0]["teacher/coef"] == 1.0 and ups[-1]["teacher/coef"] < 0.5
