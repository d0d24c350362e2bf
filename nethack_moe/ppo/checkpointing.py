"""The trainer's checkpoints: when (every ``run.checkpoint_every`` episodes, a new best window
mean score), how many are kept (``run.keep_checkpoints``), writing one (rank 0 alone, with the
``checkpoint`` record), and the training state in a :class:`CheckpointPayload` and back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nethack_moe import __version__
from nethack_moe.config.train import TrainConfig, dump_config
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.models.policy import ActorCritic
from nethack_moe.ppo.dist_log import DistRunLog
from nethack_moe.ppo.distributed import DistContext
from nethack_moe.ppo.hooks import RunLog
from nethack_moe.ppo.reward_norm import RunningMeanStd
from nethack_moe.runs.checkpoint import CheckpointPayload, Counters, save_checkpoint
from nethack_moe.runs.records import CheckpointLine
from nethack_moe.runs.rundir import RunDir

PERIODIC, BEST, FINAL = "periodic", "best", "final"


class Checkpointing:
    """Cadence, best and retention of one run's checkpoints, and writing them."""

    def __init__(self, run: RunDir, cfg: TrainConfig, dist: DistContext, episodes: int) -> None:
        """``episodes``: the count at the start (a resumed run's next periodic checkpoint is
        at the next multiple of ``checkpoint_every``)."""
        self.run, self.cfg, self.dist = run, cfg.run, dist
        self.last_bucket = episodes // self.cfg.checkpoint_every

    def periodic_due(self, episodes: int) -> bool:
        """Whether a periodic checkpoint is due (a new multiple of ``checkpoint_every``)."""
        bucket = episodes // self.cfg.checkpoint_every
        if bucket <= self.last_bucket:
            return False
        self.last_bucket = bucket
        return True

    def best_due(self, counters: Counters, recent: list[float]) -> bool:
        """Whether the mean of the last ``best_window`` scores beats the best so far (then it
        becomes ``counters.best_score``)."""
        if len(recent) < self.cfg.best_window:
            return False
        mean = float(np.mean(recent))
        if not mean > counters.best_score:
            return False
        counters.best_score = mean
        return True

    def path(self, kind: str, episodes: int) -> Path:
        """Where a checkpoint of ``kind`` goes."""
        if kind == FINAL:
            return self.run.final
        return self.run.best if kind == BEST else self.run.periodic(episodes)

    def write(
        self, kind: str, payload: CheckpointPayload, log: RunLog | DistRunLog, episodes: int
    ) -> Path:
        """Write ``payload`` (torchrun: every rank's state gathered to rank 0, which alone
        writes), the ``checkpoint`` record, and drop periodic ones beyond the retention."""
        path = self.path(kind, episodes)
        gathered = self.dist.gather_rank_state(payload)
        if gathered is None:
            return path
        log.flush(sync=True)
        gathered.metrics_offset = log.offset()
        save_checkpoint(path, gathered)
        log.write(CheckpointLine(episodes, kind, str(path.relative_to(self.run.path))))
        if kind == PERIODIC and self.cfg.keep_checkpoints > 0:
            for old in self.run.periodic_checkpoints()[: -self.cfg.keep_checkpoints]:
                old.unlink(missing_ok=True)
        return path


@dataclass
class TrainingState:
    """What a checkpoint saves of a training run and restores on resume (the live objects)."""

    cfg: TrainConfig
    model: ActorCritic
    optim: torch.optim.Optimizer
    gen: torch.Generator
    """Acting (Gumbel noise)."""
    gen_learn: torch.Generator
    """Minibatch order."""
    rnorm: RunningMeanStd
    venv: VectorEnv

    def capture(
        self,
        counters: Counters,
        recent: list[float],
        routing: tuple[str, float],
        pending: dict[str, Any] | None,
    ) -> CheckpointPayload:
        """Everything needed to resume exactly, and the routing the policy last acted with."""
        env_state = {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.venv.get_state().items()
        }
        return CheckpointPayload(
            version=__version__, config=self.cfg.to_dict(), config_yaml=dump_config(self.cfg),
            model=self.model.state_dict(), optimizer=self.optim.state_dict(),
            rng={"sample": self.gen.get_state(), "learn": self.gen_learn.get_state(),
                 "torch": torch.get_rng_state()},
            reward_norm=self.rnorm.state(), counters=Counters(**counters.__dict__),
            recent_scores=list(recent), env_state=env_state,
            n_actions=int(self.venv.n_actions), torch=str(torch.__version__),
            routing={"kind": routing[0], "temperature": float(routing[1])}, pending=pending,
        )  # fmt: skip

    def restore(
        self, ck: CheckpointPayload, acting_model: ActorCritic
    ) -> tuple[Counters, list[float]]:
        """Load ``ck`` (this rank's part) into the live objects; its counters and recent
        scores (the pending rollout is the trainer's)."""
        assert ck.model is not None
        self.model.load_state_dict(ck.model)
        acting_model.load_state_dict(ck.model)
        self.optim.load_state_dict(ck.optimizer)
        self.gen.set_state(ck.rng["sample"])
        self.gen_learn.set_state(ck.rng["learn"])
        torch.set_rng_state(ck.rng["torch"])
        self.rnorm.load(ck.reward_norm)
        self.venv.set_state({k: v.numpy() for k, v in ck.env_state.items()})
        return Counters(**ck.counters.__dict__), [float(x) for x in ck.recent_scores]
