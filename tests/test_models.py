"""Model config, GAT encoder, actor-critic and benchmark on real NLE observations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nethack_moe.features import FeatureSpec
from nethack_moe.knowledge.graph import load_graph
from nethack_moe.models.bench import bench_model, collect_observations
from nethack_moe.models.config import VARIANTS, ModelConfig
from nethack_moe.models.gat import GATEncoder, GATLayer
from nethack_moe.models.policy import ActorCritic, GlyphConv, PolicyOutput, build_model
from nethack_moe.models.routing import ROUTING_KINDS

N_ACTIONS = 23
SPEC = FeatureSpec()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """48 states of seeded random play (state float32, crop int16, atoms bool)."""
    s, c, a = collect_observations(48, seed=3, spec=SPEC)
    return torch.as_tensor(s), torch.as_tensor(c), torch.as_tensor(a)


def _model(variant: str, **kw: object) -> ActorCritic:
    torch.manual_seed(0)
    return build_model(ModelConfig(variant=variant, **kw), SPEC, N_ACTIONS)  # type: ignore[arg-type]


# ---- config ------------------------------------------------------------------------------


def test_config_defaults_and_derived() -> None:
    cfg = ModelConfig().validate()
    assert cfg.uses_graph and cfg.is_moe and cfg.effective_n_experts == 4
    single = ModelConfig(variant="mlp_single").validate()
    assert not single.uses_graph and not single.is_moe and single.effective_n_experts == 1
    assert ModelConfig(variant="gat_single").expert_input == "z"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"variant": "transformer"}, "variant"),
        ({"n_experts": 3}, "expert_names"),
        ({"hidden": 0}, "hidden"),
        ({"gat_heads": -1}, "gat_heads"),
        ({"gat_dim": 30, "gat_heads": 4}, "gat_dim"),
        ({"conv_channels": ()}, "conv_channels"),
        ({"routing": "top2"}, "routing"),
        ({"temperature": 0.0}, "temperature"),
        ({"expert_names": ("a", "a", "b", "c")}, "expert_names"),
    ],
)
def test_config_validation_names_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kw).validate()  # type: ignore[arg-type]


def test_config_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match="hiden"):
        ModelConfig.from_dict({"hiden": 64})


# ---- GAT ---------------------------------------------------------------------------------


def test_gat_layer_matches_dense_gat_conv() -> None:
    pyg = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(0)
    B, N, F, H, C = 3, 11, 6, 4, 5
    ref = pyg.DenseGATConv(F, C, heads=H, concat=True)
    with torch.no_grad():
        ref.bias.normal_()  # non-zero bias, so it is checked too
    ours = GATLayer(F, C, H, n_relations=6)
    ours.lin.weight.data.copy_(ref.lin.weight.data)
    ours.att_src.data.copy_(ref.att_src.data)
    ours.att_dst.data.copy_(ref.att_dst.data)
    ours.bias.data.copy_(ref.bias.data)
    adj = torch.rand(N, N) < 0.3
    adj |= torch.eye(N, dtype=torch.bool)
    rel = torch.randint(1, 6, (N, N))
    x = torch.randn(B, N, F)
    expected = ref(x, adj.float(), add_loop=False)
    torch.testing.assert_close(ours(x, adj, rel), expected, rtol=1e-5, atol=1e-5)
    dst, src = adj.nonzero(as_tuple=True)
    sparse = ours.propagate(x.permute(1, 2, 0), src, dst, rel[dst, src]).permute(2, 0, 1)
    torch.testing.assert_close(sparse, expected, rtol=1e-5, atol=1e-5)
    # only some destination nodes, in output slots
    keep = (dst == 2) | (dst == 5)
    slot = (dst[keep] == 5).long()
    part = ours.propagate(x.permute(1, 2, 0), src[keep], dst[keep], rel[dst, src][keep], slot, 2)
    torch.testing.assert_close(part.permute(2, 0, 1), expected[:, [2, 5]], rtol=1e-5, atol=1e-5)
    # the relation bias (zero at init) changes the attention once learned
    with torch.no_grad():
        assert ours.rel_bias is not None
        ours.rel_bias.normal_()
    assert not torch.allclose(ours(x, adj, rel), expected)
    sparse = ours.propagate(x.permute(1, 2, 0), src, dst, rel[dst, src]).permute(2, 0, 1)
    torch.testing.assert_close(sparse, ours(x, adj, rel), rtol=1e-5, atol=1e-5)


def test_gat_dedup_equals_plain(batch: tuple[torch.Tensor, ...]) -> None:
    _, _, atoms = batch
    assert len(np.unique(atoms.numpy(), axis=0)) < len(atoms)  # real play repeats atom vectors
    torch.manual_seed(0)
    enc = GATEncoder(load_graph())
    a = enc(atoms, dedup=True)
    b = enc(atoms, dedup=False)
    torch.testing.assert_close(a.h_graph, b.h_graph, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.operator_scores, b.operator_scores, rtol=1e-5, atol=1e-6)
    # the sparse path equals the dense masked-attention path
    enc.sparse = False
    c = enc(atoms, dedup=False)
    torch.testing.assert_close(c.h_graph, b.h_graph, rtol=1e-4, atol=1e-5)
    # float atoms (torch.unique over rows) give the same result
    d = enc(atoms.float(), dedup=True)
    torch.testing.assert_close(d.operator_scores, c.operator_scores, rtol=1e-4, atol=1e-5)
    # more atoms than fit in an int64 key: the row-unique fallback
    enc.sparse = True
    enc.bit_weights = enc.bit_weights[:10]
    e = enc(atoms, dedup=True)
    torch.testing.assert_close(e.operator_scores, b.operator_scores, rtol=1e-5, atol=1e-6)


def test_gat_sees_the_atoms() -> None:
    torch.manual_seed(0)
    g = load_graph()
    enc = GATEncoder(g)
    atoms = torch.zeros(2, len(g.atom_names), dtype=torch.bool)
    atoms[1, g.atom_names.index("more_prompt")] = True
    out = enc(atoms)
    op = g.operator_names.index("dismiss_more")
    assert out.operator_scores[0, op] != out.operator_scores[1, op]
    prior = enc.expert_prior(out.operator_scores)
    torch.testing.assert_close(prior.sum(-1), torch.ones(2))


@pytest.mark.parametrize("stride", [1, 2])
def test_glyph_conv_equals_embedding_then_conv(
    stride: int, batch: tuple[torch.Tensor, ...]
) -> None:
    crop = batch[1]
    torch.manual_seed(0)
    g = GlyphConv(SPEC.n_glyph_groups, 8, 12, stride)
    emb = torch.nn.Embedding(SPEC.n_glyph_groups, 8)
    conv = torch.nn.Conv2d(8, 12, 3, stride=stride, padding=1)
    with torch.no_grad():
        emb.weight.copy_(g.emb)
        conv.weight.copy_(g.weight)
        conv.bias.copy_(g.bias)
    ref = conv(emb(crop.long()).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    out = g(crop)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    assert g.emb.grad is not None and g.weight.grad is not None and g.bias.grad is not None
    torch.testing.assert_close(g.emb.grad, emb.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g.weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g.bias.grad, conv.bias.grad, rtol=1e-4, atol=1e-4)


# ---- actor-critic ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("routing", ROUTING_KINDS)
def test_every_variant_and_routing_runs(
    variant: str, routing: str, batch: tuple[torch.Tensor, ...]
) -> None:
    state, crop, atoms = batch
    B = state.shape[0]
    m = _model(variant)
    out = m(state, crop, atoms, routing=routing, temperature=0.5)
    assert isinstance(out, PolicyOutput)
    E = 4 if variant.endswith("moe") else 1
    assert out.logits.shape == (B, N_ACTIONS)
    assert out.value.shape == (B,)
    assert out.alpha.shape == (B, E) and out.router_logits.shape == (B, E)
    assert out.expert_logits.shape == (B, E, N_ACTIONS)
    torch.testing.assert_close(out.alpha.sum(-1), torch.ones(B))
    if variant.startswith("gat"):
        assert out.operator_scores is not None
        assert out.operator_scores.shape == (B, len(m.operator_names))
    else:
        assert out.operator_scores is None
    if E == 1:
        assert torch.equal(out.alpha, torch.ones(B, 1))
    mixed = (out.alpha.unsqueeze(-1) * out.expert_logits).sum(1)
    torch.testing.assert_close(out.logits, mixed)
    loss = out.logits.logsumexp(-1).mean() + out.value.square().mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_input_dtypes_are_equivalent(batch: tuple[torch.Tensor, ...]) -> None:
    state, crop, atoms = batch
    m = _model("gat_moe")
    ref = m(state, crop, atoms)
    for c, a in ((crop.long(), atoms.to(torch.uint8)), (crop, atoms.float())):
        out = m(state, c, a)
        torch.testing.assert_close(out.logits, ref.logits)
        torch.testing.assert_close(out.value, ref.value)


def test_dedup_flag_does_not_change_the_model(batch: tuple[torch.Tensor, ...]) -> None:
    state, crop, atoms = batch
    a = _model("gat_moe", gat_dedup=True)(state, crop, atoms)
    b = _model("gat_moe", gat_dedup=False)(state, crop, atoms)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.value, b.value, rtol=1e-5, atol=1e-6)


def test_sparse_routing_gives_exact_zeros(batch: tuple[torch.Tensor, ...]) -> None:
    state, crop, atoms = batch
    m = _model("gat_moe")
    with torch.no_grad():
        last = m.router[-1]  # type: ignore[index]
        last.weight.mul_(1000.0)  # spread the router logits
    out = m(state, crop, atoms, routing="sparsemax", temperature=0.1)
    assert (out.alpha == 0).any()
    torch.testing.assert_close(out.alpha.sum(-1), torch.ones(len(state)))


def test_ppo_loss_reaches_every_part(batch: tuple[torch.Tensor, ...]) -> None:
    state, crop, atoms = batch
    B = state.shape[0]
    m = _model("gat_moe")
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, N_ACTIONS, (B,), generator=g)
    adv = torch.randn(B, generator=g)
    ret = torch.randn(B, generator=g)
    with torch.no_grad():
        old = m(state, crop, atoms, routing="softmax", temperature=1.0)
        old_logp = torch.log_softmax(old.logits, -1).gather(1, actions[:, None]).squeeze(1)
        old_logp = old_logp - 0.1 * adv.sign()  # ratios != 1, so both clip branches occur
    out = m(state, crop, atoms, routing="softmax", temperature=1.0)
    logp = torch.log_softmax(out.logits, -1).gather(1, actions[:, None]).squeeze(1)
    ratio = torch.exp(logp - old_logp)
    surr = torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv)
    loss = -surr.mean() + 0.5 * (out.value - ret).square().mean()
    loss.backward()
    assert (out.alpha > 0).all()

    def grad_norm(params: list[torch.nn.Parameter]) -> float:
        assert all(p.grad is not None for p in params)
        return math.fsum(float(p.grad.abs().sum()) for p in params if p.grad is not None)

    assert m.gat is not None and m.router is not None
    for k, layer in enumerate(m.gat.layers):
        assert grad_norm(list(layer.parameters())) > 0, f"GAT layer {k}"
    assert grad_norm([m.gat.node_emb, m.gat.type_emb, m.gat.node_bias_act]) > 0
    assert grad_norm(list(m.router.parameters())) > 0
    assert grad_norm(list(m.critic.parameters())) > 0
    assert grad_norm(list(m.encoder.parameters())) > 0
    bank = m.experts
    for i in range(bank.n_experts):
        for p in (bank.w1, bank.b1, bank.w2, bank.b2):
            assert p.grad is not None and p.grad[i].abs().sum() > 0, f"expert {i}"
    for name, p in m.named_parameters():
        if name.startswith("gat.op_head"):
            continue  # operator scores feed only the optional routing-prior term, not this loss
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_expert_prior(batch: tuple[torch.Tensor, ...]) -> None:
    state, crop, atoms = batch
    m = _model("gat_moe")
    out = m(state, crop, atoms)
    assert out.operator_scores is not None
    prior = m.expert_prior(out.operator_scores)
    assert prior.shape == (len(state), 4)
    torch.testing.assert_close(prior.sum(-1), torch.ones(len(state)))
    with pytest.raises(ValueError):
        _model("mlp_moe").expert_prior(out.operator_scores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda(batch: tuple[torch.Tensor, ...]) -> None:
    dev = torch.device("cuda")
    m = _model("gat_moe").to(dev)
    ref = _model("gat_moe")(*batch)
    out = m(*(t.to(dev) for t in batch), routing="sparsemax", temperature=0.5)
    (out.logits.logsumexp(-1).mean() + out.value.mean()).backward()
    assert out.logits.device.type == "cuda"
    out_cpu = m(*(t.to(dev) for t in batch))
    torch.testing.assert_close(out_cpu.logits.cpu(), ref.logits, rtol=1e-4, atol=1e-5)


def test_two_conv_encoder(batch: tuple[torch.Tensor, ...]) -> None:
    m = _model("mlp_moe", conv_channels=(16, 32))
    out = m(*batch)
    assert out.logits.shape == (len(batch[0]), N_ACTIONS)


def test_bench_model_smoke() -> None:
    r = bench_model("gat_moe", batch_sizes=(8,), repeats=1, warmup=0, n_states=8)
    assert r["variant"] == "gat_moe" and r["params"] > 0
    assert set(r["fwd_bwd_ms"]) == {8} and r["fwd_bwd_ms"][8] > 0 and r["fwd_ms"][8] > 0
    assert "cpu" in r["machine"] and "torch" in r["machine"]
