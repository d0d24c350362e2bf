"""Routing figures, verdicts, scenario labels and routing plots on hand-made inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nethack_moe.analysis import plots
from nethack_moe.features import ATOM_INDEX, N_ATOMS
from nethack_moe.metrics.routing import (
    entropy,
    routing_figures,
    routing_figures_torch,
    scenario_table,
    switch_rate,
    verdict,
)
from nethack_moe.metrics.scenarios import (
    COMBAT,
    EXPLORATION,
    GENERAL,
    SCENARIOS,
    SURVIVAL,
    label_scenarios,
    moved_from_trajectory,
)

E = 4


def _onehot(idx) -> np.ndarray:
    a = np.zeros((len(idx), E))
    a[np.arange(len(idx)), idx] = 1.0
    return a


def test_entropy_zero_log_zero():
    assert entropy(np.array([1.0, 0.0, 0.0])) == 0.0
    assert entropy(np.array([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))


def test_one_expert_everywhere():
    f = routing_figures(_onehot([2] * 40))
    assert f["mi"] == pytest.approx(0.0)
    assert f["effective_experts"] == pytest.approx(1.0)
    assert f["alpha_entropy"] == pytest.approx(0.0)
    assert f["argmax_share"] == [0.0, 0.0, 1.0, 0.0]
    assert f["sparsity"] == pytest.approx(0.75)
    assert verdict(f, E).startswith("collapsed onto one expert")
    json.dumps(f)


def test_one_hot_by_scenario_balanced():
    f = routing_figures(_onehot([0, 1, 2, 3] * 25))
    assert f["alpha_entropy"] == pytest.approx(0.0)
    assert f["mi"] == pytest.approx(math.log(4))
    assert f["effective_experts"] == pytest.approx(4.0)
    assert f["usage"] == pytest.approx([0.25] * 4)
    assert verdict(f, E).startswith("state-dependent routing")
    assert "not evidence of specialization" in verdict(f, E)


def test_uniform():
    f = routing_figures(np.full((30, E), 0.25))
    assert f["alpha_entropy"] == pytest.approx(math.log(E))
    assert f["mi"] == pytest.approx(0.0, abs=1e-12)
    assert f["sparsity"] == 0.0
    assert f["alpha_entropy_std"] == pytest.approx(0.0, abs=1e-12)
    assert verdict(f, E).startswith("never left uniform")


def test_top2_half_half_same_pair():
    a = np.tile([0.5, 0.5, 0.0, 0.0], (50, 1))
    f = routing_figures(a)
    assert f["alpha_entropy"] == pytest.approx(math.log(2))
    assert f["mi"] == pytest.approx(0.0, abs=1e-12)
    assert f["effective_experts"] == pytest.approx(2.0)
    assert f["sparsity"] == pytest.approx(0.5)
    assert verdict(f, E).startswith("not specialized (MI < 0.05)")


def test_sparsity_exact():
    a = np.array([[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.2, 0.3, 0.5, 0.0], [0.25] * 4])
    assert routing_figures(a)["sparsity"] == pytest.approx((3 + 2 + 1 + 0) / 16)


def test_switch_rate_two_episodes():
    # episode 0: argmax 0,0,1,1,2 -> 2 switches of 4 pairs; episode 1: 3,3,0 -> 1 of 2
    am = [0, 0, 1, 1, 2, 3, 3, 0]
    ep = [0, 0, 0, 0, 0, 1, 1, 1]
    f = routing_figures(_onehot(am), episode_ids=ep)
    assert f["switch_rate"] == pytest.approx(3 / 6)  # the 2 -> 3 step crosses episodes
    assert switch_rate(np.array(am), np.array(ep)) == pytest.approx(0.5)
    assert routing_figures(_onehot(am))["switch_rate"] is None
    assert switch_rate(np.array([1, 2]), np.array([0, 1])) is None


def test_torch_matches_numpy():
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(E) * 0.3, size=64)
    a[a < 0.05] = 0.0
    a /= a.sum(1, keepdims=True)
    f = routing_figures(a)
    t = routing_figures_torch(torch.tensor(a, dtype=torch.float32, requires_grad=True))
    assert t["routing/alpha_entropy"] == pytest.approx(f["alpha_entropy"], abs=1e-5)
    assert t["routing/alpha_entropy_std"] == pytest.approx(f["alpha_entropy_std"], abs=1e-5)
    assert t["routing/usage_entropy"] == pytest.approx(f["usage_entropy"], abs=1e-5)
    assert t["routing/mi"] == pytest.approx(f["mi"], abs=1e-5)
    assert t["routing/effective_experts"] == pytest.approx(f["effective_experts"], abs=1e-5)
    assert t["routing/sparsity"] == pytest.approx(f["sparsity"])
    assert t["routing/usage"] == pytest.approx(f["usage"], abs=1e-6)
    assert t["routing/argmax_share"] == pytest.approx(f["argmax_share"])
    assert all(isinstance(v, (float, list)) for v in t.values())
    # verdict reads the trainer's keys too
    assert verdict(t, E).split(":")[0] == verdict(f, E).split(":")[0]
    assert routing_figures_torch(torch.zeros(0, E)) == {}


def test_verdict_no_data():
    assert verdict({}, E) == "no routing data"


def _atoms(*names: str) -> np.ndarray:
    a = np.zeros(N_ATOMS, dtype=bool)
    for n in names:
        a[ATOM_INDEX[n]] = True
    return a


def test_scenario_labels_first_match_wins():
    rows = [
        (_atoms("hp_low", "hostile_adjacent"), True, SURVIVAL),
        (_atoms("weak"), False, SURVIVAL),
        (_atoms("confused"), False, SURVIVAL),
        (_atoms("stunned"), True, SURVIVAL),
        (_atoms("blind"), False, SURVIVAL),
        (_atoms("sick", "hostile_near"), False, SURVIVAL),
        (_atoms("hostile_adjacent"), True, COMBAT),
        (_atoms("hostile_near", "downstairs_visible"), False, COMBAT),
        (_atoms("hostile_visible"), True, EXPLORATION),  # far hostile: not combat
        (_atoms("hungry", "hp_critical"), True, EXPLORATION),  # not in the survival list
        (_atoms(), True, EXPLORATION),
        (_atoms("in_corridor", "hallucinating"), False, GENERAL),
    ]
    atoms = np.stack([r[0] for r in rows])
    moved = np.array([r[1] for r in rows])
    labels = label_scenarios(atoms, moved)
    assert labels.tolist() == [r[2] for r in rows]
    assert SCENARIOS[SURVIVAL] == "survival" and SCENARIOS[GENERAL] == "general"
    assert label_scenarios(_atoms("weak"), [False]).tolist() == [SURVIVAL]
    with pytest.raises(ValueError):
        label_scenarios(atoms, moved[:-1])


def test_moved_from_trajectory():
    x = [1, 2, 2, 2, 5, 5]
    y = [1, 1, 1, 1, 1, 1]
    d = [1, 1, 1, 2, 1, 1]
    ep = [0, 0, 0, 0, 1, 1]
    mv = moved_from_trajectory(x, y, d, ep, forced_action=[False, False, True, False, False, True])
    assert mv.tolist() == [False, True, False, True, False, False]


def test_moved_refers_to_one_time_step():
    """Position change and the search / descend action both describe the step into the state."""
    x, y, d, ep = [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]
    searched = [False, True, False, False]  # the action taken in state 1 was search
    # state 1 (where search was chosen) has not moved; state 2 (after the search) has
    assert moved_from_trajectory(x, y, d, ep, forced_action=searched).tolist() == [
        False, False, True, False,
    ]  # fmt: skip
    # the last action of an episode does not spill into the next episode
    ep2 = [0, 0, 1, 1]
    assert not moved_from_trajectory(x, y, d, ep2, forced_action=[False, True, False, False])[2]
    assert moved_from_trajectory([1, 2, 2], [1, 1, 1], [1, 1, 1]).tolist() == [False, True, False]


def test_scenario_table_and_plots(tmp_path):
    alpha = _onehot([0, 0, 1, 2, 2, 2])
    labels = np.array([0, 0, 1, 2, 2, 2])
    tab = scenario_table(alpha, labels, SCENARIOS, ["survival", "combat", "exploration", "general"])
    assert tab["counts"] == [2, 1, 3, 0]
    assert tab["mean_alpha"][0] == [1.0, 0.0, 0.0, 0.0]
    assert tab["mean_alpha"][3] is None
    assert tab["argmax_expert"][:3] == ["survival", "combat", "exploration"]
    json.dumps(tab)
    p1 = plots.plot_alpha_heatmap(tab, tmp_path / "heat.png")
    f = routing_figures(alpha)
    p2 = plots.plot_usage_bars(f, None, tmp_path / "usage.png")
    p3 = plots.plot_alpha_entropy_hist(entropy(alpha, axis=1), tmp_path / "h.png", E)
    p4 = plots.plot_alpha_over_episode(alpha, None, tmp_path / "ep.png")
    p5 = plots.plot_compare(
        {"a": [1, 2, 3], "b": {"mean": 4.0, "ci_mean": [3.0, 5.0]}}, tmp_path / "cmp.png"
    )
    for p in (p1, p2, p3, p4, p5):
        assert p.is_file() and p.stat().st_size > 1000
