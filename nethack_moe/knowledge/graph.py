"""The NetHack knowledge graph (``graph.yaml``): its node and edge types, the validated
:class:`KnowledgeGraph` and its description (:func:`format_stats`, :func:`graph_markdown`); the
file is loaded and validated by :mod:`nethack_moe.knowledge.loader`.

The file lists five kinds of node: ``atom`` (one per scene atom of :data:`features.ATOMS`),
``condition`` (derived concepts), ``rule`` (a conjunction of several preconditions: the star
expansion of a hyperedge), ``operator`` (high-level behaviours, each owned by one ``expert``) and
``expert``. Edges are written inline: ``if:`` sources support a node (sign +1), ``unless:`` sources
inhibit it (sign -1), a rule's ``then:`` lists the operators it points to (sign +1), and an
operator's ``expert:`` adds the edge operator -> expert.

Allowed edge types (source -> target) are listed in :data:`ALLOWED_EDGES`; the graph must be a DAG.
Any error raises :class:`GraphError` naming the node or edge at fault.

Adjacency convention (used by the GAT): ``adjacency[i, j]`` is True when node ``i`` receives a
message from node ``j``. For message passing the graph is made symmetric (each edge ``u -> v``
lets ``u`` send to ``v`` *and* ``v`` send to ``u``) and every node gets a self-loop, so that an
atom's state reaches the operators and the operators' context flows back to the atoms within a few
layers. The direction and sign of each pair are kept in :attr:`KnowledgeGraph.relation`, which the
GAT turns into a learned per-head attention bias.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nethack_moe import features

#: Node types, in the order of their integer codes in :attr:`KnowledgeGraph.node_types`.
NODE_TYPES: tuple[str, ...] = ("atom", "condition", "rule", "operator", "expert")
ATOM, CONDITION, RULE, OPERATOR, EXPERT = range(len(NODE_TYPES))

#: Edge types allowed in the file, as (source type, target type).
ALLOWED_EDGES: frozenset[tuple[str, str]] = frozenset(
    {
        ("atom", "condition"),
        ("condition", "condition"),
        ("atom", "rule"),
        ("condition", "rule"),
        ("atom", "operator"),
        ("condition", "operator"),
        ("rule", "operator"),
        ("operator", "expert"),
    }
)

#: Relation codes of :attr:`KnowledgeGraph.relation` (message from ``j`` to ``i``).
RELATION_NAMES: tuple[str, ...] = (
    "none",  # 0: no message
    "self",  # 1: self-loop
    "forward_support",  # 2: edge j -> i with sign +1
    "forward_inhibit",  # 3: edge j -> i with sign -1
    "backward_support",  # 4: edge i -> j with sign +1 (message against the edge)
    "backward_inhibit",  # 5: edge i -> j with sign -1
)


class GraphError(ValueError):
    """A knowledge-graph file is invalid; the message names the node or edge at fault."""


@dataclass
class KnowledgeGraph:
    """A validated knowledge graph with integer node indices.

    Node order: atoms (in :data:`features.ATOMS` order), then conditions, rules, operators and
    experts in file order (experts in the configured order when one was given).
    """

    node_names: tuple[str, ...]
    """Name of every node."""
    node_types: np.ndarray
    """``[N]`` int64 type code of every node (index into :data:`NODE_TYPES`)."""
    node_desc: tuple[str, ...]
    """One-line description of every node ('' when the file has none)."""
    edge_index: np.ndarray
    """``[2, E]`` int64 (source, target) node indices of the directed edges."""
    edge_sign: np.ndarray
    """``[E]`` int8 sign of each edge: +1 supports, -1 inhibits."""
    atom_names: tuple[str, ...]
    """The feature atoms, in atom-vector order."""
    atom_node_index: np.ndarray
    """``[n_atoms]`` int64 graph node index of each atom of :attr:`atom_names`."""
    operator_names: tuple[str, ...]
    """Operator names in node order."""
    operator_node_index: np.ndarray
    """``[n_operators]`` int64 node index of each operator."""
    operator_expert: np.ndarray
    """``[n_operators]`` int64 index into :attr:`expert_names` of each operator's expert."""
    expert_names: tuple[str, ...]
    """Expert names (the configured order when a list was given to :func:`load_graph`)."""
    expert_node_index: np.ndarray
    """``[n_experts]`` int64 node index of each expert."""
    source: str = ""
    """Where the graph was loaded from."""
    adjacency: np.ndarray = field(init=False, repr=False)
    """``[N, N]`` bool: ``adjacency[i, j]`` = node ``i`` receives a message from node ``j``.
    Symmetrized (both directions of every edge) with self-loops."""
    relation: np.ndarray = field(init=False, repr=False)
    """``[N, N]`` int64 relation code of each message (see :data:`RELATION_NAMES`), 0 = none."""

    def __post_init__(self) -> None:
        n = self.n_nodes
        rel = np.zeros((n, n), dtype=np.int64)
        src, dst = self.edge_index
        neg = self.edge_sign < 0
        rel[dst, src] = np.where(neg, 3, 2)
        rel[src, dst] = np.where(neg, 5, 4)
        rel[np.arange(n), np.arange(n)] = 1
        self.relation = rel
        self.adjacency = rel > 0

    # ---- sizes and look-ups ----
    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.node_names)

    @property
    def n_edges(self) -> int:
        """Number of directed edges (as written in the file, operator -> expert included)."""
        return int(self.edge_index.shape[1])

    @property
    def n_operators(self) -> int:
        """Number of operator nodes."""
        return len(self.operator_names)

    @property
    def node_index(self) -> dict[str, int]:
        """Name -> node index."""
        return {n: i for i, n in enumerate(self.node_names)}

    @property
    def directed_adjacency(self) -> np.ndarray:
        """``[N, N]`` int8: ``[i, j]`` = sign of the edge ``j -> i`` (0 when there is none)."""
        a = np.zeros((self.n_nodes, self.n_nodes), dtype=np.int8)
        a[self.edge_index[1], self.edge_index[0]] = self.edge_sign
        return a

    def type_of(self, name: str) -> str:
        """Type name of the node called ``name``."""
        return NODE_TYPES[int(self.node_types[self.node_index[name]])]

    def inputs(self, name: str) -> list[tuple[str, int]]:
        """``(source name, sign)`` of the edges into node ``name``, in file order."""
        i = self.node_index[name]
        hit = np.flatnonzero(self.edge_index[1] == i)
        return [(self.node_names[self.edge_index[0, k]], int(self.edge_sign[k])) for k in hit]

    def outputs(self, name: str) -> list[tuple[str, int]]:
        """``(target name, sign)`` of the edges out of node ``name``, in file order."""
        i = self.node_index[name]
        hit = np.flatnonzero(self.edge_index[0] == i)
        return [(self.node_names[self.edge_index[1, k]], int(self.edge_sign[k])) for k in hit]

    def operator_expert_matrix(self) -> np.ndarray:
        """``[n_operators, n_experts]`` float32 one-hot map operator -> its expert."""
        m = np.zeros((self.n_operators, len(self.expert_names)), dtype=np.float32)
        m[np.arange(self.n_operators), self.operator_expert] = 1.0
        return m

    def stats(self) -> dict[str, Any]:
        """Counts by node type, edges by type pair, operators per expert, max in-degree, depth."""
        types = [NODE_TYPES[t] for t in self.node_types]
        src, dst = self.edge_index
        pairs = Counter(f"{types[s]}->{types[d]}" for s, d in zip(src, dst, strict=True))
        indeg = np.bincount(dst, minlength=self.n_nodes)
        arg = int(indeg.argmax()) if self.n_nodes else 0
        per_expert = Counter(self.expert_names[e] for e in self.operator_expert)
        return {
            "nodes": self.n_nodes,
            "edges": self.n_edges,
            "nodes_by_type": {t: types.count(t) for t in NODE_TYPES},
            "edges_by_type": dict(sorted(pairs.items())),
            "inhibitory_edges": int((self.edge_sign < 0).sum()),
            "operators_per_expert": {e: per_expert.get(e, 0) for e in self.expert_names},
            "max_in_degree": int(indeg[arg]) if self.n_nodes else 0,
            "max_in_degree_node": self.node_names[arg] if self.n_nodes else "",
            "depth": _dag_depth(self.n_nodes, self.edge_index),
            "message_pairs": int(self.adjacency.sum()),
            "adjacency_density": float(self.adjacency.mean()) if self.n_nodes else 0.0,
            "source": self.source,
        }


def format_stats(stats: Mapping[str, Any]) -> str:
    """Human-readable multi-line summary of :meth:`KnowledgeGraph.stats` (for the CLI)."""
    lines = [f"knowledge graph: {stats.get('source', '')}"]
    lines.append(f"nodes: {stats['nodes']}   edges: {stats['edges']}")
    lines.append("nodes by type:")
    for t, n in stats["nodes_by_type"].items():
        lines.append(f"  {t:<10} {n:>4}")
    lines.append(f"edges by type ({stats['inhibitory_edges']} inhibitory):")
    for t, n in stats["edges_by_type"].items():
        lines.append(f"  {t:<20} {n:>4}")
    lines.append("operators per expert:")
    for e, n in stats["operators_per_expert"].items():
        lines.append(f"  {e:<12} {n:>4}")
    lines.append(f"max in-degree: {stats['max_in_degree']} ({stats['max_in_degree_node']})")
    lines.append(f"DAG depth (longest path, in edges): {stats['depth']}")
    lines.append(
        f"message pairs (symmetric + self-loops): {stats['message_pairs']}"
        f"  density {stats['adjacency_density']:.3f}"
    )
    return "\n".join(lines)


def graph_markdown(
    graph: KnowledgeGraph, atom_specs: Sequence[tuple[str, str]] | None = None
) -> str:
    """Markdown tables of the graph's content (counts, operators, rules, conditions, atoms); the
    generated part of ``docs/knowledge_graph.md``."""
    specs = dict(atom_specs if atom_specs is not None else features.ATOM_SPECS)
    st = graph.stats()

    def pre(name: str) -> str:
        parts = []
        for s, g in graph.inputs(name):
            label = f"rule `{s}`" if graph.type_of(s) == "rule" else f"`{s}`"
            parts.append(label if g > 0 else f"not {label}")
        return ", ".join(parts)

    def users(name: str) -> str:
        return ", ".join(f"`{t}`" for t, _ in graph.outputs(name))

    out = ["### Counts", "", "| node type | count |", "|---|---|"]
    out += [f"| {t} | {n} |" for t, n in st["nodes_by_type"].items()]
    out += [f"| **all** | **{st['nodes']}** |", ""]
    out += ["| edge type | count |", "|---|---|"]
    out += [f"| {t} | {n} |" for t, n in st["edges_by_type"].items()]
    out += [
        f"| **all** ({st['inhibitory_edges']} inhibitory) | **{st['edges']}** |",
        "",
        f"Longest path (DAG depth): {st['depth']} edges. Largest in-degree: {st['max_in_degree']}"
        f" (`{st['max_in_degree_node']}`). Message pairs for the GAT (both directions + self-loops):"
        f" {st['message_pairs']} of {st['nodes'] ** 2} ({100 * st['adjacency_density']:.1f} %).",
        "",
        "### Operators",
        "",
        "Preconditions: direct inputs (atoms, conditions) and the rules that point to the operator;"
        " `not x` marks an inhibiting edge.",
        "",
        "| operator | expert | preconditions | what it means |",
        "|---|---|---|---|",
    ]
    desc = dict(zip(graph.node_names, graph.node_desc, strict=True))
    for e_idx, e in enumerate(graph.expert_names):
        for o, oe in zip(graph.operator_names, graph.operator_expert, strict=True):
            if oe == e_idx:
                out.append(f"| `{o}` | {e} | {pre(o)} | {desc[o]} |")
    out += ["", "### Rules", "", "| rule | preconditions | operators | why |", "|---|---|---|---|"]
    for n, t in zip(graph.node_names, graph.node_types, strict=True):
        if t == RULE:
            out.append(f"| `{n}` | {pre(n)} | {users(n)} | {desc[n]} |")
    out += [
        "",
        "### Conditions",
        "",
        "| condition | inputs | used by | meaning |",
        "|---|---|---|---|",
    ]
    for n, t in zip(graph.node_names, graph.node_types, strict=True):
        if t == CONDITION:
            out.append(f"| `{n}` | {pre(n)} | {users(n)} | {desc[n]} |")
    out += [
        "",
        "### Atoms",
        "",
        "| # | atom | meaning (features.ATOM_SPECS) | used by |",
        "|---|---|---|---|",
    ]
    for k, a in enumerate(graph.atom_names):
        out.append(f"| {k} | `{a}` | {specs.get(a, '')} | {users(a)} |")
    out += ["", "### Experts", "", "| expert | operators | meaning |", "|---|---|---|"]
    for e in graph.expert_names:
        out.append(f"| {e} | {st['operators_per_expert'][e]} | {desc[e]} |")
    return "\n".join(out) + "\n"


def _dag_depth(n: int, edge_index: np.ndarray) -> int:
    """Length (in edges) of the longest path of a DAG."""
    indeg = np.bincount(edge_index[1], minlength=n).tolist()
    succ: dict[int, list[int]] = defaultdict(list)
    for s, d in zip(edge_index[0], edge_index[1], strict=True):
        succ[int(s)].append(int(d))
    depth = [0] * n
    frontier = [i for i in range(n) if indeg[i] == 0]
    while frontier:
        v = frontier.pop()
        for w in succ[v]:
            depth[w] = max(depth[w], depth[v] + 1)
            indeg[w] -= 1
            if indeg[w] == 0:
                frontier.append(w)
    return max(depth, default=0)
