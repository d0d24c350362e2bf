"""GAE against a hand-computed case with a truncation (bootstrapped) and a death.

Here the test adds ``gamma * V(final)`` to the reward itself; the trainer's own bootstrap
(``_record_step``) is driven into GAE in ``test_record_step.py``.
"""

import torch

from nethack_moe.ppo.gae import compute_gae


def test_gae_hand_computed_with_truncation_and_death():
    g, lam = 0.9, 0.5
    # one env, 4 steps: step 1 truncates (reward already holds + g * V(final) = 0.9 * 2.0),
    # step 3 dies; V(s_T) = 5 must not leak into the dead step.
    v_final = 2.0
    rewards = torch.tensor([[1.0], [0.5 + g * v_final], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [0.2], [0.4]])
    dones = torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    last = torch.tensor([5.0])
    adv, ret = compute_gae(rewards, values, dones, last, g, lam)
    d3 = 2.0 - 0.4  # death: no bootstrap
    d2 = 0.0 + g * 0.4 - 0.2
    d1 = 0.5 + g * v_final - 1.0  # truncation: bootstrap from V(final), not from V(s_2)
    d0 = 1.0 + g * 1.0 - 0.5
    a3 = d3
    a2 = d2 + g * lam * a3
    a1 = d1
    a0 = d0 + g * lam * a1
    expect = torch.tensor([[a0], [a1], [a2], [a3]])
    assert torch.allclose(adv, expect, atol=1e-6)
    assert torch.allclose(ret, expect + values, atol=1e-6)


def test_gae_bootstraps_from_last_value_when_running():
    adv, _ = compute_gae(
        torch.tensor([[0.0]]),
        torch.tensor([[1.0]]),
        torch.tensor([[0.0]]),
        torch.tensor([3.0]),
        0.5,
        1.0,
    )
    assert torch.allclose(adv, torch.tensor([[0.5 * 3.0 - 1.0]]))


def test_gae_envs_are_independent():
    r = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.zeros(2, 2)
    d = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    adv, _ = compute_gae(r, v, d, torch.zeros(2), 1.0, 1.0)
    assert torch.allclose(adv[:, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(adv[:, 1], torch.tensor([1.0, 1.0]))
