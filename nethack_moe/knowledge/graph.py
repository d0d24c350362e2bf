"""Load and validate the NetHack knowledge graph (``graph.yaml``).

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

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nethack_moe import features

log = logging.getLogger(__name__)

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

DEFAULT_GRAPH_PATH = Path(__file__).with_name("graph.yaml")

_SECTIONS = ("version", "experts", "atoms", "conditions", "rules", "operators")
_FIELDS = {
    "atom": {"name", "desc"},
    "condition": {"name", "desc", "if", "unless"},
    "rule": {"name", "desc", "if", "unless", "then"},
    "operator": {"name", "desc", "if", "unless", "expert"},
    "expert": {"name", "desc"},
}
_SECTION_TYPE = {
    "atoms": "atom",
    "conditions": "condition",
    "rules": "rule",
    "operators": "operator",
    "experts": "expert",
}


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


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def load_graph(
    path: str | Path | None = None,
    *,
    expert_names: Sequence[str] | None = None,
    atoms: Sequence[str] | None = None,
) -> KnowledgeGraph:
    """Load and validate a knowledge-graph YAML file.

    Args:
        path: the file; ``None`` = the packaged ``graph.yaml``.
        expert_names: the configured experts. When given, the file's experts must be exactly
            these names, and :attr:`KnowledgeGraph.expert_names` follows this order.
        atoms: the feature atoms (default :data:`features.ATOMS`).

    Raises:
        GraphError: the file is invalid (the message names the culprit).
    """
    p = Path(path) if path is not None else DEFAULT_GRAPH_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise GraphError(f"cannot read knowledge graph file {p}: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GraphError(f"{p}: not valid YAML: {e}") from e
    g = graph_from_dict(data, expert_names=expert_names, atoms=atoms, source=str(p))
    log.debug("loaded knowledge graph %s: %d nodes, %d edges", p, g.n_nodes, g.n_edges)
    return g


def _entries(data: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    raw = data.get(section) or []
    if not isinstance(raw, list):
        raise GraphError(f"section '{section}' must be a list, got {type(raw).__name__}")
    out = []
    ntype = _SECTION_TYPE[section]
    for k, e in enumerate(raw):
        if isinstance(e, str):
            e = {"name": e}
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
            raise GraphError(f"{section}[{k}]: an entry needs a non-empty string 'name': {e!r}")
        extra = set(e) - _FIELDS[ntype]
        if extra:
            raise GraphError(f"{ntype} '{e['name']}': unknown field(s) {sorted(extra)}")
        out.append(e)
    return out


def _name_list(node: Mapping[str, Any], key: str, ntype: str) -> list[str]:
    v = node.get(key) or []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise GraphError(f"{ntype} '{node['name']}': '{key}' must be a list of node names")
    return list(v)


def graph_from_dict(
    data: Any,
    *,
    expert_names: Sequence[str] | None = None,
    atoms: Sequence[str] | None = None,
    source: str = "<dict>",
) -> KnowledgeGraph:
    """Validate a parsed graph file (see :func:`load_graph`) and build the :class:`KnowledgeGraph`."""
    feat_atoms = tuple(atoms) if atoms is not None else features.ATOMS
    if not isinstance(data, dict):
        raise GraphError(f"{source}: the top level must be a mapping of sections")
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise GraphError(f"{source}: unknown section(s) {sorted(unknown)}")

    sections = {
        s: _entries(data, s) for s in ("atoms", "conditions", "rules", "operators", "experts")
    }

    # ---- duplicate names (within and across sections) ----
    seen: dict[str, str] = {}
    for s, entries in sections.items():
        for e in entries:
            n = e["name"]
            if n in seen:
                raise GraphError(f"duplicate node '{n}' (as {seen[n]} and as {_SECTION_TYPE[s]})")
            seen[n] = _SECTION_TYPE[s]

    # ---- atoms ----
    file_atoms = [e["name"] for e in sections["atoms"]]
    for a in file_atoms:
        if a not in feat_atoms:
            raise GraphError(f"unknown atom '{a}': not a feature atom (features.ATOMS)")
    missing = [a for a in feat_atoms if a not in set(file_atoms)]
    if missing:
        raise GraphError(
            f"feature atom '{missing[0]}' is missing from the graph (missing: {missing})"
        )

    # ---- experts ----
    file_experts = [e["name"] for e in sections["experts"]]
    if not file_experts:
        raise GraphError(f"{source}: the graph declares no experts")
    if expert_names is not None:
        conf = tuple(expert_names)
        for x in file_experts:
            if x not in conf:
                raise GraphError(f"expert '{x}' is not in the configured expert list {list(conf)}")
        for x in conf:
            if x not in file_experts:
                raise GraphError(f"configured expert '{x}' has no expert node in the graph")
        experts = conf
    else:
        experts = tuple(file_experts)
    exp_desc = {e["name"]: str(e.get("desc", "")) for e in sections["experts"]}

    # ---- nodes in index order ----
    order: list[tuple[str, str, str]] = [(a, "atom", "") for a in feat_atoms]
    for s in ("conditions", "rules", "operators"):
        order += [(e["name"], _SECTION_TYPE[s], str(e.get("desc", ""))) for e in sections[s]]
    order += [(x, "expert", exp_desc.get(x, "")) for x in experts]
    names = tuple(n for n, _, _ in order)
    types = {n: t for n, t, _ in order}
    index = {n: i for i, n in enumerate(names)}

    # ---- edges ----
    edges: list[tuple[int, int, int]] = []
    edge_seen: set[tuple[str, str]] = set()

    def add(src: str, dst: str, sign: int) -> None:
        if src not in index:
            raise GraphError(f"dangling edge '{src}' -> '{dst}': '{src}' is not a node")
        if dst not in index:
            raise GraphError(f"dangling edge '{src}' -> '{dst}': '{dst}' is not a node")
        pair = (types[src], types[dst])
        if pair not in ALLOWED_EDGES:
            raise GraphError(
                f"edge '{src}' -> '{dst}' of disallowed type {pair[0]} -> {pair[1]}"
                f" (allowed: {sorted(f'{a}->{b}' for a, b in ALLOWED_EDGES)})"
            )
        if (src, dst) in edge_seen:
            raise GraphError(f"duplicate edge '{src}' -> '{dst}'")
        edge_seen.add((src, dst))
        edges.append((index[src], index[dst], sign))

    for s in ("conditions", "rules", "operators"):
        ntype = _SECTION_TYPE[s]
        for e in sections[s]:
            n = e["name"]
            pos = _name_list(e, "if", ntype)
            neg = _name_list(e, "unless", ntype)
            if not pos and not neg:
                raise GraphError(f"{ntype} '{n}' has no preconditions ('if' or 'unless')")
            if ntype == "rule" and len(pos) + len(neg) < 2:
                raise GraphError(
                    f"rule '{n}' has {len(pos) + len(neg)} precondition; a rule needs at least 2"
                    " (write a direct edge instead)"
                )
            for x in pos:
                add(x, n, +1)
            for x in neg:
                add(x, n, -1)
            if ntype == "rule":
                then = _name_list(e, "then", ntype)
                if not then:
                    raise GraphError(f"rule '{n}' has no 'then' operator")
                for x in then:
                    add(n, x, +1)
            if ntype == "operator":
                ex = e.get("expert")
                if ex is None or ex == "":
                    raise GraphError(f"operator '{n}' has no expert")
                if not isinstance(ex, str) or ex not in experts:
                    raise GraphError(
                        f"operator '{n}' names unknown expert '{ex}' (experts: {list(experts)})"
                    )
                add(n, ex, +1)

    edge_index = np.asarray([[s for s, _, _ in edges], [d for _, d, _ in edges]], dtype=np.int64)
    edge_index = edge_index.reshape(2, len(edges))
    edge_sign = np.asarray([g for _, _, g in edges], dtype=np.int8)

    _check_acyclic(names, edge_index)

    node_types = np.asarray([NODE_TYPES.index(t) for _, t, _ in order], dtype=np.int64)
    op_idx = np.flatnonzero(node_types == OPERATOR)
    op_names = tuple(names[i] for i in op_idx)
    op_expert_name = {e["name"]: e["expert"] for e in sections["operators"]}
    op_expert = np.asarray([experts.index(op_expert_name[o]) for o in op_names], dtype=np.int64)
    for k, x in enumerate(experts):
        if not (op_expert == k).any():
            raise GraphError(f"expert '{x}' is reached by no operator")
    for n, t, _ in order:
        if t == "condition" and not any(names[s] == n for s in edge_index[0]):
            log.warning("knowledge graph: condition '%s' feeds no rule or operator", n)

    return KnowledgeGraph(
        node_names=names,
        node_types=node_types,
        node_desc=tuple(d for _, _, d in order),
        edge_index=edge_index,
        edge_sign=edge_sign,
        atom_names=feat_atoms,
        atom_node_index=np.asarray([index[a] for a in feat_atoms], dtype=np.int64),
        operator_names=op_names,
        operator_node_index=op_idx.astype(np.int64),
        operator_expert=op_expert,
        expert_names=experts,
        expert_node_index=np.asarray([index[x] for x in experts], dtype=np.int64),
        source=source,
    )


def _check_acyclic(names: Sequence[str], edge_index: np.ndarray) -> None:
    """Raise :class:`GraphError` naming the nodes of a cycle if the directed graph has one."""
    succ: dict[int, list[int]] = defaultdict(list)
    for s, d in zip(edge_index[0], edge_index[1], strict=True):
        succ[int(s)].append(int(d))
    white, grey, black = 0, 1, 2
    color = [white] * len(names)
    for root in range(len(names)):
        if color[root] != white:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path = [root]
        color[root] = grey
        while stack:
            v, k = stack[-1]
            if k < len(succ[v]):
                stack[-1] = (v, k + 1)
                w = succ[v][k]
                if color[w] == grey:
                    cyc = path[path.index(w) :] + [w]
                    raise GraphError(
                        f"cycle through node '{names[w]}': " + " -> ".join(names[i] for i in cyc)
                    )
                if color[w] == white:
                    color[w] = grey
                    stack.append((w, 0))
                    path.append(w)
            else:
                color[v] = black
                stack.pop()
                path.pop()


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
