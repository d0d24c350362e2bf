"""Acting and collection: one rollout of T steps x N envs into a
:class:`~nethack_moe.ppo.storage.RolloutStorage`, under the curriculum at the rollout's start
(:class:`RolloutContext`).

Envs are split into contiguous groups: while the workers step one group, this process computes
the next group's actions (acting through :func:`~nethack_moe.models.acting.act`). Each step's
reward is scaled (:class:`~nethack_moe.ppo.reward_norm.RunningMeanStd`) and a truncated episode
is bootstrapped with the value of its last observation; every finished episode is an ``episode``
record of the run log.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nethack_moe.config.curriculum import Phase
from nethack_moe.config.train import TrainConfig
from nethack_moe.envs.accounting import EpisodeRecord
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.models.acting import ActResult, Obs, Teacher, act, gumbel_noise
from nethack_moe.models.policy import ActorCritic
from nethack_moe.ppo.dist_log import DistRunLog
from nethack_moe.ppo.hooks import RunLog, Timing
from nethack_moe.ppo.reward_norm import RunningMeanStd
from nethack_moe.ppo.storage import RolloutStorage
from nethack_moe.runs.checkpoint import Counters
from nethack_moe.runs.records import EpisodeLine


@dataclass
class RolloutContext:
    """What one rollout acts under: the curriculum at its start."""

    phase: Phase
    routing: str
    temperature: float
    lr: float
    slot: int
    """Which of the (one or two) rollout storages this rollout is in."""
    finished: list[EpisodeRecord]
    teacher: float = 0.0
    """The kickstarting coefficient λ at the rollout's start (``curriculum.teacher_at``)."""

    def to_dict(self, phase_index: int) -> dict[str, Any]:
        """For a checkpoint taken while this rollout waits to be learned (overlap mode)."""
        return {"phase": phase_index, "routing": self.routing, "temperature": self.temperature,
                "lr": self.lr, "slot": self.slot, "finished": len(self.finished),
                "teacher": self.teacher}  # fmt: skip


class Collector:
    """Fills the rollout storages from the vector env with the acting model.

    Shares with the trainer (the same objects): the counters ``C`` (episodes, env steps, worker
    restarts), the ``recent`` scores, the storages and the run log."""

    def __init__(
        self,
        cfg: TrainConfig,
        venv: VectorEnv,
        acting_model: ActorCritic,
        device: torch.device,
        storages: list[RolloutStorage],
        rnorm: RunningMeanStd,
        counters: Counters,
        recent: list[float],
        log: RunLog | DistRunLog,
        gen: torch.Generator,
        timing: Timing,
        local_envs: int,
    ) -> None:
        """``local_envs``: this rank's envs (torchrun; all of them for one process)."""
        self.cfg, self.venv, self.acting_model, self.device = cfg, venv, acting_model, device
        self.storages, self.rnorm, self.C, self.recent = storages, rnorm, counters, recent
        self.log, self.gen, self.timing = log, gen, timing
        buf = venv.buf  # zero-copy views of the shared arrays
        self.obs_now = Obs(*(torch.from_numpy(a) for a in (buf.state, buf.crop, buf.atoms)))
        self.teacher_now = (  # env.teacher: the advice on obs_now (zero-copy views)
            Teacher(torch.from_numpy(buf.teacher_action), torch.from_numpy(buf.teacher_branch))
            if cfg.env.teacher
            else None
        )
        groups = cfg.ppo.env_groups
        gsz = local_envs // groups
        self.groups = [(g * gsz, (g + 1) * gsz) for g in range(groups)]
        self.noise = {lo: torch.empty(hi - lo, venv.n_actions) for lo, hi in self.groups}
        #: The first of the envs that act greedily while the teacher term is on (greedy_envs).
        self.greedy_from = local_envs - cfg.ppo.greedy_envs
        self.greedy_mask = {  # [hi-lo] bool per group, on the device (None: no greedy env)
            lo: (torch.arange(lo, hi) >= self.greedy_from).to(device)
            for lo, hi in self.groups
            if hi > self.greedy_from
        }
        #: Per group with greedy envs: the row of its first greedy env (they are the last ones).
        self.greedy_first = {lo: max(self.greedy_from - lo, 0) for lo in self.greedy_mask}
        #: ``ppo.greedy_refresh``: the frozen copy the greedy envs play, and the update it is of.
        self.greedy_policy = (
            copy.deepcopy(acting_model) if cfg.ppo.greedy_envs and cfg.ppo.greedy_refresh else None
        )
        self.greedy_policy_at = -1

    def acts_greedily(self, env_index: int, ctx: RolloutContext) -> bool:
        """Whether env ``env_index`` acts by argmax in this rollout (the last
        ``ppo.greedy_envs`` envs, while λ > 0)."""
        return ctx.teacher > 0 and env_index >= self.greedy_from

    def collect_rollout(self, ctx: RolloutContext) -> None:
        """T steps of every env into the storage. Envs are split into contiguous groups: while
        the workers step one group, this process computes the next group's actions."""
        self.acting_model.eval()
        self._refresh_greedy_policy()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        T, p = self.cfg.ppo.rollout_steps, self.cfg.ppo
        for t in range(T + 1):
            for lo, hi in self.groups:
                if t > 0:
                    with self.timing.add_time("env"):
                        self.venv.step_wait(lo, hi)
                    self._record_step(t - 1, lo, hi, ctx)
                if t < T:
                    with self.timing.add_time("inference"):
                        actions = self._act(t, lo, hi, ctx)
                    self.venv.step_async(actions, lo, hi)
        self.note_worker_restarts()
        with torch.no_grad():
            obs = self.obs_now.to(self.device)
            last_v = self.acting_model(*obs, ctx.routing, ctx.temperature).value
        self.storages[ctx.slot].compute_returns(last_v, p.gamma, p.gae_lambda)

    @torch.no_grad()
    def _act(self, t: int, lo: int, hi: int, ctx: RolloutContext) -> np.ndarray:
        obs = self.obs_now.rows(slice(lo, hi)).to(self.device, non_blocking=True)
        noise = gumbel_noise((hi - lo, self.venv.n_actions), self.gen, out=self.noise[lo])
        greedy = self.greedy_mask.get(lo) if self.acts_greedily(hi - 1, ctx) else None
        if greedy is not None:  # argmax: no noise (the draws stay those of a run without)
            noise[self.greedy_first[lo] :] = 0.0
        res = act(self.acting_model, obs, ctx.routing, ctx.temperature, noise=noise)
        if greedy is not None and self.greedy_policy is not None:
            self._frozen_argmax(res, obs, self.greedy_first[lo], ctx)
        st = self.storages[ctx.slot]
        st.store_act(t, lo, hi, obs, res, greedy)
        if self.teacher_now is not None:  # the advice on the same observations, never an input
            st.store_teacher(t, lo, hi, *self.teacher_now.rows(slice(lo, hi)).to(self.device))
        return res.action.cpu().numpy()

    def _frozen_argmax(self, res: ActResult, obs: Obs, first: int, ctx: RolloutContext) -> None:
        """Rows ``first:`` of ``res`` (the greedy envs), in place: the frozen copy's argmax, with
        the live policy's log-probability of it, as for any stored row."""
        assert self.greedy_policy is not None
        rows = slice(first, None)
        a = act(self.greedy_policy, obs.rows(rows), ctx.routing, ctx.temperature).action  # [G]
        res.action[rows] = a
        logp = torch.log_softmax(res.out.logits[rows].float(), -1)  # [G, A]
        res.log_prob[rows] = logp.gather(1, a[:, None]).squeeze(1)

    def _refresh_greedy_policy(self) -> None:
        """Take the frozen copy again when ``ppo.greedy_refresh`` updates have passed."""
        every = self.cfg.ppo.greedy_refresh
        if self.greedy_policy is None:
            return
        if self.greedy_policy_at < 0 or self.C.updates - self.greedy_policy_at >= every:
            self.greedy_policy.load_state_dict(self.acting_model.state_dict())
            self.greedy_policy.eval()
            self.greedy_policy_at = self.C.updates

    def greedy_policy_state(self) -> dict[str, Any] | None:
        """The frozen copy for a checkpoint (``None`` without one)."""
        if self.greedy_policy is None or self.greedy_policy_at < 0:
            return None
        return {"updates": self.greedy_policy_at, "model": self.greedy_policy.state_dict()}

    def load_greedy_policy(self, state: dict[str, Any] | None) -> None:
        """Restore the frozen copy a checkpoint holds (none: taken again at the next rollout)."""
        if self.greedy_policy is not None and state is not None:
            self.greedy_policy.load_state_dict(state["model"])
            self.greedy_policy_at = int(state["updates"])

    def _record_step(self, t: int, lo: int, hi: int, ctx: RolloutContext) -> None:
        """Reward (scaled; truncation bootstrapped with V of the last observation) and done."""
        buf, p = self.venv.buf, self.cfg.ppo
        done = buf.terminated[lo:hi] | buf.truncated[lo:hi]
        r = buf.reward[lo:hi].astype(np.float64)
        if p.reward_norm:
            r = self.rnorm.scale(r, done, lo, hi)
        r_t = torch.as_tensor(r, dtype=torch.float32)
        # only a truncated episode has a future; a death flagged truncated too stays a death
        trunc = np.flatnonzero(buf.truncated[lo:hi] & ~buf.terminated[lo:hi]) + lo
        if trunc.size:
            final = Obs(
                *(
                    torch.from_numpy(a[trunc])
                    for a in (buf.final_state, buf.final_crop, buf.final_atoms)
                )
            )
            with torch.no_grad():
                v = self.acting_model(*final.to(self.device), ctx.routing, ctx.temperature).value
            r_t[trunc - lo] += p.gamma * v.float().cpu()
        done_t = torch.as_tensor(done, dtype=torch.float32)
        self.storages[ctx.slot].store_step(t, lo, hi, r_t.to(self.device), done_t.to(self.device))
        self.C.env_steps += hi - lo
        for e in self.venv.finished(lo, hi):
            self._episode(e, ctx)

    def _episode(self, e: EpisodeRecord, ctx: RolloutContext) -> None:
        C = self.C
        C.episodes += 1
        greedy = self.acts_greedily(e.env_index, ctx)
        if not greedy:  # the training score is the sampled policy's
            self.recent.append(float(e.score))
            del self.recent[: -self.cfg.run.best_window]
        ctx.finished.append(e)
        self.log.episode(EpisodeLine(
            episode=C.episodes, env_steps=C.env_steps, score=e.score, reward=e.reward,
            length=e.length, depth=e.depth, died=e.died, phase=ctx.phase.name,
            temperature=ctx.temperature, routing=ctx.routing, seed_core=e.seed_core,
            seed_disp=e.seed_disp, env_index=e.env_index, wall=time.time(),
            greedy=True if greedy else None,
        ))  # fmt: skip

    def note_worker_restarts(self) -> None:
        """An ``event`` for env workers restarted since the last note; the counters follow."""
        venv, C = self.venv, self.C
        if venv.worker_restarts != C.worker_restarts:
            self.log.event("worker_restart", episode=C.episodes, dropped_total=venv.dropped_episodes,
                           count=venv.worker_restarts - C.worker_restarts)  # fmt: skip
            C.dropped_episodes, C.worker_restarts = venv.dropped_episodes, venv.worker_restarts
