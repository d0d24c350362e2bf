"""Graph-attention encoder over the fixed knowledge graph (:class:`GATEncoder`).

The knowledge graph is a DAG: atoms -> conditions -> rules -> operators -> experts. Each atom enters
with its own learned "on" and "off" embedding; concepts (conditions, rules) attend over the atoms
they derive from, operators over their direct in-neighbours, and the read-out keeps every
operator's state (nothing is averaged over the graph). The attention (:class:`SignedAttention`) is
GATv1's without its query term, a ratio of products with fixed edge matrices, so it costs a few
GEMMs; over binary sources its sums are linear in the atom bits (one product for all states).
Only the atoms change from state to state, so the encoder runs once per distinct atom vector.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nethack_moe.knowledge.graph import CONDITION, RULE, KnowledgeGraph

#: Source scores of the graph attention are ``exp(c tanh(a / c))``: within ``[e^-c, e^c]``, so the
#: attention ratio needs no max-subtraction.
SCORE_CAP = 5.0


def ancestor_atoms(graph: KnowledgeGraph) -> tuple[np.ndarray, np.ndarray]:
    """``[N, n_atoms]`` bool pair ``(support, inhibit)``: atom ``j`` reaches node ``i`` by a path
    with an even (support) or odd (inhibit) number of inhibiting edges. An atom may do both."""
    n, A = graph.n_nodes, len(graph.atom_names)
    sup = np.zeros((n, A), bool)
    inh = np.zeros((n, A), bool)
    sup[graph.atom_node_index, np.arange(A)] = True
    src, dst = graph.edge_index
    neg = graph.edge_sign < 0
    for _ in range(n):  # a DAG: stable after at most n rounds
        new_sup, new_inh = sup.copy(), inh.copy()
        for s_, d, ng in zip(src, dst, neg, strict=True):
            new_sup[d] |= inh[s_] if ng else sup[s_]
            new_inh[d] |= sup[s_] if ng else inh[s_]
        if (new_sup == sup).all() and (new_inh == inh).all():
            break
        sup, inh = new_sup, new_inh
    return sup, inh


class SignedAttention(nn.Module):
    """Multi-head attention of ``L`` destinations over ``S`` sources along fixed signed edges.

    ``y_i = ||_h (sum_j w_ij s_hj m_ij V_h x_j) / (sum_j w_ij s_hj)`` over the edges ``j -> i``, with
    the source score ``s_hj = exp(c tanh(a_h · x_j / c))`` (``c`` = :data:`SCORE_CAP`), a learned
    weight ``w_ij = exp(b_ij)`` per edge, and ``m_ij`` = +1 on supporting edges and -1 on
    inhibiting ones (an inhibiting source pushes the node's state the other way). This is GATv1 attention without its LeakyReLU and query term: GATv1
    ranks the neighbours of every node in the same order whatever the query ("static attention",
    Brody et al. 2022), so the query term adds little, and without it the attention is a ratio of
    products with fixed ``[L, S]`` matrices: GEMMs instead of per-edge scatter work.
    """

    support: Tensor
    inhibit: Tensor

    def __init__(self, dim: int, heads: int, support: np.ndarray, inhibit: np.ndarray) -> None:
        super().__init__()
        self.dim, self.heads = dim, heads
        self.proj = nn.Linear(dim, dim + heads)  # values and source scores in one GEMM
        self.edge_bias = nn.Parameter(torch.zeros(2, *support.shape))  # [2, L, S]
        for name, m in (("support", support), ("inhibit", inhibit)):
            self.register_buffer(name, torch.as_tensor(m, dtype=torch.float32), persistent=False)

    def weights(self) -> tuple[Tensor, Tensor]:
        """``[L, S]`` signed edge weights (for the values) and unsigned ones (for the normaliser),
        zero off the edges."""
        w = torch.exp(self.edge_bias)  # [2, L, S]
        sup, inh = w[0] * self.support, w[1] * self.inhibit
        return sup - inh, sup + inh

    def scored_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Sources ``x [S, *, D]`` -> ``(s·V x [S, *, D], s [S, *, H])``."""
        D, H = self.dim, self.heads
        v, a = self.proj(x).split([D, H], dim=-1)
        sc = torch.exp(SCORE_CAP * torch.tanh(a / SCORE_CAP))  # [S, *, H]
        sv = (sc.unsqueeze(-1) * v.unflatten(-1, (H, D // H))).flatten(-2)  # [S, *, D]
        return sv, sc

    def _sums(self, x: Tensor, w_num: Tensor, w_den: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted sums over continuous sources ``x [S, U, D]``: ``(num [L, U, D], den [L, U, H])``."""
        S, U, D = x.shape
        sv, sc = self.scored_values(x)
        num = (w_num @ sv.view(S, U * D)).view(-1, U, D)
        den = (w_den @ sc.view(S, -1)).view(-1, U, self.heads)
        return num, den

    def _sums_binary(
        self, off: Tensor, on: Tensor, bits: Tensor, w_num: Tensor, w_den: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The same for binary sources: source ``j`` is ``on[j]`` where ``bits[:, j]`` else
        ``off[j]`` (``[S, D]`` each, ``bits [U, S]``). The sums are then linear in the bits, so
        both are one ``[U, S] @ [S, L*(D+H)]`` product: no per-state source tensors."""
        L, U, D, H = w_num.shape[0], bits.shape[0], self.dim, self.heads
        sv, sc = self.scored_values(torch.stack([off, on]))  # [off/on, S, D], [off/on, S, H]
        t_num = torch.einsum("ls,vsd->vsld", w_num, sv).flatten(2)  # [off/on, S, LD]
        t_den = torch.einsum("ls,vsh->vslh", w_den, sc).flatten(2)  # [off/on, S, LH]
        t = torch.cat([t_num, t_den], -1)
        y = t[0].sum(0) + bits @ (t[1] - t[0])  # [U, L(D+H)]
        num = y[:, : L * D].view(U, L, D).transpose(0, 1)  # [L, U, D]
        den = y[:, L * D :].view(U, L, H).transpose(0, 1)  # [L, U, H]
        return num, den

    def forward(self, off: Tensor, on: Tensor, bits: Tensor, x: Tensor | None = None) -> Tensor:
        """Attention over binary sources (the first ``bits.shape[1]`` columns of the edge
        matrices: ``off``/``on`` ``[A, D]``, ``bits [U, A]``) and then the continuous sources ``x``
        ``[S - A, U, D]`` (if any) -> ``[L, U, D]``."""
        A = bits.shape[1]
        w_num, w_den = self.weights()  # [L, S] each
        num, den = self._sums_binary(off, on, bits, w_num[:, :A], w_den[:, :A])
        if x is not None:
            n2, d2 = self._sums(x, w_num[:, A:], w_den[:, A:])
            num, den = num + n2, den + d2
        L, U, D = num.shape
        return (num.view(L, U, self.heads, -1) / den.unsqueeze(-1)).view(L, U, D)


class GraphOutput(NamedTuple):
    """Outputs of :class:`GATEncoder`."""

    h_graph: Tensor
    """``[B, graph_embed_dim]`` graph read-out."""
    operator_scores: Tensor
    """``[B, n_operators]`` one score per operator node."""


class GATEncoder(nn.Module):
    """Knowledge-graph encoder: atoms ``[B, n_atoms]`` -> :class:`GraphOutput`.

    * Atom ``j`` enters as a learned "on" or "off" embedding (one pair per atom).
    * **Concepts** (conditions and rules) attend over the atoms they derive from (their ancestor
      atoms in the knowledge DAG, each edge signed by the parity of inhibiting edges on the path):
      ``x_c = LayerNorm(e_c + ELU(attn_c))`` with :class:`SignedAttention`.
    * **Operators** attend the same way over their direct in-neighbours (atoms, conditions, rules):
      the rules of the graph decide what each operator reads.
    * Operator scores: a linear head on each operator state.
    * ``h_graph = ReLU(W [every operator's state, operator scores])``: each operator keeps its own
      columns, nothing is averaged over the graph; the router and critic read ``h_graph`` beside
      ``h_state``.

    Only the atoms change from state to state, so the whole encoder runs once per distinct atom
    vector; concepts see the atoms through :meth:`SignedAttention` sums that are linear in the
    bits (one GEMM), so the per-state work is small.
    """

    concept_nodes: Tensor
    op_nodes: Tensor
    operator_expert_onehot: Tensor
    bit_weights: Tensor

    def __init__(
        self,
        graph: KnowledgeGraph,
        *,
        gat_dim: int = 32,
        heads: int = 4,
        out_dim: int = 64,
        dedup: bool = True,
    ) -> None:
        super().__init__()
        if gat_dim % heads:
            raise ValueError(f"gat_dim={gat_dim} is not divisible by heads={heads}")
        self.graph, self.dedup, self.dim, self.heads = graph, dedup, gat_dim, heads
        self.n_atoms, self.n_operators = len(graph.atom_names), graph.n_operators
        concepts = np.flatnonzero((graph.node_types == CONDITION) | (graph.node_types == RULE))
        ops = graph.operator_node_index
        anc_sup, anc_inh = ancestor_atoms(graph)
        signs = graph.directed_adjacency  # [N, N] sign of edge j -> i
        sources = np.concatenate([graph.atom_node_index, concepts])  # operator inputs
        self.atom_emb = nn.Parameter(torch.randn(self.n_atoms, 2, gat_dim))  # [A, off/on, D]
        self.node_emb = nn.Parameter(torch.randn(graph.n_nodes, gat_dim) * 0.1)
        self.concept_attn = SignedAttention(gat_dim, heads, anc_sup[concepts], anc_inh[concepts])
        op_signs = signs[np.ix_(ops, sources)]  # [O, A + C]
        self.op_attn = SignedAttention(gat_dim, heads, op_signs > 0, op_signs < 0)
        self.norm = nn.LayerNorm(gat_dim)
        self.op_head = nn.Linear(gat_dim, 1)
        self.out = nn.Linear(self.n_operators * (gat_dim + 1), out_dim)
        for name, value in (
            ("concept_nodes", concepts),
            ("op_nodes", ops),
            ("bit_weights", [1 << k for k in range(min(self.n_atoms, 62))]),
        ):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.long), persistent=False)
        self.register_buffer(
            "operator_expert_onehot",
            torch.as_tensor(graph.operator_expert_matrix()),
            persistent=False,
        )

    def operator_states(self, atoms: Tensor) -> Tensor:
        """Float atom vectors ``[U, n_atoms]`` -> operator states ``[O, U, D]``."""
        off, on = self.atom_emb[:, 0], self.atom_emb[:, 1]  # [A, D]
        y = self.concept_attn(off, on, atoms)  # [C, U, D]
        x_concepts = self.norm(self.node_emb[self.concept_nodes].unsqueeze(1) + F.elu(y))
        y = self.op_attn(off, on, atoms, x_concepts)  # [O, U, D]
        return self.norm(self.node_emb[self.op_nodes].unsqueeze(1) + F.elu(y))

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

    def forward(self, atoms: Tensor, dedup: bool | None = None) -> GraphOutput:
        """Encode atom vectors ``[B, n_atoms]`` (bool, uint8 or float).

        ``dedup``: run the graph pass once per distinct atom vector (default: ``self.dedup``).
        """
        if atoms.shape[-1] != self.n_atoms:
            raise ValueError(f"atoms has {atoms.shape[-1]} columns, the graph {self.n_atoms} atoms")
        if self.dedup if dedup is None else dedup:
            uniq, inv = self.unique_atoms(atoms)
        else:
            uniq, inv = atoms, torch.arange(atoms.shape[0], device=atoms.device)
        ops = self.operator_states(uniq.float()).transpose(0, 1)  # [U, O, D]
        scores = self.op_head(ops).squeeze(-1)  # [U, O]
        h = F.relu(self.out(torch.cat([ops.flatten(1), scores], -1)))  # [U, G]
        return GraphOutput(h.index_select(0, inv), scores.index_select(0, inv))

    def expert_prior(self, operator_scores: Tensor, temperature: float = 1.0) -> Tensor:
        """``[B, E_graph]`` expert mass of the operators: ``softmax(scores / T) @ onehot(op -> expert)``."""
        return torch.softmax(operator_scores / temperature, dim=-1) @ self.operator_expert_onehot
