"""Model config, GAT encoder, actor-critic and benchmark on real NLE observations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nethack_moe.features import FeatureSpec
from nethack_moe.knowledge.loader import load_graph
from nethack_moe.models.bench import bench_model, collect_observations, visited_states
from nethack_moe.models.config import VARIANTS, ModelConfig
from nethack_moe.models.gat import SCORE_CAP, GATEncoder, SignedAttention, ancestor_atoms
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


def _reference_attention(att: SignedAttention, x: torch.Tensor) -> torch.Tensor:
    """Node-by-node loop of the formula in :class:`SignedAttention` (sources ``x [S, U, D]``)."""
    S, U, D = x.shape
    H = att.heads
    w = torch.exp(att.edge_bias)
    out = torch.zeros(att.support.shape[0], U, D)
    for i in range(att.support.shape[0]):
        for u in range(U):
            num, den = torch.zeros(H, D // H), torch.zeros(H)
            for j in range(S):
                v, a = att.proj(x[j, u]).split([D, H])
                s = torch.exp(SCORE_CAP * torch.tanh(a / SCORE_CAP))
                for m, sign in ((att.support, 1.0), (att.inhibit, -1.0)):
                    if m[i, j]:
                        k = 0 if sign > 0 else 1
                        num += sign * w[k, i, j] * s[:, None] * v.view(H, -1)
                        den += w[k, i, j] * s
            out[i, u] = (num / den[:, None]).flatten()
    return out


def test_signed_attention_matches_its_formula() -> None:
    torch.manual_seed(0)
    A, S, L, U, D, H = 3, 4, 5, 6, 8, 2
    sup = torch.rand(L, A + S) < 0.5
    inh = (torch.rand(L, A + S) < 0.3) & ~sup
    sup[:, 0] = True  # every destination has an edge
    att = SignedAttention(D, H, sup.numpy(), inh.numpy())
    with torch.no_grad():
        att.edge_bias.normal_()
    off, on = torch.randn(A, D), torch.randn(A, D)
    bits = torch.rand(U, A) < 0.5
    x = torch.randn(S, U, D)
    binary_as_states = torch.where(bits.t().unsqueeze(-1), on.unsqueeze(1), off.unsqueeze(1))
    expected = _reference_attention(att, torch.cat([binary_as_states, x]))
    out = att(off, on, bits.float(), x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_ancestor_atoms_follow_paths_and_signs() -> None:
    g = load_graph()
    sup, inh = ancestor_atoms(g)
    idx = g.node_index
    a = {n: i for i, n in enumerate(g.atom_names)}
    # threat_present <- hostile_adjacent (support); rest <- unless threat_present: inhibits
    assert sup[idx["threat_present"], a["hostile_adjacent"]]
    assert inh[idx["rest"], a["hostile_adjacent"]]
    # every concept and operator derives from at least one atom
    for n in list(g.operator_names):
        assert (sup[idx[n]] | inh[idx[n]]).any(), n


def test_gat_dedup_equals_plain(batch: tuple[torch.Tensor, ...]) -> None:
    _, _, atoms = batch
    assert len(np.unique(atoms.numpy(), axis=0)) < len(atoms)  # real play repeats atom vectors
    torch.manual_seed(0)
    enc = GATEncoder(load_graph())
    a = enc(atoms, dedup=True)
    b = enc(atoms, dedup=False)
    torch.testing.assert_close(a.h_graph, b.h_graph, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.operator_scores, b.operator_scores, rtol=1e-5, atol=1e-6)
    # float atoms (torch.unique over rows) give the same result
    d = enc(atoms.float(), dedup=True)
    torch.testing.assert_close(d.operator_scores, b.operator_scores, rtol=1e-4, atol=1e-5)
    # more atoms than fit in an int64 key: the row-unique fallback
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


def test_toggling_one_atom_moves_h_graph_and_routing() -> None:
    """At initialisation every single atom changes ``h_graph`` by a measurable amount (the old
    encoder moved it by 0.2 % of its norm) and the router's weights with it."""
    torch.manual_seed(0)
    s, c, a = visited_states(256)
    m = _model("gat_moe")
    state, crop, atoms = torch.as_tensor(s), torch.as_tensor(c), torch.as_tensor(a)
    with torch.no_grad():
        enc = m.encode(state, crop, atoms)
        base = m.head(enc).alpha
        assert enc.h_graph is not None
        for j, name in enumerate(SPEC.atom_names):
            flipped = atoms.clone()
            flipped[:, j] = ~flipped[:, j]
            enc2 = m.encode(state, crop, flipped)
            assert enc2.h_graph is not None
            rel = ((enc2.h_graph - enc.h_graph).norm(dim=1) / enc.h_graph.norm(dim=1)).mean()
            assert rel > 0.02, f"{name}: h_graph moved by {float(rel):.4f}"
            assert (m.head(enc2).alpha - base).abs().max() > 0, name


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
    for part in (m.gat.concept_attn, m.gat.op_attn, m.gat.op_head, m.gat.out):
        assert grad_norm(list(part.parameters())) > 0, part
    assert grad_norm([m.gat.node_emb, m.gat.atom_emb]) > 0
    assert grad_norm(list(m.router.parameters())) > 0
    assert grad_norm(list(m.critic.parameters())) > 0
    assert grad_norm(list(m.encoder.parameters())) > 0
    bank = m.experts
    for i in range(bank.n_experts):
        for p in (bank.w1, bank.b1, bank.w2, bank.b2):
            assert p.grad is not None and p.grad[i].abs().sum() > 0, f"expert {i}"
    for name, p in m.named_parameters():
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


def test_hint_skip_adds_a_learned_gain_on_the_hinted_action(
    batch: tuple[torch.Tensor, ...],
) -> None:
    """``hint_to_logits``: zero gain at init (the policy is unchanged); with a gain, each expert's
    logit of the hinted action rises by it and the other actions' logits stay; gradients reach it."""
    from nethack_moe.features import N_NAV, NAV_ONEHOT
    from nethack_moe.game.actions import HINT_ACTIONS

    state, crop, atoms = batch
    torch.manual_seed(0)
    m = _model("gat_moe", hint_to_logits=True)
    torch.manual_seed(0)
    plain = _model("gat_moe")
    torch.testing.assert_close(m(*batch).logits, plain(*batch).logits)
    with torch.no_grad():
        assert m.hint_gain is not None
        m.hint_gain.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    out, ref = m(*batch), plain(*batch)
    nav = state[:, NAV_ONEHOT : NAV_ONEHOT + N_NAV]
    rows = torch.nonzero(nav.sum(1) > 0).flatten()
    assert len(rows) > 0
    for r in rows.tolist():
        a = int(HINT_ACTIONS[int(nav[r].argmax())])
        diff = out.expert_logits[r] - ref.expert_logits[r]  # [E, A]
        torch.testing.assert_close(diff[:, a], torch.tensor([1.0, 2.0, 3.0, 4.0]))
        assert diff[:, [x for x in range(N_ACTIONS) if x != a]].abs().max() < 1e-5
    out.logits.logsumexp(-1).mean().backward()
    assert m.hint_gain.grad is not None and m.hint_gain.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="23-action"):
        build_model(ModelConfig(hint_to_logits=True), SPEC, 17)
