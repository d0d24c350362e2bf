"""Specialization against the scripted teacher's branches (issue 18): the figures must catch a fake.

A router built to route by the teacher's branch scores far above both nulls, on hand-made state
logs and on real games (a player that reads the branch off the teacher's advice); a random router
scores at them. The per-branch forced experts are ranked only when the paired intervals separate.
Playing with the teacher on changes no game.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from nethack_moe import features as F
from nethack_moe.config.train import make_config
from nethack_moe.envs.teacher import BRANCHES
from nethack_moe.evaluation.evaluate import run_entry, teacher_env
from nethack_moe.evaluation.players import Choice, ModelPlayer
from nethack_moe.evaluation.runner import play
from nethack_moe.features import FeatureSpec
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.branches import (
    agreement,
    branch_interventions,
    teacher_figures,
    teacher_probs,
)
from nethack_moe.metrics.router_figures import MIN_SCENARIO_SHARE, ScenarioInformation
from nethack_moe.metrics.statelog import StateLog
from nethack_moe.metrics.teacher_figures import ALL_STATES, TeacherFigures
from nethack_moe.metrics.verdict import VerdictFigures, specialization_verdict, verdict_of
from nethack_moe.models.acting import Obs, Teacher, act
from nethack_moe.models.policy import PolicyOutput, build_model

E = 4
NAMES = ["e0", "e1", "e2", "e3"]
#: Branch shares of real play, roughly (explore dominates, fights and prompts are rarer).
_SHARE = {"prompt": 0.08, "fight": 0.1, "descend": 0.02, "to_stairs": 0.1, "explore": 0.5,
          "search": 0.15, "eat": 0.05}  # fmt: skip
BRANCH_P = np.array([_SHARE.get(b, 0.0) for b in BRANCHES])
NB = len(BRANCHES)  # one expert per branch for the branch router on real games


def _branches(n_ep: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Branch sequences with runs, like play (a fight lasts a few steps, exploring many)."""
    out = []
    for _ in range(n_ep):
        seq: list[int] = []
        while len(seq) < length:
            seq += [int(rng.choice(len(BRANCHES), p=BRANCH_P))] * int(rng.integers(1, 12))
        out.append(seq[:length])
    return np.array(out).ravel()


def _log(argmax: np.ndarray, branch: np.ndarray, episode: np.ndarray, action=None, ta=None):
    n = argmax.size
    z = np.zeros(n, np.int64)
    return StateLog(
        alpha=np.eye(E, dtype=np.float32)[argmax], atoms=np.zeros((n, F.N_ATOMS), bool), x=z, y=z,
        depth=z + 1, action=z if action is None else action, episode=episode, step=z, hp=z,
        exp=z, visited=z, hint=z - 1, expert_probs_sum=np.zeros((E, 23)),
        policy_probs_sum=np.zeros(23), teacher_action=z if ta is None else ta,
        teacher_branch=branch,
    )  # fmt: skip


def _verdict(t: TeacherFigures) -> str:
    return specialization_verdict(VerdictFigures(n_experts=E, teacher=t))


# ------------------------------------------------------------------------ branch information
def test_a_router_that_routes_by_branch_scores_far_above_both_nulls():
    rng = np.random.default_rng(0)
    n_ep, length = 40, 100
    branch = _branches(n_ep, length, rng)
    episode = np.repeat(np.arange(n_ep), length)
    noisy = rng.random(branch.size) < 0.2
    argmax = np.where(noisy, rng.integers(0, E, branch.size), branch % E)
    t = teacher_figures(None, _log(argmax, branch, episode))
    assert t is not None and t.information is not None
    info = t.information
    assert info.permutations >= 100 and info.shifted_p95 is not None
    # far above the permutation p95 and above the stricter within-episode-shift p95
    assert info.mi > 20 * info.shuffled_p95 and info.mi > 5 * info.shifted_p95
    assert info.above_baseline and info.p_value == pytest.approx(1 / (info.permutations + 1))
    assert info.normalized is not None and info.normalized > 4 * MIN_SCENARIO_SHARE
    block = t.to_json()
    assert block[mn.BRANCH_MI] == pytest.approx(info.mi)
    assert block[mn.BRANCH_MI_SHUFFLED_P95] == pytest.approx(info.shuffled_p95)
    assert block[mn.BRANCH_MI_SHIFTED_P95] == pytest.approx(info.shifted_p95)
    v = _verdict(t)
    assert "the expert choice depends on the teacher's branch" in v and ", above its" in v


def test_a_random_router_scores_at_its_nulls():
    rng = np.random.default_rng(1)
    n_ep, length = 40, 100
    branch = _branches(n_ep, length, rng)
    episode = np.repeat(np.arange(n_ep), length)
    # random experts, with runs like a real router's: nothing ties them to the branch
    argmax = _branches(n_ep, length, np.random.default_rng(2)) % E
    t = teacher_figures(None, _log(argmax, branch, episode))
    assert t is not None and t.information is not None
    info = t.information
    assert not info.above_baseline
    assert info.null.p_value is not None and info.null.p_value > 0.05
    assert info.mi < 2 * info.baseline_p95
    v = _verdict(t)
    assert "not above its" in v and "the experts do not split by the teacher's branch" in v


def test_the_branch_keys_follow_the_scenario_keys():
    info = ScenarioInformation(0.3, 1.2, 0.01, 0.02, 0.005, 200, 1000, 0.05, 0.005)
    sc, br = info.to_json(), info.to_json("branch")
    for k in (mn.SCENARIO_MI, mn.SCENARIO_MI_NORMALIZED, mn.SCENARIO_MI_SHUFFLED_P95,
              mn.SCENARIO_MI_P_VALUE, mn.SCENARIO_MI_SHIFTED_P95, mn.SCENARIO_MI_SHIFTED_P_VALUE,
              mn.SCENARIO_MI_NULL, mn.SCENARIO_MI_NULL_P95, mn.SCENARIO_MI_NULL_P_VALUE):  # fmt: skip
        assert k in sc
    for k in (mn.BRANCH_MI, mn.BRANCH_MI_NORMALIZED, mn.BRANCH_MI_SHUFFLED_P95,
              mn.BRANCH_MI_P_VALUE, mn.BRANCH_MI_SHIFTED_P95, mn.BRANCH_MI_SHIFTED_P_VALUE,
              mn.BRANCH_MI_NULL_P95):  # fmt: skip
        assert k in br
    assert ScenarioInformation.from_json(br, "branch") == info
    assert ScenarioInformation.from_json(br) is None  # no scenario figures in a teacher block


def test_missing_teacher_figures_read_not_measured():
    v = verdict_of({"n_experts": E})
    assert "teacher's branches: not measured" in v
    t = TeacherFigures(10, "sampled", {"explore": 10}, agreement(np.zeros(10), np.zeros(10),
                       np.full(10, 4)))  # fmt: skip
    v = _verdict(t)
    assert "information about the teacher's branch: not measured" in v
    assert "forcing one expert on the teacher's action: not measured" in v
    assert "takes the teacher's action in 100.0 %" in v


# ------------------------------------------------------------------------ agreement
def test_agreement_per_branch_and_overall():
    action = np.array([1, 2, 3, 4, 5, 6])
    teacher = np.array([1, 2, 0, 4, 0, 0])
    branch = np.array([1, 1, 1, 4, 4, 4])  # fight, fight, fight, explore x3
    a = agreement(action, teacher, branch, np.array([0, 3]), np.array([1, 9]))
    assert list(a) == [ALL_STATES, "fight", "explore"]
    assert a[ALL_STATES].taken == pytest.approx(0.5) and a[ALL_STATES].n_states == 6
    assert a["fight"].taken == pytest.approx(2 / 3) and a["explore"].taken == pytest.approx(1 / 3)
    assert a[ALL_STATES].argmax == pytest.approx(0.5) and a[ALL_STATES].argmax_states == 2
    assert a["fight"].argmax == 1.0 and a["explore"].argmax == 0.0


# ------------------------------------------------------------------------ per-branch interventions
def _probs(rng, branch, strong: dict[int, int], noise: float = 0.05):
    """π(teacher's action) per expert: expert ``strong[b]`` at 0.8 on branch b, others 0.2."""
    forced = np.clip(0.2 + noise * rng.normal(size=(E, branch.size)), 0, 1)
    for b, e in strong.items():
        forced[e, branch == b] = np.clip(0.8 + noise * rng.normal(size=(branch == b).sum()), 0, 1)
    router = np.clip(0.3 + noise * rng.normal(size=branch.size), 0, 1)
    return router, forced


def test_per_branch_the_expert_that_raises_the_teachers_action_is_found():
    rng = np.random.default_rng(3)
    n_ep, length = 20, 60
    branch = _branches(n_ep, length, rng)
    episode = np.repeat(np.arange(n_ep), length)
    router, forced = _probs(rng, branch, {1: 2, 4: 0})  # fight -> e2, explore -> e0
    iv = branch_interventions(router, forced, branch, episode, NAMES, n_resamples=500)
    assert iv["fight"].best == "e2" and iv["explore"].best == "e0"
    g = iv["fight"].gain["e2"]
    assert g.diff == pytest.approx(0.5, abs=0.05) and g.ci is not None and g.ci[0] > 0.4
    assert iv["explore"].gain["e1"].sign == -1  # 0.2 against the router's 0.3
    assert iv["fight"].router_prob == pytest.approx(0.3, abs=0.03)
    # no expert stands out in the other branches: undetermined, never a point best sold as best
    assert iv["search"].best is None and iv["search"].ranking.point_best is not None
    t = TeacherFigures(branch.size, "sampled", {}, {}, interventions=iv)
    back = TeacherFigures.from_json(t.to_json())
    assert back is not None and back.interventions is not None
    assert back.interventions["fight"].best == "e2" and back.interventions["search"].best is None
    v = _verdict(back)
    assert re.search(r"fight: e2, \+0\.4\d\d \[\+0\.4", v) and "explore: e0, +0.4" in v
    assert "search: undetermined (point best" in v and "search: undetermined (point best" in v
    assert "different experts are the best in different branches" in v


def test_equal_experts_are_undetermined_in_every_branch():
    rng = np.random.default_rng(4)
    n_ep, length = 20, 60
    branch = _branches(n_ep, length, rng)
    episode = np.repeat(np.arange(n_ep), length)
    router, forced = _probs(rng, branch, {}, noise=0.1)
    iv = branch_interventions(router, forced, branch, episode, NAMES, n_resamples=500)
    assert iv and all(x.best is None for x in iv.values())
    assert "no expert is determined the best in any branch" in _verdict(
        TeacherFigures(branch.size, "sampled", {}, {}, interventions=iv)
    )


def test_one_expert_best_everywhere_is_a_stronger_imitator_not_a_specialist():
    rng = np.random.default_rng(5)
    branch = _branches(20, 60, rng)
    episode = np.repeat(np.arange(20), 60)
    router, forced = _probs(rng, branch, {b: 3 for b in range(len(BRANCHES))})
    iv = branch_interventions(router, forced, branch, episode, NAMES, n_resamples=500)
    assert {x.best for x in iv.values()} == {"e3"}
    v = _verdict(TeacherFigures(branch.size, "sampled", {}, {}, interventions=iv))
    assert "one expert (e3) is the best in every branch" in v and "not a branch specialist" in v


def test_a_consistent_but_tiny_lead_is_not_a_best():
    branch = np.full(40, 4)
    episode = np.repeat(np.arange(8), 5)
    forced = np.full((E, 40), 0.2)
    forced[1] += 1e-4  # ahead everywhere, by a hundredth of a percentage point
    iv = branch_interventions(np.full(40, 0.2), forced, branch, episode, NAMES, n_resamples=200)
    assert iv["explore"].ranking.best == "e1" and iv["explore"].best is None


def test_forced_probabilities_are_those_of_the_one_hot_intervention():
    cfg = make_config("smoke")
    torch.manual_seed(0)
    model = build_model(cfg.model, FeatureSpec(crop_size=cfg.env.crop_size), 23).eval()
    with torch.no_grad():  # make the experts differ enough to tell them apart
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(0)
    n = 12
    obs = Obs(
        torch.randn(n, F.STATE_DIM, generator=g),
        torch.randint(0, 8, (n, cfg.env.crop_size, cfg.env.crop_size), generator=g),
        torch.rand(n, F.N_ATOMS, generator=g) < 0.2,
    )
    ta = torch.randint(0, 23, (n,), generator=g)
    assert model.hint_gain is not None  # the hint's own term in the logits must be kept
    p = teacher_probs(model, obs, ta.numpy(), batch=5)  # batched encodings, as on many states
    with torch.no_grad():
        base = act(model, obs, action=ta)
        assert np.allclose(p.router, base.log_prob.exp().numpy(), atol=1e-5)
        assert np.array_equal(p.argmax, base.out.logits.argmax(-1).numpy())
        for i in range(model.n_experts):
            onehot = torch.zeros(n, model.n_experts)
            onehot[:, i] = 1
            r = act(model, obs, action=ta, alpha_override=onehot)
            assert np.allclose(p.forced[i], r.log_prob.exp().numpy(), atol=1e-5)
    assert not np.allclose(p.forced[0], p.forced[1])


# ------------------------------------------------------------------------ on real games
@dataclass
class BranchRouter:
    """A player that plays the teacher's action and routes by its branch (``random=False``) or
    to a random expert: it reads the branch off the advice, which no policy can."""

    random: bool = False
    name: str = "branch-router"
    expert_names: list[str] = field(default_factory=lambda: [f"b{i}" for i in range(NB)])
    routing: str | None = "sparsemax"
    temperature: float | None = 1.0
    needs_teacher: bool = True
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def start_episode(self, slot: int, seed: int | None) -> None:
        pass

    def choose(self, obs: Obs, teacher: Teacher | None = None) -> Choice:
        assert teacher is not None
        b = teacher.branch.numpy()
        e = self.rng.integers(0, NB, b.size) if self.random else np.maximum(b, 0)
        alpha = torch.from_numpy(np.eye(NB, dtype=np.float32)[e])
        logits = torch.zeros(b.size, 23)
        out = PolicyOutput(logits, torch.zeros(b.size), alpha, alpha, logits[:, None].expand(
            -1, NB, -1), None)  # fmt: skip
        return Choice(teacher.action.numpy().astype(np.int64), out)


@pytest.fixture(scope="module")
def played():
    env = teacher_env(make_config("smoke", ["env.max_episode_steps=150"]).env)
    return {
        r: play(BranchRouter(random=r), env, 3, num_envs=3, workers=0, collect_states=True)
        for r in (False, True)
    }


def test_on_real_games_a_branch_router_is_far_above_and_a_random_one_at_the_nulls(played):
    st = played[False].states
    assert st is not None and st.teacher_branch is not None and st.teacher_action is not None
    assert (st.teacher_branch >= 0).all() and (st.teacher_action >= 0).all()
    # the logged branch is the one the player saw for the same state (no off-by-one)
    assert np.array_equal(st.alpha.argmax(1), st.teacher_branch)
    s = run_entry(played[False])["summary"]
    t = s[mn.TEACHER]
    assert len(t["branch_counts"]) >= 3  # several branches on 3 real games
    assert t[mn.BRANCH_MI] == pytest.approx(t["branch_entropy"]) and t[mn.BRANCH_MI] > 0.3
    # far above the permutation p95; above the within-episode shifts, which keep the long runs of
    # a branch and so are a much stricter null on 3 episodes
    assert t[mn.BRANCH_MI] > 10 * t[mn.BRANCH_MI_SHUFFLED_P95]
    assert t["above_baseline"] and t[mn.BRANCH_MI] > t[mn.BRANCH_MI_SHIFTED_P95]
    # it plays the teacher's action: agreement is exact in every branch
    assert all(a["taken"] == 1.0 for a in t[mn.AGREEMENT].values())
    assert t[mn.BRANCH_INTERVENTIONS] is None  # no model: not measured
    assert "the expert choice depends on the teacher's branch" in verdict_of(s)
    r = run_entry(played[True])["summary"][mn.TEACHER]
    assert r[mn.BRANCH_MI] < max(r[mn.BRANCH_MI_SHUFFLED_P95], r[mn.BRANCH_MI_SHIFTED_P95]) * 1.5
    assert r["branch_mi_null_p_value"] > 0.01
    assert r[mn.BRANCH_MI] < 0.2 * t[mn.BRANCH_MI]


def test_the_teacher_changes_no_game_and_no_action():
    cfg = make_config("smoke", ["env.max_episode_steps=30"])
    torch.manual_seed(1)
    model = build_model(cfg.model, FeatureSpec(crop_size=cfg.env.crop_size), 23).eval()
    runs = {}
    for on in (False, True):
        env = teacher_env(cfg.env) if on else cfg.env
        assert env.teacher is on
        runs[on] = play(ModelPlayer(model), env, 2, num_envs=2, workers=0, collect_states=True)
    off, on_ = runs[False], runs[True]
    assert off.records == on_.records  # the same scores, lengths, depths, deaths
    assert off.states is not None and on_.states is not None
    assert np.array_equal(off.states.action, on_.states.action)
    assert np.array_equal(off.states.alpha, on_.states.alpha)
    assert off.states.teacher_branch is not None and (off.states.teacher_branch == -1).all()
    assert on_.states.teacher_branch is not None and (on_.states.teacher_branch >= 0).all()
    assert teacher_figures(None, off.states) is None
    assert mn.TEACHER not in run_entry(off)["summary"]
    assert math.isfinite(run_entry(on_)["summary"][mn.TEACHER][mn.BRANCH_MI])
