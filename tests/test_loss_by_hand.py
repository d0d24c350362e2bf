"""``ppo/loss.py`` on a 3-row batch against every term computed by hand (plain ``math``).

Batch (M = 3 rows, A = 2 actions, E = 2 experts, clip ε = 0.2):

* mixed policy π: row 0 ``[1/2, 1/2]``, row 1 ``[3/4, 1/4]``, row 2 ``[1/5, 4/5]``;
  actions ``0, 0, 1`` so ``log π(a) = ln 1/2, ln 3/4, ln 4/5``.
* ``old_logp = log π(a) - ln r`` with the ratios ``r = 1.5, 0.5, 1.1``: row 0 is clipped above,
  row 1 below, row 2 lies inside ``[0.8, 1.2]``.
* advantages ``A = 1, -2, 0.5``.
* values ``V = 1, 2, -1``, old values ``0.5, 1.5, -1.05``, returns ``R = 2, 1, 0``.
* router α: ``[1, 0]``, ``[1/2, 1/2]``, ``[1/4, 3/4]``.
* experts' action distributions: row 0 ``[1/2, 1/2]`` and ``[3/4, 1/4]``; row 1 both
  ``[1/2, 1/2]``; row 2 ``[4/5, 1/5]`` and ``[1/5, 4/5]``.
* routing prior: ``[1, 0]``, ``[1/4, 3/4]``, ``[1/2, 1/2]``.

Policy term, ``max(-A r, -A clip(r))`` per row (A not normalised):
row 0 ``max(-1.5, -1.2) = -1.2``; row 1 ``max(1.0, 1.6) = 1.6``; row 2 ``-0.55``;
mean ``-0.05``. Swapping max for min gives ``(-1.5 + 1.0 - 0.55) / 3 = -0.35``.

Value term, clipped: ``V - V_old = 0.5, 0.5, 0.05`` → clamped ``0.2, 0.2, 0.05`` →
``V_clip = 0.7, 1.7, -1.0``; ``(V - R)² = 1, 1, 1``; ``(V_clip - R)² = 1.69, 0.49, 1``;
max per row ``1.69, 1, 1`` → ``0.5 · 3.69 / 3 = 0.615`` (min would give ``0.415``, no clip
``0.5``).

Load balance: ``ᾱ = [7/12, 5/12]``, ``KL(ᾱ || uniform) = 7/12 ln(14/12) + 5/12 ln(10/12)``.

Every coefficient is non-zero and every term is non-zero, so flipping the sign with which any
term enters the total changes the total by ``2 c · term``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from nethack_moe.config.loss_terms import DIAGNOSTICS, LOSS_TERMS
from nethack_moe.ppo.loss import LossBatch, ppo_loss

CLIP = 0.2
VF = 0.5
COEFS = {
    "entropy": 0.1,
    "alpha_entropy": 0.2,
    "load_balance": 0.3,
    "diversity": 0.4,
    "routing_prior": 0.5,
}

PI = [[0.5, 0.5], [0.75, 0.25], [0.2, 0.8]]
ACTIONS = [0, 0, 1]
RATIO = [1.5, 0.5, 1.1]
ADV = [1.0, -2.0, 0.5]
V = [1.0, 2.0, -1.0]
V_OLD = [0.5, 1.5, -1.05]
RET = [2.0, 1.0, 0.0]
ALPHA = [[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]
EXPERTS = [
    [[0.5, 0.5], [0.75, 0.25]],
    [[0.5, 0.5], [0.5, 0.5]],
    [[0.8, 0.2], [0.2, 0.8]],
]
PRIOR = [[1.0, 0.0], [0.25, 0.75], [0.5, 0.5]]


def _inputs(with_prior: bool) -> tuple[SimpleNamespace, LossBatch]:
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    logp_a = [math.log(PI[i][ACTIONS[i]]) for i in range(3)]
    out = SimpleNamespace(
        logits=t(PI).log(),  # log-probabilities are valid logits
        value=t(V),
        alpha=t(ALPHA),
        expert_logits=t(EXPERTS).log(),
    )
    batch = LossBatch(
        actions=torch.tensor(ACTIONS),
        old_logp=t([logp_a[i] - math.log(RATIO[i]) for i in range(3)]),
        old_values=t(V_OLD),
        advantages=t(ADV),
        returns=t(RET),
        prior=t(PRIOR) if with_prior else None,
    )
    return out, batch


def _h(p: list[float]) -> float:
    """Entropy with 0 log 0 = 0."""
    return -sum(x * math.log(x) for x in p if x > 0)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(p, q, strict=True) if x > 0)


def _js(p: list[float], q: list[float]) -> float:
    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def _expected(clip_vloss: bool, norm_adv: bool, with_prior: bool) -> dict[str, float]:
    """Every term by hand (see the module docstring for the numbers)."""
    adv = list(ADV)
    if norm_adv:
        # mean -1/6; deviations 7/6, -11/6, 4/6; unbiased variance (49 + 121 + 16)/36 / 2 = 31/12
        mean = -1 / 6
        std = math.sqrt(31 / 12)
        adv = [(a - mean) / (std + 1e-8) for a in adv]
    clipped = [min(max(r, 1 - CLIP), 1 + CLIP) for r in RATIO]  # 1.2, 0.8, 1.1
    policy = sum(max(-a * r, -a * c) for a, r, c in zip(adv, RATIO, clipped, strict=True)) / 3
    if not norm_adv:
        assert policy == pytest.approx(-0.05)  # the docstring's figure
    if clip_vloss:
        v_clip = [o + min(max(v - o, -CLIP), CLIP) for v, o in zip(V, V_OLD, strict=True)]
        sq = [
            max((v - r) ** 2, (c - r) ** 2) for v, c, r in zip(V, v_clip, RET, strict=True)
        ]  # 1.69, 1, 1
        value = 0.5 * sum(sq) / 3
        assert value == pytest.approx(0.615)
    else:
        value = 0.5 * sum((v - r) ** 2 for v, r in zip(V, RET, strict=True)) / 3  # 0.5
    entropy = (_h(PI[0]) + _h(PI[1]) + _h(PI[2])) / 3  # (ln 2 + 0.5623 + 0.5004) / 3
    alpha_entropy = (0.0 + math.log(2) + _h(ALPHA[2])) / 3
    load_balance = 7 / 12 * math.log(14 / 12) + 5 / 12 * math.log(10 / 12)
    # one pair of experts per row; row 1's experts agree (JS 0)
    diversity = (_js(*EXPERTS[0]) + 0.0 + _js(*EXPERTS[2])) / 3
    routing_prior = (
        (0.0 + _kl(PRIOR[1], ALPHA[1]) + _kl(PRIOR[2], ALPHA[2])) / 3 if with_prior else 0.0
    )
    total = (
        policy
        + VF * value
        - COEFS["entropy"] * entropy
        + COEFS["alpha_entropy"] * alpha_entropy
        + COEFS["load_balance"] * load_balance
        - COEFS["diversity"] * diversity
        + COEFS["routing_prior"] * routing_prior
    )
    approx_kl = sum((r - 1) - math.log(r) for r in RATIO) / 3
    clip_frac = 2 / 3  # rows 0 and 1 lie outside [0.8, 1.2]
    return {
        "total": total,
        "policy": policy,
        "value": value,
        "entropy": entropy,
        "alpha_entropy": alpha_entropy,
        "load_balance": load_balance,
        "diversity": diversity,
        "routing_prior": routing_prior,
        "teacher": 0.0,  # no teacher actions in this batch (the term by hand: test_kickstart.py)
        "approx_kl": approx_kl,
        "clip_frac": clip_frac,
    }


@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("norm_adv", [False, True])
@pytest.mark.parametrize("clip_vloss", [False, True])
def test_every_loss_term_matches_the_hand_computation(clip_vloss, norm_adv, with_prior):
    out, batch = _inputs(with_prior)
    total, terms = ppo_loss(out, batch, COEFS, CLIP, VF, clip_vloss, norm_adv)
    want = _expected(clip_vloss, norm_adv, with_prior)
    assert set(terms) == set(want)
    assert list(terms) == [*LOSS_TERMS, *DIAGNOSTICS]  # the one list of names, in its order
    got = {k: float(v) for k, v in terms.items()}
    for k, v in want.items():
        rel = 1e-6 if k == "clip_frac" else 1e-9  # clip_frac is a float32 share
        assert got[k] == pytest.approx(v, rel=rel, abs=1e-12), k
    assert float(total) == pytest.approx(want["total"], rel=1e-9, abs=1e-12)


def test_hand_figures_are_distinct_where_a_bug_would_move_them():
    """The expected values are not degenerate: every term the total weighs is non-zero, and
    the clipped value term differs from the unclipped one."""
    want = _expected(clip_vloss=True, norm_adv=False, with_prior=True)
    for k in ("entropy", "alpha_entropy", "load_balance", "diversity", "routing_prior"):
        assert want[k] > 1e-3, k
    assert want["value"] != pytest.approx(_expected(False, False, True)["value"])


def test_coefficients_scale_their_own_term_only():
    """Each coefficient moves the total by exactly coefficient x its (signed) term."""
    out, batch = _inputs(with_prior=True)
    _, base = ppo_loss(out, batch, {}, CLIP, VF, True, False)
    sign = {"entropy": -1, "alpha_entropy": 1, "load_balance": 1, "diversity": -1,
            "routing_prior": 1}  # fmt: skip
    for k, s in sign.items():
        _, t = ppo_loss(out, batch, {k: 2.0}, CLIP, VF, True, False)
        assert float(t["total"]) == pytest.approx(float(base["total"]) + s * 2.0 * float(base[k]))


def _one_action_batch(v, v_old, ret, adv, prior=None):
    """Rows with one action of probability 1 (ratio 1, no entropy) and one expert."""
    m = len(v)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    out = SimpleNamespace(
        logits=torch.zeros(m, 1, dtype=torch.float64),
        value=t(v),
        alpha=torch.ones(m, 1, dtype=torch.float64),
        expert_logits=torch.zeros(m, 1, 1, dtype=torch.float64),
    )
    batch = LossBatch(torch.zeros(m, dtype=torch.long), torch.zeros(m, dtype=torch.float64),
                      t(v_old), t(adv), t(ret), prior)  # fmt: skip
    return out, batch


def test_value_term_clips_below_and_squares():
    # row 0: V - V_old = -1 -> clamped to -0.2: V_clip = 0.8, (V_clip - R)^2 = 0.64 > (V - R)^2 = 0
    # row 1: V - V_old = +0.5 -> +0.2: V_clip = 2.7, (V_clip - R)^2 = 2.89 < (V - R)^2 = 4
    out, batch = _one_action_batch(v=[0.0, 3.0], v_old=[1.0, 2.5], ret=[0.0, 1.0], adv=[0.0, 0.0])
    _, clipped = ppo_loss(out, batch, {}, CLIP, VF, True, False)
    assert float(clipped["value"]) == pytest.approx(0.5 * (0.64 + 4.0) / 2)
    _, plain = ppo_loss(out, batch, {}, CLIP, VF, False, False)
    assert float(plain["value"]) == pytest.approx(0.5 * (0.0 + 4.0) / 2)


def test_advantages_are_normalised_from_two_rows_on():
    # ratio 1 everywhere, so policy = -mean(A): one row is left as it is (its std is undefined);
    # two rows [1, 3] normalise to [-1/sqrt 2, 1/sqrt 2] (unbiased std sqrt 2): mean 0
    out, batch = _one_action_batch(v=[0.0], v_old=[0.0], ret=[0.0], adv=[2.0])
    assert float(ppo_loss(out, batch, {}, CLIP, VF, True, True)[1]["policy"]) == pytest.approx(-2.0)
    out, batch = _one_action_batch(v=[0.0, 0.0], v_old=[0.0, 0.0], ret=[0.0, 0.0], adv=[1.0, 3.0])
    assert float(ppo_loss(out, batch, {}, CLIP, VF, True, True)[1]["policy"]) == pytest.approx(0.0)
    assert float(ppo_loss(out, batch, {}, CLIP, VF, True, False)[1]["policy"]) == pytest.approx(
        -2.0
    )


def test_diversity_over_every_pair_of_three_experts_and_none_for_one():
    from nethack_moe.ppo.loss import expert_diversity

    # 3 experts over 2 actions (E != A): pairs (0,1) and (1,2) differ by the same JS, (0,2) agree
    p = [[0.5, 0.5], [0.75, 0.25], [0.5, 0.5]]
    logits = torch.tensor([p], dtype=torch.float64).log()
    assert float(expert_diversity(logits)) == pytest.approx(2 * _js(p[0], p[1]) / 3)
    one = expert_diversity(torch.zeros(4, 1, 3))
    assert one.shape == () and float(one) == 0.0
