"""Graph-attention encoder over the fixed knowledge graph.

Only the node *activations* change from state to state (atoms are 0/1 from the atom vector), so one
adjacency serves the whole batch, and the GAT runs only once per *distinct* atom vector of the
batch (``U`` of them); the results are scattered back to the ``B`` rows.

:class:`GATLayer` is a self-contained equivalent of ``torch_geometric.nn.DenseGATConv``
(``concat=True``, ``add_loop=False``, no dropout) with an optional learned per-head attention bias
per relation (edge direction and sign, see :data:`knowledge.graph.RELATION_NAMES`), initialised to
zero so that it starts as plain GAT; ``torch_geometric`` is not needed at run time. It has two
paths with the same result: dense masked attention over ``[B, N, N]`` (:meth:`GATLayer.forward`)
and a sparse one over the message list of the adjacency (:meth:`GATLayer.propagate`, used by
default: the graph has ~4 % of the ``N²`` pairs, so it is many times cheaper on CPU).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nethack_moe.knowledge.graph import ATOM, NODE_TYPES, RELATION_NAMES, KnowledgeGraph


class GATLayer(nn.Module):
    """Multi-head dense graph attention (GATv1), heads concatenated.

    ``out_i = bias + ||_h sum_j softmax_j(LeakyReLU(a_dst·W x_i + a_src·W x_j) + r_h[rel_ij]) W_h x_j``
    over the ``j`` with ``adj[i, j]`` true (self-loops are *not* added: put them in ``adj``).
    """

    def __init__(
        self,
        in_dim: int,
        out_per_head: int,
        heads: int,
        *,
        negative_slope: float = 0.2,
        n_relations: int = 0,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.out_per_head = out_per_head
        self.negative_slope = negative_slope
        self.lin = nn.Linear(in_dim, heads * out_per_head, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, 1, heads, out_per_head))
        self.att_dst = nn.Parameter(torch.empty(1, 1, heads, out_per_head))
        self.bias = nn.Parameter(torch.zeros(heads * out_per_head))
        self.rel_bias: nn.Parameter | None = (
            nn.Parameter(torch.zeros(n_relations, heads)) if n_relations > 0 else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights and attention vectors, zero biases (as DenseGATConv)."""
        nn.init.xavier_uniform_(self.lin.weight)
        for a in (self.att_src, self.att_dst):
            bound = math.sqrt(6.0 / (a.size(-2) + a.size(-1)))
            nn.init.uniform_(a, -bound, bound)
        nn.init.zeros_(self.bias)
        if self.rel_bias is not None:
            nn.init.zeros_(self.rel_bias)

    def attention_bias(self, adj: Tensor, relation: Tensor | None = None) -> Tensor:
        """``[H, N, N]`` additive bias: relation bias where ``adj`` is true, ``-inf`` elsewhere."""
        n = adj.shape[-1]
        if self.rel_bias is not None and relation is not None:
            b = self.rel_bias[relation].permute(2, 0, 1)  # [H, N, N]
        else:
            b = torch.zeros(self.heads, n, n, device=adj.device, dtype=self.bias.dtype)
        return b.masked_fill(~adj.bool().unsqueeze(0), float("-inf"))

    def forward(self, x: Tensor, adj: Tensor, relation: Tensor | None = None) -> Tensor:
        """Dense path: ``x`` ``[B, N, F]``, ``adj`` ``[N, N]`` (``adj[i, j]``: ``j`` sends
        to ``i``) -> ``[B, N, H*C]``. Costs ``O(B·H·N²)``; see :meth:`propagate` for the sparse path."""
        B, N, _ = x.shape
        H, C = self.heads, self.out_per_head
        h = self.lin(x).view(B, N, H, C)  # [B, N, H, C]
        a_src = (h * self.att_src).sum(-1).transpose(1, 2)  # [B, H, N]
        a_dst = (h * self.att_dst).sum(-1).transpose(1, 2)  # [B, H, N]
        logits = a_dst.unsqueeze(-1) + a_src.unsqueeze(-2)  # [B, H, N_i, N_j]
        logits = F.leaky_relu(logits, self.negative_slope) + self.attention_bias(adj, relation)
        attn = torch.softmax(logits, dim=-1)  # [B, H, N_i, N_j]
        out = attn @ h.transpose(1, 2)  # [B, H, N, C]
        return out.transpose(1, 2).reshape(B, N, H * C) + self.bias

    def propagate(
        self,
        x: Tensor,
        src: Tensor,
        dst: Tensor,
        relation: Tensor | None = None,
        slot: Tensor | None = None,
        n_out: int | None = None,
    ) -> Tensor:
        """Sparse path, same result as :meth:`forward`, over the message list ``src -> dst``.

        Args:
            x: ``[N, F, B]`` node features, *batch innermost* (elementwise work over the
                messages then runs on contiguous ``B``-vectors).
            src, dst: ``[M]`` node indices of each message (self-loops included).
            relation: ``[M]`` relation code of each message (for the relation bias).
            slot, n_out: compute only ``n_out`` destination nodes; ``slot[m]`` is the output row
                of message ``m``'s destination (default: ``dst`` and ``N``).

        Returns:
            ``[n_out, H*C, B]``. Costs ``O(M·H·C·B)``.
        """
        N, _, B = x.shape
        H, C = self.heads, self.out_per_head
        M = src.shape[0]
        slot = dst if slot is None else slot
        R = N if n_out is None else n_out
        # one GEMM for the values and both attention terms: a = (W x)·att = x·(W^T att)
        w = self.lin.weight.view(H, C, -1)  # [H, C, F]
        w_src = (w * self.att_src.view(H, C, 1)).sum(1)  # [H, F]
        w_dst = (w * self.att_dst.view(H, C, 1)).sum(1)  # [H, F]
        y = torch.matmul(torch.cat([self.lin.weight, w_src, w_dst]), x)  # [N, H*C + 2H, B]
        h, a_src, a_dst = y.split([H * C, H, H], dim=1)  # [N,H*C,B], [N,H,B], [N,H,B]
        e = a_src.index_select(0, src) + a_dst.index_select(0, dst)  # [M, H, B]
        e = F.leaky_relu(e, self.negative_slope)
        if self.rel_bias is not None and relation is not None:
            e = e + self.rel_bias.index_select(0, relation).unsqueeze(-1)  # [M, H, 1]
        with torch.no_grad():  # per-destination max, only for numerical stability
            idx = slot.view(-1, 1, 1).expand_as(e)
            e_max = e.new_full((R, H, B), float("-inf")).scatter_reduce_(0, idx, e, "amax")
        p = torch.exp(e - e_max.index_select(0, slot))  # [M, H, B]
        denom = p.new_zeros(R, H, B).index_add_(0, slot, p)  # [R, H, B]
        attn = p / denom.index_select(0, slot)  # [M, H, B]
        msg = h.index_select(0, src).view(M, H, C, B) * attn.unsqueeze(2)  # [M, H, C, B]
        out = msg.new_zeros(R, H, C, B).index_add_(0, slot, msg)  # [R, H, C, B]
        return out.view(R, H * C, B) + self.bias.view(1, -1, 1)


def _layer_norm_dim1(x: Tensor, norm: nn.Module) -> Tensor:
    """``norm`` (an ``nn.LayerNorm`` over D) applied to ``[*, D, U]`` without transposing, so
    that the tensors (and their gradients) keep the batch-innermost layout."""
    assert isinstance(norm, nn.LayerNorm)
    mu = x.mean(1, keepdim=True)
    xc = x - mu
    var = (xc * xc).mean(1, keepdim=True)
    y = xc * torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        y = y * norm.weight.view(1, -1, 1) + norm.bias.view(1, -1, 1)
    return y


class GraphOutput(NamedTuple):
    """Outputs of :class:`GATEncoder`."""

    h_graph: Tensor
    """``[B, graph_embed_dim]`` pooled graph embedding."""
    operator_scores: Tensor
    """``[B, n_operators]`` one score per operator node."""


class GATEncoder(nn.Module):
    """Knowledge-graph encoder: atom vector ``[B, n_atoms]`` -> :class:`GraphOutput`.

    Node input = projection of ``[node embedding + type embedding, activation]``, where the
    activation of an atom node is its 0/1 atom value and that of any other node a learned scalar.
    Then ``layers`` x (GAT -> ELU -> residual -> LayerNorm); the last layer computes only the
    read-out nodes (operators and experts), nothing else is read from it. ``h_graph`` =
    ReLU(Linear([mean over all nodes before the last layer, mean over the operator nodes, the
    expert node states])); operator scores = a linear head on each operator node's final state.
    """

    # buffers (fixed graph structure, follow the module's device)
    node_types: Tensor
    atom_nodes: Tensor
    is_atom: Tensor
    adjacency: Tensor
    relation: Tensor
    op_nodes: Tensor
    expert_nodes: Tensor
    operator_expert_onehot: Tensor
    bit_weights: Tensor
    msg_src: Tensor
    msg_dst: Tensor
    msg_rel: Tensor
    readout: Tensor
    last_src: Tensor
    last_dst: Tensor
    last_rel: Tensor
    last_slot: Tensor

    def __init__(
        self,
        graph: KnowledgeGraph,
        *,
        gat_dim: int = 32,
        heads: int = 4,
        layers: int = 2,
        node_embed_dim: int = 32,
        out_dim: int = 64,
        dedup: bool = True,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        if gat_dim % heads:
            raise ValueError(f"gat_dim={gat_dim} is not divisible by heads={heads}")
        self.graph = graph
        self.dedup = dedup
        self.sparse = sparse
        n = graph.n_nodes
        self.n_atoms = len(graph.atom_names)
        self.n_operators = graph.n_operators
        self.node_emb = nn.Parameter(torch.randn(n, node_embed_dim) * 0.5)
        self.type_emb = nn.Parameter(torch.randn(len(NODE_TYPES), node_embed_dim) * 0.5)
        self.node_bias_act = nn.Parameter(torch.zeros(n))
        self.in_proj = nn.Linear(node_embed_dim + 1, gat_dim)
        self.layers = nn.ModuleList(
            GATLayer(gat_dim, gat_dim // heads, heads, n_relations=len(RELATION_NAMES))
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(gat_dim) for _ in range(layers))
        self.op_head = nn.Linear(gat_dim, 1)
        n_exp = len(graph.expert_node_index)
        self.pool = nn.Linear(gat_dim * (2 + n_exp), out_dim)

        def buf(name: str, value: object, dtype: torch.dtype) -> None:
            self.register_buffer(name, torch.as_tensor(value, dtype=dtype), persistent=False)

        buf("node_types", graph.node_types, torch.long)
        buf("atom_nodes", graph.atom_node_index, torch.long)
        buf("is_atom", graph.node_types == ATOM, torch.bool)
        buf("adjacency", graph.adjacency, torch.bool)
        buf("relation", graph.relation, torch.long)
        buf("op_nodes", graph.operator_node_index, torch.long)
        buf("expert_nodes", graph.expert_node_index, torch.long)
        buf("operator_expert_onehot", graph.operator_expert_matrix(), torch.float32)
        buf("bit_weights", [1 << k for k in range(min(self.n_atoms, 62))], torch.long)
        dst, src = graph.adjacency.nonzero()  # message src -> dst for every adjacency[dst, src]
        buf("msg_src", src, torch.long)
        buf("msg_dst", dst, torch.long)
        buf("msg_rel", graph.relation[dst, src], torch.long)
        # the last layer only computes the read-out nodes (operators, then experts)
        readout = np.concatenate([graph.operator_node_index, graph.expert_node_index])
        slot_of = np.full(n, -1, dtype=np.int64)
        slot_of[readout] = np.arange(len(readout))
        keep = slot_of[dst] >= 0
        buf("readout", readout, torch.long)
        buf("last_src", src[keep], torch.long)
        buf("last_dst", dst[keep], torch.long)
        buf("last_rel", graph.relation[dst[keep], src[keep]], torch.long)
        buf("last_slot", slot_of[dst[keep]], torch.long)

    def node_activations(self, atoms: Tensor) -> Tensor:
        """``[U, n_atoms]`` float atoms -> ``[U, N]`` activations (learned scalars off the atoms)."""
        act = self.node_bias_act.unsqueeze(0).expand(atoms.shape[0], -1)
        act = act.masked_fill(self.is_atom.unsqueeze(0), 0.0)
        return act.index_copy(1, self.atom_nodes, atoms.to(act.dtype))

    def node_states(self, atoms: Tensor) -> tuple[Tensor, Tensor]:
        """Run the GAT on float atom vectors ``[U, n_atoms]`` (no dedup).

        Returns:
            ``(x_all, x_out)``: the states of all nodes before the last layer ``[N, D, U]`` and
            the last layer's states of the read-out nodes (operators, then experts)
            ``[O + E, D, U]`` (feature-major, batch innermost).
        """
        base = self.node_emb + self.type_emb[self.node_types]  # [N, De]
        w_e = self.in_proj.weight[:, :-1]  # [D, De]
        w_a = self.in_proj.weight[:, -1]  # [D]
        x0 = base @ w_e.t() + self.in_proj.bias  # [N, D]: projection of [emb, act] split in two
        act = self.node_activations(atoms).t()  # [N, U]
        x = x0.unsqueeze(-1) + act.unsqueeze(1) * w_a.view(1, -1, 1)  # [N, D, U]
        n_layers = len(self.layers)
        for k, (layer, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            assert isinstance(layer, GATLayer)
            last = k == n_layers - 1
            if not self.sparse:
                y = layer(x.permute(2, 0, 1), self.adjacency, self.relation).permute(1, 2, 0)
                if last:
                    y = y[self.readout]
            elif last:
                y = layer.propagate(
                    x,
                    self.last_src,
                    self.last_dst,
                    self.last_rel,
                    self.last_slot,
                    len(self.readout),
                )  # [O + E, D, U]
            else:
                y = layer.propagate(x, self.msg_src, self.msg_dst, self.msg_rel)  # [N, D, U]
            res = x[self.readout] if last else x
            out = _layer_norm_dim1(res + F.elu(y), norm)  # [*, D, U]
            if last:
                return x, out
            x = out
        return x, x[self.readout]

    def _encode(self, atoms: Tensor) -> GraphOutput:
        x_all, x_out = self.node_states(atoms)  # [N, D, U], [O + E, D, U]
        ops = x_out[: self.n_operators]  # [O, D, U]
        experts = x_out[self.n_operators :].permute(2, 0, 1).flatten(1)  # [U, E * D]
        pooled = torch.cat([x_all.mean(0).t(), ops.mean(0).t(), experts], dim=-1)
        scores = self.op_head(ops.transpose(1, 2)).squeeze(-1).t()  # [U, O]
        return GraphOutput(F.relu(self.pool(pooled)), scores)

    def unique_atoms(self, atoms: Tensor) -> tuple[Tensor, Tensor]:
        """Distinct rows of ``atoms`` ``[B, n_atoms]`` and the inverse index ``[B]``."""
        if atoms.dtype.is_floating_point or self.n_atoms > self.bit_weights.numel():
            rows = atoms if atoms.dtype.is_floating_point else atoms.to(torch.uint8)
            uniq, inv = torch.unique(rows, dim=0, return_inverse=True)
            return uniq, inv
        bits = (atoms != 0).long()
        key = (bits * self.bit_weights).sum(1)  # [B] int64, one bit per atom
        ukey, inv = torch.unique(key, return_inverse=True)
        uniq = (ukey.unsqueeze(1) & self.bit_weights).ne(0)  # [U, n_atoms] decoded back
        return uniq, inv

    def forward(
        self, atoms: Tensor, h_state: Tensor | None = None, dedup: bool | None = None
    ) -> GraphOutput:
        """Encode a batch of atom vectors ``[B, n_atoms]`` (bool, uint8 or float).

        Args:
            atoms: the scene atoms.
            dedup: run the GAT once per distinct atom vector (default: ``self.dedup``).
        """
        if atoms.shape[-1] != self.n_atoms:
            raise ValueError(f"atoms has {atoms.shape[-1]} columns, the graph {self.n_atoms} atoms")
        if not (self.dedup if dedup is None else dedup):
            return self._encode(atoms.float())
        uniq, inv = self.unique_atoms(atoms)
        out = self._encode(uniq.float())
        return GraphOutput(
            out.h_graph.index_select(0, inv), out.operator_scores.index_select(0, inv)
        )

    def expert_prior(self, operator_scores: Tensor, temperature: float = 1.0) -> Tensor:
        """``[B, E_graph]`` expert mass of the operators: ``softmax(scores / T) @ onehot(op -> expert)``."""
        return torch.softmax(operator_scores / temperature, dim=-1) @ self.operator_expert_onehot
