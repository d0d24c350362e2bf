"""Specialization figures that need the policy to play: interventions (the router forced to each
single expert), the score with ``h_graph`` / ``h_state`` replaced while playing, the score with the
hint inputs zeroed, and the two baselines, all on the same seeds as the learned router.

Every comparison keeps its per-seed scores, so that it is read as a paired difference over the
same seeds with a bootstrap CI (:class:`nethack_moe.metrics.paired.PairedDiff`), never as two
unpaired means. The forced experts are read against each expert's own scenario: the scenario in
which the learned router gives it the most weight (the heatmap's column maximum over the analysis
rollout), unless the routing prior was on in training (then names bind experts to scenarios).

The learned router's own figures on those seeds are the first episodes of the analysis rollout
(same seeds, same policy seed, same action mode), so it is not played twice.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from nethack_moe.config.train import TrainConfig
from nethack_moe.evaluation.players import (
    HintFollower,
    ModelPlayer,
    Player,
    RandomPlayer,
    zero_hint,
)
from nethack_moe.evaluation.runner import E200_SEED_START, RolloutResult, play, state_scenarios
from nethack_moe.metrics.reliance import REPLACEMENTS, hint_follow_share
from nethack_moe.metrics.router_figures import HintReliance, own_scenarios
from nethack_moe.metrics.routing import scenario_table
from nethack_moe.metrics.scenarios import SCENARIOS
from nethack_moe.metrics.specialization import PlayerResult, player_result, read_interventions
from nethack_moe.metrics.state_report import SpecializationReport
from nethack_moe.models.policy import ActorCritic

log = logging.getLogger(__name__)

#: Episodes of each probe by default ("a short evaluation").
DEFAULT_PROBE_EPISODES = 10


@dataclass
class ProbeOptions:
    """How every probe is played (the seeds and action mode of the analysis rollout)."""

    episodes: int = DEFAULT_PROBE_EPISODES
    seed_start: int = E200_SEED_START
    num_envs: int = 16
    workers: int = 2
    policy_seed: int = 0
    greedy: bool = False
    progress: bool | None = None

    def play(self, player: Player, cfg: TrainConfig) -> RolloutResult:
        """Play ``player`` on the probe seeds with every state logged."""
        return play(
            player, cfg.env, self.episodes, self.seed_start, self.num_envs, self.workers,
            collect_states=True, progress=self.progress,
        )  # fmt: skip

    def model_player(self, model: ActorCritic, routing: str | None, temperature: float | None,
                     **kw: object) -> ModelPlayer:  # fmt: skip
        """The policy as played in the analysis rollout, with ``kw`` (expert, edit, obs_edit)."""
        return ModelPlayer(model, greedy=self.greedy, policy_seed=self.policy_seed,
                           routing=routing, temperature=temperature, **kw)  # type: ignore[arg-type]  # fmt: skip


def _result(name: str, res: RolloutResult) -> PlayerResult:
    assert res.states is not None
    return player_result(name, res.records, res.states, state_scenarios(res))


def router_on_probe_seeds(main: RolloutResult, episodes: int) -> PlayerResult:
    """The learned router's :class:`PlayerResult` on the first ``episodes`` seeds of ``main``."""
    st = main.states
    if st is None:
        raise ValueError("the analysis rollout did not collect states")
    last = main.seed_start + episodes
    recs = [r for r in main.records if r["seed"] < last]
    keep = st.episode < last
    labels = state_scenarios(main)[keep]
    return player_result("router", recs, st.select(keep), labels)


def interventions(
    model: ActorCritic, cfg: TrainConfig, main: RolloutResult, opts: ProbeOptions
) -> dict[str, PlayerResult]:
    """The router forced to each expert (one-hot α) and the learned router, same seeds."""
    out = {"router": router_on_probe_seeds(main, opts.episodes)}
    for i, name in enumerate(model.expert_names):
        player = opts.model_player(model, main.routing, main.temperature, expert=i, name=name)
        out[name] = _result(name, opts.play(player, cfg))
    return out


def routing_prior_on(cfg: TrainConfig) -> bool:
    """Whether any curriculum phase trained with the routing prior (coefficient > 0): only then do
    expert names bind experts to scenarios."""
    return any(p.coef("routing_prior") > 0 for p in cfg.curriculum.phases)


def own_scenarios_of(
    model: ActorCritic, cfg: TrainConfig, main: RolloutResult
) -> tuple[dict[str, str | None], str]:
    """Each expert's own scenario (:func:`nethack_moe.metrics.router_figures.own_scenarios`) from the
    learned router's mean α per scenario over the analysis rollout."""
    assert main.states is not None
    names = list(model.expert_names)
    table = scenario_table(main.states.alpha, state_scenarios(main), SCENARIOS, names)
    return own_scenarios(table, names, routing_prior_on(cfg))


def _scores(records: list[dict[str, Any]], seeds: tuple[int, ...]) -> tuple[float | None, ...]:
    by = {int(r["seed"]): float(r["score"]) for r in records}
    return tuple(by.get(s) for s in seeds)


def play_replacements(
    model: ActorCritic,
    cfg: TrainConfig,
    main: RolloutResult,
    report: SpecializationReport,
    means: dict[str, Tensor],
    opts: ProbeOptions,
) -> None:
    """Fill in the score of each reliance figure: the policy playing with the replacement, and
    the unedited policy, per seed."""
    router = router_on_probe_seeds(main, opts.episodes)
    seeds = router.seeds
    for rep in REPLACEMENTS:
        fig = report.reliance.get(rep.name)
        if fig is None:
            continue
        player = opts.model_player(model, main.routing, main.temperature,
                                   edit=rep.edit(means), name=rep.name)  # fmt: skip
        res = opts.play(player, cfg)
        score = float(np.mean([r["score"] for r in res.records])) if res.records else None
        report.reliance[rep.name] = dataclasses.replace(
            fig, mean_score=score, baseline_mean_score=router.mean_score,
            episodes=len(res.records), seeds=seeds, scores=_scores(res.records, seeds),
            baseline_scores=router.scores,
        )  # fmt: skip


def hint_reliance(
    model: ActorCritic, cfg: TrainConfig, main: RolloutResult, opts: ProbeOptions
) -> HintReliance:
    """Follow share (analysis rollout), the score with the hint zeroed, and both baselines."""
    assert main.states is not None
    router = router_on_probe_seeds(main, opts.episodes)
    zeroed = opts.play(
        opts.model_player(model, main.routing, main.temperature, obs_edit=zero_hint,
                          name="hint-zeroed"), cfg,
    )  # fmt: skip
    follower = opts.play(HintFollower(opts.policy_seed), cfg)
    rand = opts.play(RandomPlayer(model.n_actions, opts.policy_seed), cfg)
    assert follower.states is not None
    seeds = router.seeds
    return HintReliance(
        follow_share=hint_follow_share(main.states),
        hinted_steps=int((main.states.hint >= 0).sum()),
        policy_mean_score=router.mean_score,
        zeroed_mean_score=player_result("hint-zeroed", zeroed.records).mean_score,
        follower_mean_score=player_result("hint-follower", follower.records).mean_score,
        follower_follow_share=hint_follow_share(follower.states),
        random_mean_score=player_result("random", rand.records).mean_score,
        episodes=router.episodes,
        seeds=seeds,
        policy_scores=router.scores,
        zeroed_scores=_scores(zeroed.records, seeds),
        follower_scores=_scores(follower.records, seeds),
        random_scores=_scores(rand.records, seeds),
    )


def run_probes(
    model: ActorCritic,
    cfg: TrainConfig,
    main: RolloutResult,
    report: SpecializationReport,
    means: dict[str, Tensor],
    opts: ProbeOptions,
) -> SpecializationReport:
    """``report`` with the played figures filled in (interventions, reliance scores, hint)."""
    opts = dataclasses.replace(opts, episodes=max(1, min(opts.episodes, main.episodes)))
    if model.n_experts > 1:
        report.interventions = interventions(model, cfg, main, opts)
        own, source = own_scenarios_of(model, cfg, main)
        report.reading = read_interventions(report.interventions, model.expert_names, own, source)
    play_replacements(model, cfg, main, report, means, opts)
    report.hint = hint_reliance(model, cfg, main, opts)
    return report
