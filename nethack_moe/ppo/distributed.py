"""One training run over W processes (ranks) launched by ``torchrun``: PyTorch's own
``torch.distributed``, gloo on the CPU, NCCL on GPUs.

``torchrun --standalone --nproc_per_node 2 -m nethack_moe train --config smoke --device cpu``

What a rank does (the choices, in one place):

* **Envs.** Rank ``r`` steps ``num_envs / W`` envs with its own env workers. Its env slots are the
  global slots ``r * num_envs / W ...`` (:class:`~nethack_moe.envs.factory.SeedPlan` ``offset``), and
  game seeds depend only on the global slot and its episode count, so no two ranks play the same
  game, and the W ranks together play exactly the games one process with ``num_envs`` envs plays.
* **Gradients.** Every rank computes the PPO loss on its own share of the rollout, then
  :meth:`DistContext.average_gradients` all-reduces (averages) the gradients in one flat buffer
  before the gradient-norm clip. This is what ``DistributedDataParallel`` does in its backward
  hook, done by hand because the update goes through :func:`~nethack_moe.ppo.acting.act`
  (``model.encode`` / ``model.head``), which would bypass a DDP wrapper's ``forward`` and so its
  gradient hooks. One code path for 1 and W ranks; parameters are broadcast from rank 0 once at
  start-up (as DDP does) and then stay identical, which every update checks
  (:meth:`DistContext.agree_after_update`). The loss terms are averaged across ranks before the
  NaN/Inf test and the target-KL test, so every rank skips or stops on the same minibatch.
* **Minibatches.** Each rank splits its own rollout into ``num_minibatches``, so the global
  minibatch (over all ranks) has the size of the single-process one. The permutation generator is
  seeded identically on every rank (the rollouts differ, so the minibatches do); advantages are
  normalised per rank's minibatch.
* **Acting noise.** Per rank: rank 0 keeps ``run.seed``, rank ``r`` a seed derived from
  ``(run.seed, r)`` (:meth:`DistContext.rank_seed`).
* **Reward normalisation.** Per rank: each rank's running return variance is that of its own envs
  (the same distribution; no collective per env step), and is part of that rank's checkpoint state.
* **Counters and curriculum.** After each rollout, :class:`RolloutSync` gathers every rank's
  finished episodes; all ranks then hold the same global episode and env-step counts, the same
  best-window scores and therefore the same phase, temperature, checkpoint and stop decisions.
* **Output.** Rank 0 alone writes ``metrics.jsonl`` (every rank's episodes, tagged ``rank``, in a
  single global numbering), TensorBoard and checkpoints. Routing figures and explained variance of
  an update are computed over all ranks' rollouts (:meth:`DistContext.rollout_figures`).
* **Checkpoints.** Each rank's env state, RNG state and reward statistics are gathered into the
  checkpoint (``ranks``, ``world_size``); a W-rank checkpoint resumes exactly on W ranks. Another
  number of ranks is refused in one line (:func:`check_world_size`).
* **Failures.** Every collective runs under ``run.dist_timeout_s``; a dead or stalled rank makes the
  others raise :class:`RankFailure` (exit status 1), and the run's last checkpoint stays usable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist
from torch import Tensor, nn

from nethack_moe.config.train import PPOConfig
from nethack_moe.core.errors import ConfigError
from nethack_moe.metrics.routing import routing_figures_torch
from nethack_moe.ppo.storage import explained_variance
from nethack_moe.runs.checkpoint import CheckpointError, CheckpointPayload
from nethack_moe.runs.rundir import RunDir

if TYPE_CHECKING:
    from nethack_moe.ppo.storage import RolloutStorage

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The checkpoint entries that differ per rank (gathered from every rank into ``ranks``); ``pending``
#: is the rollout collected but not yet learned (``ppo.overlap``).
RANK_KEYS = ("env_state", "rng", "reward_norm", "pending")


class RankFailure(RuntimeError):
    """A collective failed or timed out: another rank died or stalled."""


@dataclass
class DistContext:
    """Where this process stands in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """The device this rank computes on (``cuda:LOCAL_RANK`` for CUDA runs)."""
    timeout_s: float = 300.0
    """The collective timeout given to ``init_process_group``."""
    learn_group: Any = None
    """The process group of the update's collectives (gradients, loss terms). A group of its own:
    with ``ppo.overlap`` the update runs in a background thread while the main thread gathers the
    next rollout's episodes, and each group's collectives must come in the same order on every
    rank."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes metrics, TensorBoard and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank (a process group exists)."""
        return self.world_size > 1

    @property
    def comm_device(self) -> torch.device:
        """Where collective tensors live: the GPU for NCCL, the CPU for gloo."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    # ------------------------------------------------------------------ per-rank shares
    def local_ppo(self, ppo: PPOConfig) -> PPOConfig:
        """``ppo`` with this rank's share of the envs (``num_envs / W``); checks it divides."""
        if not self.distributed:
            return ppo
        W, N = self.world_size, ppo.num_envs
        if N % W:
            raise ConfigError(f"ppo.num_envs={N} must be divisible by the number of ranks ({W})")
        n = N // W
        if n % ppo.env_groups:
            raise ConfigError(
                f"ppo.env_groups={ppo.env_groups} must divide the envs per rank ({N}/{W} = {n})"
            )
        if (n * ppo.rollout_steps) % ppo.num_minibatches:
            raise ConfigError(
                f"ppo.num_minibatches={ppo.num_minibatches} must divide a rank's rollout "
                f"({n} envs x {ppo.rollout_steps} steps)"
            )
        return dataclasses.replace(ppo, num_envs=n)

    def check_workers(self, num_workers: int, local_envs: int) -> None:
        """Each rank starts ``run.num_workers`` env workers for its own envs."""
        if self.distributed and num_workers > local_envs:
            raise ConfigError(
                f"run.num_workers={num_workers} is per rank and must be <= the envs per rank "
                f"({local_envs})"
            )

    def rank_seed(self, seed: int) -> int:
        """The acting-noise seed of this rank: ``seed`` on rank 0, a derived one elsewhere."""
        if self.rank == 0:
            return seed
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, self.rank, 0x5EED])
        return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)

    # ------------------------------------------------------------------ collectives
    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        """Turn a failed or timed-out collective into a one-line :class:`RankFailure`."""
        try:
            yield
        except RuntimeError as e:
            if isinstance(e, RankFailure):
                raise
            cause = " ".join(str(e).split())[:200]
            raise RankFailure(
                f"rank {self.rank} of {self.world_size}: {what} failed ({cause}); another rank "
                f"died or stalled (collective timeout run.dist_timeout_s={self.timeout_s:g} s)"
            ) from e

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            with self._collective("barrier"):
                tdist.barrier()

    def all_reduce_sum(self, t: Tensor, group: Any = None) -> Tensor:
        """Sum ``t`` over the ranks (in place when ``t`` is on :attr:`comm_device`); returns it."""
        if not self.distributed:
            return t
        buf = t.to(self.comm_device)
        with self._collective("all_reduce"):
            tdist.all_reduce(buf, op=tdist.ReduceOp.SUM, group=group)
        if buf is not t:
            t.copy_(buf)
        return t

    def all_gather_objects(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with self._collective("all_gather_object"):
            tdist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give its result (or raise its exception) on every rank."""
        if not self.distributed:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except Exception as e:  # the other ranks raise the same error
                box[0] = ("error", e)
        with self._collective("broadcast from rank 0"):
            tdist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def mean_values(self, terms: dict[str, Tensor]) -> dict[str, float]:
        """Scalar tensors averaged over the ranks, as floats (one all-reduce). A NaN/Inf on any
        rank makes the mean non-finite on every rank, so all ranks skip the same step."""
        if not self.distributed:
            return {k: float(v.detach()) for k, v in terms.items()}
        t = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        t = self.all_reduce_sum(t.to(self.comm_device), self.learn_group) / self.world_size
        return dict(zip(terms, t.tolist(), strict=True))

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Average the gradients over the ranks, in one flat all-reduce (DDP's job, by hand).

        A parameter without a gradient on every rank keeps ``grad=None`` (as in one process, so
        Adam leaves it alone); one with a gradient on some rank gets the average, zeros elsewhere.
        """
        if not self.distributed:
            return
        ps = [p for p in params if p.requires_grad]
        if not ps:
            return
        dtype = ps[0].dtype
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
                 for p in ps]  # fmt: skip
        has = torch.tensor([p.grad is not None for p in ps], dtype=dtype, device=ps[0].device)
        flat = self.all_reduce_sum(torch.cat([*parts, has]).to(self.comm_device), self.learn_group)
        flat = flat.to(ps[0].device)
        flat /= self.world_size
        off = 0
        for p in ps:
            n = p.numel()
            g = flat[off : off + n].view_as(p).to(p.dtype)
            if p.grad is not None:
                p.grad.copy_(g)
            else:
                p.grad = g.clone()
            off += n
        for p, h in zip(ps, flat[off:].tolist(), strict=True):
            if h == 0:
                p.grad = None

    def broadcast_module(self, *modules: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (what DDP does when it wraps a model)."""
        if not self.distributed:
            return
        with self._collective("broadcast of the parameters"), torch.no_grad():
            for t in (t for m in modules for t in m.state_dict().values()):
                buf = t.to(self.comm_device)
                tdist.broadcast(buf, src=0)
                if buf is not t:
                    t.copy_(buf)

    def agree_after_update(self, signum: int | None, model: nn.Module, update: int) -> int | None:
        """After an update: stop on every rank if a signal reached any rank (so that all ranks
        checkpoint together), and check that the parameters are still identical on every rank."""
        if not self.distributed:
            return signum
        with torch.no_grad():
            sums = [p.detach().double().sum() for p in model.parameters()]
            sq = [p.detach().double().square().sum() for p in model.parameters()]
            check = torch.stack([torch.stack(sums).sum(), torch.stack(sq).sum()]).cpu()
        mine = (signum or 0, check.tolist())
        everyone = self.all_gather_objects(mine)
        if any(c != everyone[0][1] for _, c in everyone):
            raise RankFailure(
                f"parameters differ across ranks after update {update} (checksums "
                f"{[c for _, c in everyone]}); this is a bug"
            )
        top = max(s for s, _ in everyone)
        return top or None

    # ------------------------------------------------------------------ checkpoints
    def gather_rank_state(self, payload: CheckpointPayload) -> CheckpointPayload | None:
        """Rank 0: ``payload`` with every rank's :data:`RANK_KEYS` in ``ranks`` (and
        ``world_size``); other ranks: ``None`` (they send theirs). One process: ``payload``."""
        if not self.distributed:
            return payload
        mine = {k: getattr(payload, k) for k in RANK_KEYS}
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        with self._collective("gathering the checkpoint state"):
            tdist.gather_object(mine, out, dst=0)
        if not self.is_main:
            return None
        assert out is not None
        return dataclasses.replace(payload, world_size=self.world_size, ranks=out)

    def rank_state(self, ck: CheckpointPayload) -> CheckpointPayload:
        """A checkpoint as this rank must load it: its own :data:`RANK_KEYS` from ``ranks``."""
        return ck.rank_state(self.rank)

    # ------------------------------------------------------------------ metrics
    def rollout_figures(self, storage: RolloutStorage) -> dict[str, Any]:
        """Rank 0: routing figures and explained variance over every rank's rollout, gathered to
        it. ``{}`` on the other ranks (they write no record) and for one process (the trainer's
        own figures are then those of the whole rollout)."""
        if not self.distributed:
            return {}

        E = storage.alpha.shape[-1]
        mine = torch.cat(
            [storage.alpha.reshape(-1, E), storage.returns.reshape(-1, 1),
             storage.values.reshape(-1, 1)], dim=1,
        ).float().to(self.comm_device)  # fmt: skip
        parts = [torch.empty_like(mine) for _ in range(self.world_size)] if self.is_main else None
        with self._collective("gathering the rollout figures"):
            tdist.gather(mine, parts, dst=0)
        if parts is None:
            return {}
        every = torch.cat(parts).cpu()
        rec: dict[str, Any] = {"explained_var": explained_variance(every[:, E], every[:, E + 1])}
        rec.update(routing_figures_torch(every[:, :E]))
        return rec


# ---------------------------------------------------------------------- set-up and tear-down
def init_distributed(device: torch.device, timeout_s: float) -> DistContext:
    """The context of this process, from torchrun's environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``...). Without torchrun (or with one rank) no process group is
    created. CUDA ranks use ``cuda:LOCAL_RANK`` and NCCL, CPU ranks gloo. A process group that
    already exists (e.g. the second trainer of ``bench train``) is reused."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not tdist.is_initialized():
        return DistContext(device=device, timeout_s=timeout_s)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    global _LEARN_GROUP
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        tdist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        log.info(
            "rank %d of %d (%s, %s)", tdist.get_rank(), tdist.get_world_size(), backend, device
        )
    if _LEARN_GROUP is None:
        _LEARN_GROUP = tdist.new_group(timeout=timedelta(seconds=timeout_s))
    return DistContext(
        rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank,
        local_world_size=local_world, device=device, timeout_s=timeout_s, learn_group=_LEARN_GROUP,
    )  # fmt: skip


#: The update's process group of this process (created once, after the default group).
_LEARN_GROUP: Any = None


def destroy_distributed() -> None:
    """Destroy the process groups, if they exist (end of a torchrun job)."""
    global _LEARN_GROUP
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
    _LEARN_GROUP = None


def env_rank() -> int | None:
    """This process's rank from torchrun's environment (``None`` outside a multi-rank job)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(os.environ.get("RANK", "0"))


def check_world_size(ck: CheckpointPayload, world_size: int, path: Path) -> None:
    """Refuse (one line) to resume a checkpoint on a number of ranks other than its own: each
    rank's envs, RNGs and reward statistics are in it, for that number of ranks."""
    saved = int(ck.world_size or 1)
    if saved != world_size:
        how = "without torchrun" if saved == 1 else f"with torchrun --nproc_per_node {saved}"
        raise CheckpointError(
            f"{path}: written by a {saved}-rank run, this run has {world_size} rank(s); resume "
            f"it on {saved} rank(s) ({how}, nodes x processes = {saved}); changing the number of "
            "ranks is not supported"
        )


def failure_message(e: Exception, ckpt_dir: Path, run_dir: Path, ranks: int = 2) -> str:
    """The error of a failed collective (or learner) with the last checkpoint and how to resume
    (``ranks``: the run's number of ranks)."""
    run = RunDir(run_dir)
    done = run.periodic_checkpoints() + [p for p in [run.final] if p.exists()]
    where = f"last checkpoint {done[-1]}" if done else f"no checkpoint yet in {ckpt_dir}"
    same = " on the same number of ranks" if ranks > 1 else ""
    return f"{e}; {where}; continue with --resume {run_dir}{same}"
