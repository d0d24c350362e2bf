"""Routing functions: softmax, real sparsemax and entmax-1.5."""

from __future__ import annotations

import pytest
import torch

from nethack_moe.models.routing import ROUTING_KINDS, route


def test_sparsemax_closed_form_clipped() -> None:
    # z = [1, 0, -1]: support {0}: 1 + 1*1 > 1, but 1 + 2*0 > 1 fails -> tau = 0 -> [1, 0, 0]
    p = route(torch.tensor([1.0, 0.0, -1.0]), "sparsemax", 1.0)
    assert torch.equal(p, torch.tensor([1.0, 0.0, 0.0]))


def test_sparsemax_closed_form_full_support() -> None:
    # z = [0.5, 0.3, 0.1]: 1 + k z_(k) > sum_{j<=k} z_(j) holds for k = 1, 2, 3
    # (1.5 > 0.5, 1.6 > 0.8, 1.3 > 0.9), so tau = (0.9 - 1) / 3 = -1/30 and p = z - tau.
    z = torch.tensor([0.5, 0.3, 0.1], dtype=torch.float64)
    tau = (z.sum() - 1) / 3
    p = route(z, "sparsemax", 1.0)
    torch.testing.assert_close(p, z - tau)
    torch.testing.assert_close(p, torch.tensor([16 / 30, 10 / 30, 4 / 30], dtype=torch.float64))


def test_sparsemax_exact_zeros_partial_support() -> None:
    # z = [1.0, 0.8, 0.1]: k = 2 holds (1 + 1.6 > 1.8), k = 3 fails (1 + 0.3 < 1.9);
    # tau = (1.8 - 1) / 2 = 0.4 -> [0.6, 0.4, 0] with an exact zero.
    p = route(torch.tensor([1.0, 0.8, 0.1], dtype=torch.float64), "sparsemax", 1.0)
    torch.testing.assert_close(p, torch.tensor([0.6, 0.4, 0.0], dtype=torch.float64))
    assert p[2].item() == 0.0


def test_sparsemax_is_not_top_k() -> None:
    # three close logits keep three experts; four spread ones keep one: no fixed k.
    p3 = route(torch.tensor([0.30, 0.29, 0.28, -2.0]), "sparsemax", 1.0)
    p1 = route(torch.tensor([3.0, 0.0, -1.0, -2.0]), "sparsemax", 1.0)
    assert int((p3 > 0).sum()) == 3
    assert int((p1 > 0).sum()) == 1


@pytest.mark.parametrize("kind", ROUTING_KINDS)
def test_rows_are_distributions(kind: str) -> None:
    torch.manual_seed(0)
    z = torch.randn(64, 4) * 3
    p = route(z, kind, 0.7)
    assert p.shape == z.shape
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(64))


def test_entmax15_sums_to_one_and_is_sparse() -> None:
    z = torch.tensor([[3.0, 0.0, -3.0, -4.0], [0.1, 0.0, 0.05, -0.02]])
    p = route(z, "entmax15", 1.0)
    torch.testing.assert_close(p.sum(-1), torch.ones(2))
    assert (p[0] == 0).sum() >= 2  # spread logits: exact zeros
    assert (p[1] > 0).all()  # close logits: dense


def test_softmax_matches_torch() -> None:
    z = torch.tensor([[1.0, 2.0, 0.5, -1.0]])
    torch.testing.assert_close(route(z, "softmax", 2.0), torch.softmax(z / 2.0, -1))


@pytest.mark.parametrize("kind", ROUTING_KINDS)
def test_low_temperature_gives_one_hot(kind: str) -> None:
    z = torch.tensor([[0.3, 1.2, -0.5, 1.1], [2.0, -1.0, 1.9, 0.0]])
    p = route(z, kind, 1e-4)
    expected = torch.nn.functional.one_hot(z.argmax(-1), 4).float()
    torch.testing.assert_close(p, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ROUTING_KINDS)
def test_high_temperature_approaches_uniform(kind: str) -> None:
    z = torch.tensor([[0.3, 1.2, -0.5, 1.1], [2.0, -1.0, 1.9, 0.0]])
    p = route(z, kind, 1e4)
    torch.testing.assert_close(p, torch.full_like(p, 0.25), atol=1e-3, rtol=0)


@pytest.mark.parametrize("kind", ROUTING_KINDS)
def test_gradient_flows(kind: str) -> None:
    z = torch.tensor([[0.5, 0.3, 0.1, -0.2]], requires_grad=True)
    p = route(z, kind, 0.5)
    (p * torch.tensor([1.0, -1.0, 2.0, 0.0])).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_bad_arguments() -> None:
    z = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="top2"):
        route(z, "top2", 1.0)
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            route(z, "softmax", t)
