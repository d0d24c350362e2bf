"""Specialization figures on small synthetic data: they must catch a fake.

A router trained only by the regularisers (load balance + alpha entropy, sparsemax at T 0.5) on
random inputs looks "specialized" by routing MI and effective experts, yet its scenario
information sits at its permutation baseline; a hand-built router that routes by scenario lies far
above it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from nethack_moe import features as F
from nethack_moe.metrics.information import mutual_information, scenario_information
from nethack_moe.metrics.reliance import REPLACEMENTS, reliance_on_states
from nethack_moe.metrics.router_figures import MIN_SCENARIO_SHARE
from nethack_moe.metrics.routing import routing_figures
from nethack_moe.metrics.scenarios import COMBAT, EXPLORATION, GENERAL, SCENARIOS, SURVIVAL
from nethack_moe.metrics.specialization import (
    SCENARIO_OUTCOME,
    PlayerResult,
    ScenarioOutcomes,
    read_interventions,
    scenario_outcomes,
)
from nethack_moe.metrics.state_report import SpecializationReport
from nethack_moe.metrics.statelog import StateLog
from nethack_moe.models.acting import Obs
from nethack_moe.models.config import ModelConfig
from nethack_moe.models.policy import Encoded, PolicyOutput, build_model
from nethack_moe.models.routing import route

E, K = 4, 4
SCENARIO_P = [0.1, 0.2, 0.4, 0.3]  # survival, combat, exploration, general: unbalanced, like play


def _episodes(n: int, length: int = 50) -> np.ndarray:
    return np.repeat(np.arange(n // length + 1), length)[:n]


def _train_regulariser_only_router(x: torch.Tensor, steps: int = 300) -> torch.Tensor:
    """A router trained by load balance + alpha entropy only (no task signal); returns α."""
    torch.manual_seed(0)
    router = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, E))
    opt = torch.optim.Adam(router.parameters(), lr=1e-2)
    for _ in range(steps):
        alpha = route(router(x), "sparsemax", 0.5)
        abar = alpha.mean(0)
        load_balance = (abar * torch.log((abar * E).clamp_min(1e-8))).sum()
        h = -(alpha * torch.log(alpha.clamp_min(1e-8))).sum(-1).mean()
        loss = 1.0 * load_balance + 0.1 * h
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return route(router(x), "sparsemax", 0.5)


def _report(info, alpha) -> SpecializationReport:
    fig = routing_figures(alpha)
    return SpecializationReport(
        scenario=info, reliance={}, hint=None, usage_balance=fig["mi"],
        per_state_sharpness=fig["alpha_entropy"], effective_experts=fig["effective_experts"],
        n_experts=E,
    )  # fmt: skip


def test_a_router_trained_only_by_the_regularisers_scores_at_its_permutation_baseline():
    rng = np.random.default_rng(1)
    S = 4000
    x = torch.from_numpy(rng.normal(size=(S, 16)).astype(np.float32))
    labels = rng.choice(K, size=S, p=SCENARIO_P)  # random inputs: nothing ties them to the labels
    alpha = _train_regulariser_only_router(x).numpy()
    fig = routing_figures(alpha)
    # the old figures call this router specialized: balanced usage, one expert per state
    assert fig["mi"] > 1.0 and fig["effective_experts"] > 3.5
    info = scenario_information(alpha.argmax(1), labels, E, episode_ids=_episodes(S))
    assert info.permutations >= 100
    # at its baseline: within the permutation distribution (independent data beat the p95 one
    # time in twenty), and a negligible share of H(scenario)
    assert info.mi < 2 * info.baseline_p95
    assert info.normalized is not None and info.normalized < 0.01
    v = _report(info, alpha).verdict()
    assert "the expert choice depends on the scenario" not in v
    # no reliance figures (e.g. a greedy evaluation): nothing is claimed about what it routes on
    assert "was not measured" in v and "routes on neither" not in v
    assert "not split by scenario" in v or "no more scenario information than chance" in v
    assert "not evidence of specialization" in v


def test_a_router_that_routes_by_scenario_scores_far_above_its_baseline():
    rng = np.random.default_rng(2)
    S = 4000
    labels = rng.choice(K, size=S, p=SCENARIO_P)
    argmax = np.where(rng.random(S) < 0.2, rng.integers(0, E, S), labels)  # 20 % noise
    info = scenario_information(argmax, labels, E, episode_ids=_episodes(S))
    assert info.above_baseline and info.mi > 20 * info.baseline_p95
    assert info.p_value == pytest.approx(1 / (info.permutations + 1))
    assert info.normalized is not None and info.normalized > 10 * MIN_SCENARIO_SHARE
    alpha = np.eye(E)[argmax]
    assert "the expert choice depends on the scenario" in _report(info, alpha).verdict()


def test_mutual_information_extremes():
    a = np.array([0, 1, 2, 3] * 25)
    assert mutual_information(a, a, 4, 4) == pytest.approx(math.log(4))
    assert mutual_information(a, np.zeros_like(a), 4, 4) == pytest.approx(0.0)
    blocks = np.repeat([0, 1], 50)
    assert mutual_information(blocks, np.tile([0, 1], 50), 2, 2) == pytest.approx(0.0)


def test_within_episode_shifts_are_a_stricter_null_for_autocorrelated_sequences():
    """Expert and scenario both constant within each episode, independently drawn: the plain
    permutation p95 is beaten by chance structure, the episode-shift null is not fooled as much."""
    rng = np.random.default_rng(3)
    n_ep, length = 20, 100
    ep = np.repeat(np.arange(n_ep), length)
    expert = np.repeat(rng.integers(0, E, n_ep), length)
    scen = np.repeat(rng.integers(0, K, n_ep), length)
    info = scenario_information(expert, scen, E, episode_ids=ep)
    assert info.shifted_p95 is not None and info.shifted_p95 >= info.shuffled_p95


def test_within_episode_shifts_need_rows_contiguous_per_episode():
    """Interleaved episodes would make every shift the identity (the null equal to the figure):
    refused in one line."""
    rng = np.random.default_rng(4)
    ep = np.tile([0, 1], 50)  # rows of episodes 0 and 1 interleaved
    expert, scen = rng.integers(0, E, 100), rng.integers(0, K, 100)
    with pytest.raises(ValueError, match="not contiguous per episode") as exc:
        scenario_information(expert, scen, E, episode_ids=ep)
    assert "\n" not in str(exc.value)
    # the same rows sorted by episode are accepted
    order = np.argsort(ep, kind="stable")
    info = scenario_information(expert[order], scen[order], E, episode_ids=ep[order])
    assert info.shifted_p95 is not None


# ------------------------------------------------------------------------------ reliance
class _GraphBlindModel(nn.Module):
    """A toy policy whose heads read only ``h_state``; ``h_graph`` is computed and ignored."""

    n_experts, n_actions = E, 5

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.router = nn.Linear(8, E)
        self.experts = nn.Linear(8, E * self.n_actions)

    def encode(self, state, crop, atoms) -> Encoded:
        return Encoded(state[:, :8], atoms.float()[:, :6] * 3.0, None)

    def head(self, enc, routing=None, temperature=None, alpha_override=None) -> PolicyOutput:
        alpha = torch.softmax(5 * self.router(enc.h_state), -1)
        ex = self.experts(enc.h_state).view(-1, E, self.n_actions)
        logits = (alpha[..., None] * ex).sum(1)
        return PolicyOutput(logits, logits[:, 0], alpha, alpha, ex, None)


def _random_obs(n: int, seed: int = 0) -> Obs:
    g = torch.Generator().manual_seed(seed)
    return Obs(
        torch.randn(n, F.STATE_DIM, generator=g),
        torch.randint(0, 8, (n, 9, 9), generator=g, dtype=torch.int64).to(torch.int16),
        torch.rand(n, F.N_ATOMS, generator=g) < 0.2,
    )


def test_reliance_of_a_graph_the_policy_ignores_is_zero():
    res = reliance_on_states(_GraphBlindModel(), _random_obs(600))  # type: ignore[arg-type]
    g, s = res.figures["graph_mean"], res.figures["state_mean"]
    assert g is not None and s is not None
    assert g.argmax_change == 0.0 and g.policy_kl == pytest.approx(0.0, abs=1e-7)
    assert s.argmax_change > 0.3 and s.policy_kl > 0.0
    assert set(res.means) == {"h_state", "h_graph"}


def test_reliance_figures_of_a_fresh_model():
    model = build_model(ModelConfig(), F.FeatureSpec(), 23).eval()
    obs = _random_obs(300, seed=1)
    res = reliance_on_states(model, obs, max_states=200)
    assert set(res.figures) == {r.name for r in REPLACEMENTS}
    for f in res.figures.values():
        assert f is not None and f.n_states == 200
        assert 0.0 <= f.argmax_change <= 1.0 and f.policy_kl >= 0.0
    s = res.figures["state_mean"]
    assert s is not None and s.argmax_change > 0.0
    # the same replacement as an encoding edit while playing
    edit = REPLACEMENTS[0].edit(res.means)
    enc = edit(model.encode(*obs))
    assert enc.h_graph is not None and torch.allclose(enc.h_graph[0], res.means["h_graph"])


# ------------------------------------------------------------------------------ scenario outcomes
def _log(**cols) -> StateLog:
    n = len(cols["hp"])
    z = np.zeros(n, np.int64)
    base = dict(
        alpha=np.zeros((n, 0), np.float32), atoms=np.zeros((n, F.N_ATOMS), bool), x=z, y=z,
        depth=z + 1, action=z, episode=z, step=z, hp=z, exp=z, visited=z, hint=z - 1,
        expert_probs_sum=np.zeros((0, 23)), policy_probs_sum=np.zeros(23),
    )  # fmt: skip
    base.update({k: np.asarray(v) for k, v in cols.items()})
    return StateLog(**base)  # type: ignore[arg-type]


def test_scenario_outcomes_on_hand_made_steps():
    st = _log(
        episode=[1, 1, 1, 2, 2],
        hp=[10, 7, 7, 5, 5],
        exp=[0, 0, 5, 9, 9],
        visited=[1, 2, 2, 3, 1],
        depth=[1, 1, 1, 1, 2],
    )
    labels = np.array([SURVIVAL, COMBAT, SURVIVAL, EXPLORATION, SURVIVAL])
    out = scenario_outcomes(st, labels, died_seeds={1})
    # survival: 3 HP lost at step 0, all 7 at the death on step 2; step 4 has no successor
    assert out.survival_states == 3 and out.hp_lost_per_step == pytest.approx(5.0)
    assert out.combat_states == 1 and out.kills_per_combat_state == 1.0
    assert out.exp_per_combat_state == 5.0
    # exploration: a new level, its first cell is new
    assert out.exploration_states == 1 and out.new_cells_per_step == 1.0


def _player(name: str, hp: float, kills: float, cells: float, score: float) -> PlayerResult:
    """A player on 8 seeds whose per-seed outcomes scatter a little around the given means."""
    seeds = tuple(range(8))
    jitter = [0.01 * (i % 3 - 1) for i in seeds]
    per = {
        "hp_lost_per_step": tuple(hp + j for j in jitter),
        "kills_per_combat_state": tuple(kills + j for j in jitter),
        "new_cells_per_step": tuple(cells + j for j in jitter),
    }
    o = ScenarioOutcomes(10, hp, 10, kills, kills, 10, cells)
    return PlayerResult(name, 8, score, 1.0, 0.0, o, seeds,
                        tuple(score + 10 * j for j in jitter), per)  # fmt: skip


def test_interventions_reading():
    names = ["survival", "combat", "exploration", "general"]
    good = {
        "survival": _player("survival", 0.1, 0.0, 0.1, 10),
        "combat": _player("combat", 0.5, 0.4, 0.1, 10),
        "exploration": _player("exploration", 0.5, 0.0, 0.9, 10),
        "general": _player("general", 0.5, 0.0, 0.1, 50),
        "router": _player("router", 0.0, 1.0, 1.0, 99),  # the router is not a candidate
    }
    own = {n: n for n in names}
    r = read_interventions(good, names, own, "router", n_resamples=300)
    assert r.best == {n: n for n in names} and r.experts_with("specialised") == names
    one = {n: _player(n, 0.5, 0.0, 0.1, 10) for n in names}
    one["combat"] = _player("combat", 0.1, 0.4, 0.9, 50)  # best everywhere: specialised nowhere
    r = read_interventions(one, names, own, "router", n_resamples=300)
    assert r.experts_with("specialised") == [] and set(r.best.values()) == {"combat"}
    # every scenario label is ranked by its own outcome, under the label's own name
    assert [SCENARIOS[i] for i in (SURVIVAL, COMBAT, EXPLORATION, GENERAL)] == list(
        SCENARIO_OUTCOME
    )
    # players without per-seed figures: point estimates only, so nothing is determined
    bare = {n: dataclasses.replace(p, seeds=(), scores=(), per_seed={}) for n, p in good.items()}
    r = read_interventions(bare, names, own, "router")
    assert r.best == {n: None for n in names} and r.experts_with("undetermined") == names


def test_a_graph_blind_policy_reads_ignores_h_graph():
    """The verdict of a real reliance measurement on a policy whose heads never read h_graph."""
    res = reliance_on_states(_GraphBlindModel(), _random_obs(600))  # type: ignore[arg-type]
    rep = SpecializationReport(None, res.figures, None, 1.0, 0.3, 3.9, n_experts=E)
    v = rep.verdict()
    assert "it ignores h_graph" in v and "it uses h_state" in v
    assert "The router routes on h_state:" in v


def test_a_model_without_a_graph_has_no_graph_figures():
    model = build_model(ModelConfig(variant="mlp_moe"), F.FeatureSpec(), 23).eval()
    res = reliance_on_states(model, _random_obs(64, seed=2))
    assert res.figures["graph_mean"] is None and res.figures["graph_zero"] is None
    assert res.figures["state_mean"] is not None
    rep = SpecializationReport(None, res.figures, None, None, None, None, n_experts=4)
    assert "there is no h_graph" in rep.verdict()
    assert rep.to_json()["reliance"]["graph_mean"] is None
    single = SpecializationReport(None, res.figures, None, None, None, None, n_experts=1)
    assert single.verdict().startswith("A single expert")
