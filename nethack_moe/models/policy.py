"""The actor-critic: state encoder, knowledge-graph GAT, router, experts and critic.

```
state [B,S] ─ MLP ─┐
crop [B,C,C] ─ glyph-group embedding ─ convs ─ MLP ─┴─ merge ─ h_state [B,H]
atoms [B,A] ─ GAT over the knowledge graph ─ h_graph [B,G], operator scores [B,O]
z = [h_state, h_graph]   (mlp variants: z = h_state)
router(z) ─ logits [B,E] ─ route(kind, T) ─ alpha [B,E]
experts(h_state) ─ [B,E,n_actions] ─ sum_i alpha_i · logits_i ─ policy logits [B,n_actions]
critic(z) ─ value [B]
```

The same :meth:`ActorCritic.forward` serves acting and learning.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nethack_moe.features import (
    BASE_STATE_DIM,
    HINT_STATE_COLUMNS,
    LAST_ACTION,
    LAST_MOVE_DIM,
    N_LAST_ACTIONS,
    N_NAV,
    NAV_ONEHOT,
    FeatureSpec,
)
from nethack_moe.game.actions import HINT_ACTIONS, N_TASK_ACTIONS
from nethack_moe.knowledge.graph import KnowledgeGraph
from nethack_moe.knowledge.loader import load_graph
from nethack_moe.models.config import ModelConfig
from nethack_moe.models.gat import GATEncoder
from nethack_moe.models.routing import check_routing, route


class PolicyOutput(NamedTuple):
    """Everything one forward pass computes."""

    logits: Tensor
    """``[B, n_actions]`` mixed action logits (the policy is ``softmax(logits)``)."""
    value: Tensor
    """``[B]`` state value."""
    alpha: Tensor
    """``[B, E]`` expert weights (ones ``[B, 1]`` for single-expert variants)."""
    router_logits: Tensor
    """``[B, E]`` router logits before the temperature (zeros ``[B, 1]`` for single variants)."""
    expert_logits: Tensor
    """``[B, E, n_actions]`` action logits of every expert."""
    operator_scores: Tensor | None
    """``[B, n_operators]`` GAT operator scores, ``None`` without a graph."""


class Encoded(NamedTuple):
    """What :meth:`ActorCritic.encode` computes from the observation."""

    h_state: Tensor
    """``[B, hidden]`` state encoding (blstats, crop, hint)."""
    h_graph: Tensor | None
    """``[B, graph_embed_dim]`` knowledge-graph read-out, ``None`` without a graph."""
    operator_scores: Tensor | None
    """``[B, n_operators]`` operator scores, ``None`` without a graph."""
    hint: Tensor | None = None
    """``[B, n_actions]`` one-hot of the action the navigation hint advises (zeros without a
    hint), ``None`` unless ``model.hint_to_logits``."""


class _LookupSum(torch.autograd.Function):
    """``out[p] = sum_k table[idx[p, k]]`` (``embedding_bag`` sum) with a fast backward.

    ``embedding_bag``'s own CPU backward is slow; this one does ``K`` ``index_add_`` calls.
    """

    @staticmethod
    def forward(ctx: Any, table: Tensor, idx: Tensor) -> Tensor:
        """``table [V, C]``, ``idx [P, K]`` -> ``[P, C]``."""
        ctx.save_for_backward(idx.t().contiguous())
        ctx.n_rows = table.shape[0]
        return F.embedding_bag(idx, table, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        """Gradient of the table only (indices have none)."""
        (idx_t,) = ctx.saved_tensors
        g = grad.new_zeros(ctx.n_rows, grad.shape[1])
        for col in idx_t:
            g.index_add_(0, col, grad)
        return g, None


class GlyphConv(nn.Module):
    """Glyph-group embedding followed by a 3x3 convolution (padding 1), computed as one lookup.

    Exactly ``Conv2d(E, C, 3, stride, padding=1)(Embedding(G, E)(crop))``, but the embedding is
    folded into the kernel: with ``T_k = emb @ W_k^T`` (``[G, C]`` per kernel offset ``k``) each
    output cell is ``bias + sum_k T_k[crop at offset k]`` (``embedding_bag``). This avoids the
    convolution's input gradient, the most expensive part of the encoder's backward on CPU.
    Output is channels-last ``[B, S', S', C]``.
    """

    offsets: Tensor

    def __init__(self, n_groups: int, embed_dim: int, channels: int, stride: int) -> None:
        super().__init__()
        self.n_groups, self.stride = n_groups, stride
        self.emb = nn.Parameter(torch.randn(n_groups, embed_dim))
        conv = nn.Conv2d(embed_dim, channels, 3, stride=stride, padding=1)
        self.weight = nn.Parameter(conv.weight.detach().clone())  # [C, E, 3, 3]
        assert conv.bias is not None
        self.bias = nn.Parameter(conv.bias.detach().clone())  # [C]
        self.register_buffer("offsets", torch.arange(9) * (n_groups + 1), persistent=False)

    def forward(self, crop: Tensor) -> Tensor:
        """``crop [B, S, S]`` group ids -> ``[B, S', S', C]``."""
        B = crop.shape[0]
        V = self.n_groups + 1  # row V-1 of each T_k is zero: the convolution's zero padding
        cp = F.pad(crop.long(), (1, 1, 1, 1), value=self.n_groups)  # [B, S+2, S+2]
        patches = cp.unfold(1, 3, self.stride).unfold(2, 3, self.stride)  # [B, S', S', 3, 3]
        side = patches.shape[1]
        idx = patches.reshape(-1, 9) + self.offsets  # [B*S'*S', 9] rows of the stacked T
        emb = torch.cat([self.emb, self.emb.new_zeros(1, self.emb.shape[1])])  # [V, E]
        table = torch.einsum("ve,cek->kvc", emb, self.weight.flatten(2)).reshape(9 * V, -1)
        out = _LookupSum.apply(table, idx) + self.bias  # [B*S'*S', C]
        return out.view(B, side, side, -1)


class StateEncoder(nn.Module):
    """``state [B,S]`` + ``crop [B,C,C]`` glyph groups -> ``h_state [B, hidden]``.

    Crop branch: glyph-group embedding -> 3x3 convs (the first fused with the embedding, see
    :class:`GlyphConv`; the last has stride 2) -> flatten -> Linear -> ReLU. Group 0 (outside the
    map) has a learned embedding like the others.
    """

    def __init__(self, spec: FeatureSpec, cfg: ModelConfig) -> None:
        super().__init__()
        # without the one-step memory the model reads the state's first BASE_STATE_DIM columns
        self.state_in = BASE_STATE_DIM
        if cfg.last_move_inputs:
            self.state_in = LAST_MOVE_DIM + 1 if cfg.still_inputs else LAST_MOVE_DIM
        if cfg.action_inputs:
            self.state_in = LAST_ACTION + N_LAST_ACTIONS
        self.state_mlp = nn.Sequential(nn.Linear(self.state_in, cfg.hidden), nn.ReLU())
        n_conv = len(cfg.conv_channels)
        first_stride = 2 if n_conv == 1 else 1
        self.glyph_conv = GlyphConv(
            spec.n_glyph_groups, cfg.glyph_embed_dim, cfg.conv_channels[0], first_stride
        )
        side = (spec.crop_size - 1) // first_stride + 1
        convs: list[nn.Module] = []
        c_in = cfg.conv_channels[0]
        for k, c_out in enumerate(cfg.conv_channels[1:], start=1):
            stride = 2 if k == n_conv - 1 else 1
            convs += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU()]
            c_in, side = c_out, (side - 1) // stride + 1
        self.convs = nn.Sequential(*convs)
        self.crop_mlp = nn.Sequential(nn.Linear(c_in * side * side, cfg.hidden), nn.ReLU())
        self.merge = nn.Sequential(nn.Linear(2 * cfg.hidden, cfg.hidden), nn.ReLU())
        mask = None
        if not cfg.hint_inputs:  # the no-hint ablation: the hint columns never reach the model
            mask = torch.ones(self.state_in)
            mask[list(HINT_STATE_COLUMNS)] = 0.0
        self.state_mask: Tensor | None
        self.register_buffer("state_mask", mask, persistent=False)

    def forward(self, state: Tensor, crop: Tensor) -> Tensor:
        """Encode; ``crop`` may be int16 or int64."""
        x = F.relu(self.glyph_conv(crop))  # [B, S', S', C1] channels-last
        if len(self.convs):
            x = self.convs(x.permute(0, 3, 1, 2))  # [B, C, S'', S'']
        c = self.crop_mlp(x.flatten(1))  # [B, H]
        x_state = state[:, : self.state_in].float()  # [B, state_in]
        if self.state_mask is not None:
            x_state = x_state * self.state_mask
        s = self.state_mlp(x_state)  # [B, H]
        return self.merge(torch.cat([s, c], dim=-1))  # [B, H]


class ExpertBank(nn.Module):
    """``E`` two-layer MLPs evaluated together: ``x [B, D]`` -> ``[B, E, n_actions]``.

    Expert ``i`` owns the slices ``w1[i], b1[i], w2[i], b2[i]``.
    """

    def __init__(self, n_experts: int, in_dim: int, hidden: int, n_actions: int) -> None:
        super().__init__()
        self.n_experts, self.in_dim, self.hidden, self.n_actions = (
            n_experts,
            in_dim,
            hidden,
            n_actions,
        )
        self.w1 = nn.Parameter(torch.empty(n_experts, in_dim, hidden))
        self.b1 = nn.Parameter(torch.empty(n_experts, hidden))
        self.w2 = nn.Parameter(torch.empty(n_experts, hidden, n_actions))
        self.b2 = nn.Parameter(torch.zeros(n_experts, n_actions))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``-like first layer; small orthogonal output layer (near-uniform policy)."""
        b = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.w1, -b, b)
        nn.init.uniform_(self.b1, -b, b)
        for i in range(self.n_experts):
            nn.init.orthogonal_(self.w2.data[i], gain=0.01)
        nn.init.zeros_(self.b2)

    def forward(self, x: Tensor) -> Tensor:
        """All experts' logits ``[B, E, n_actions]``."""
        B = x.shape[0]
        w1 = self.w1.permute(1, 0, 2).reshape(self.in_dim, -1)  # [D, E*Hh]: one GEMM for all
        h = F.relu((x @ w1).view(B, self.n_experts, self.hidden) + self.b1)  # [B, E, Hh]
        out = torch.bmm(h.transpose(0, 1), self.w2)  # [E, B, A]
        return out.transpose(0, 1) + self.b2  # [B, E, A]


class ActorCritic(nn.Module):
    """The policy/value network; build it with :func:`build_model`."""

    hint_map: Tensor

    def __init__(
        self,
        cfg: ModelConfig,
        spec: FeatureSpec,
        n_actions: int,
        graph: KnowledgeGraph | None = None,
    ) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.spec = spec
        self.n_actions = n_actions
        self.n_experts = cfg.effective_n_experts
        self.expert_names = cfg.effective_expert_names
        self.encoder = StateEncoder(spec, cfg)
        self.gat: GATEncoder | None = None
        self.graph: KnowledgeGraph | None = None
        z_dim = cfg.hidden
        if cfg.uses_graph:
            if graph is None:
                graph = load_graph(
                    cfg.graph_path,
                    expert_names=cfg.expert_names if cfg.is_moe else None,
                    atoms=spec.atom_names,
                )
            self.graph = graph
            self.gat = GATEncoder(
                graph,
                gat_dim=cfg.gat_dim,
                heads=cfg.gat_heads,
                out_dim=cfg.graph_embed_dim,
                dedup=cfg.gat_dedup,
            )
            z_dim += cfg.graph_embed_dim
        self.z_dim = z_dim
        self.router: nn.Sequential | None = None
        if cfg.is_moe:
            self.router = nn.Sequential(
                nn.Linear(z_dim, cfg.router_hidden),
                nn.ReLU(),
                nn.Linear(cfg.router_hidden, cfg.n_experts),
            )
            last = self.router[-1]
            assert isinstance(last, nn.Linear)
            nn.init.orthogonal_(last.weight, gain=0.01)  # start near-uniform routing
            nn.init.zeros_(last.bias)
        expert_in = z_dim if cfg.expert_input == "z" else cfg.hidden
        self.experts = ExpertBank(self.n_experts, expert_in, cfg.expert_hidden, n_actions)
        self.critic = nn.Sequential(
            nn.Linear(z_dim, cfg.critic_hidden), nn.ReLU(), nn.Linear(cfg.critic_hidden, 1)
        )
        self.hint_gain: nn.Parameter | None = None
        if cfg.hint_to_logits:
            if n_actions != N_TASK_ACTIONS:
                raise ValueError(
                    f"hint_to_logits needs the {N_TASK_ACTIONS}-action set, got {n_actions} actions"
                )
            hint_map = torch.zeros(N_NAV, n_actions)  # nav entry -> the action it advises
            hint_map[torch.arange(N_NAV), torch.as_tensor(HINT_ACTIONS)] = 1.0
            self.register_buffer("hint_map", hint_map, persistent=False)
            self.hint_gain = nn.Parameter(torch.zeros(self.n_experts))

    @property
    def operator_names(self) -> tuple[str, ...]:
        """Names of the GAT operator scores (empty without a graph)."""
        return self.graph.operator_names if self.graph is not None else ()

    def forward(
        self,
        state: Tensor,
        crop: Tensor,
        atoms: Tensor,
        routing: str | None = None,
        temperature: float | None = None,
    ) -> PolicyOutput:
        """One pass for acting or learning: :meth:`head` of :meth:`encode`.

        Args:
            state: ``[B, state_dim]`` float.
            crop: ``[B, C, C]`` glyph-group ids (int16 or int64).
            atoms: ``[B, n_atoms]`` bool / uint8 / float 0-1.
            routing: ``softmax`` | ``sparsemax`` | ``entmax15`` (default: the config's).
            temperature: router temperature > 0 (default: the config's).
        """
        return self.head(self.encode(state, crop, atoms), routing, temperature)

    def encode(self, state: Tensor, crop: Tensor, atoms: Tensor) -> Encoded:
        """The two representations the heads read: ``h_state`` and (graph variants) ``h_graph``."""
        h_state = self.encoder(state, crop)  # [B, H]
        hint = None
        if self.hint_gain is not None:
            hint = state[:, NAV_ONEHOT : NAV_ONEHOT + N_NAV].float() @ self.hint_map  # [B, A]
        if self.gat is None:
            return Encoded(h_state, None, None, hint)
        g = self.gat(atoms)
        return Encoded(h_state, g.h_graph, g.operator_scores, hint)

    def head(
        self,
        enc: Encoded,
        routing: str | None = None,
        temperature: float | None = None,
        alpha_override: Tensor | None = None,
    ) -> PolicyOutput:
        """Router, experts and critic on encoded states.

        ``alpha_override`` ``[B, E]`` replaces the router's weights (e.g. one-hot: the router forced
        to one expert, for interventions); ``enc`` may be edited by the caller (e.g. ``h_graph``
        replaced by its batch mean, for reliance figures).
        """
        routing = self.cfg.routing if routing is None else routing
        temperature = self.cfg.temperature if temperature is None else float(temperature)
        check_routing(routing, temperature)
        h_state = enc.h_state
        B = h_state.shape[0]
        z = h_state if enc.h_graph is None else torch.cat([h_state, enc.h_graph], dim=-1)
        expert_logits = self.experts(z if self.cfg.expert_input == "z" else h_state)  # [B, E, A]
        if self.hint_gain is not None and enc.hint is not None:
            expert_logits = expert_logits + self.hint_gain.view(1, -1, 1) * enc.hint.unsqueeze(1)
        if self.router is not None:
            router_logits = self.router(z)  # [B, E]
            alpha = route(router_logits, routing, temperature)  # [B, E]
        else:
            router_logits = h_state.new_zeros(B, 1)
            alpha = h_state.new_ones(B, 1)
        if alpha_override is not None:
            alpha = alpha_override.to(alpha.dtype).expand_as(alpha)
        logits = (alpha.unsqueeze(-1) * expert_logits).sum(1)  # [B, E, A] -> [B, A]
        value = self.critic(z).squeeze(-1)  # [B]
        return PolicyOutput(logits, value, alpha, router_logits, expert_logits, enc.operator_scores)

    def expert_prior(self, operator_scores: Tensor, temperature: float = 1.0) -> Tensor:
        """``[B, E]`` expert mass of the GAT's operators (softmax over operator scores, summed per
        expert); the target of the optional routing-prior KL term. Needs a graph."""
        if self.gat is None:
            raise ValueError(f"variant {self.cfg.variant!r} has no knowledge graph")
        return self.gat.expert_prior(operator_scores, temperature)


def build_model(cfg: ModelConfig, spec: FeatureSpec, n_actions: int) -> ActorCritic:
    """Build the actor-critic for ``cfg.variant`` (loads the knowledge graph when needed)."""
    return ActorCritic(cfg, spec, n_actions)
