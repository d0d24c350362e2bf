"""Loading and validation of a knowledge-graph file (``graph.yaml``) into a
:class:`~nethack_moe.knowledge.graph.KnowledgeGraph`.

:func:`load_graph` reads the YAML (the packaged ``graph.yaml`` by default) and
:func:`graph_from_dict` checks it: known sections and fields, unique node names, exactly the
feature atoms, the experts against the configured list, every edge between existing nodes of an
allowed pair of types and no edge twice, a DAG, every expert reached by an operator. Any error
raises :class:`~nethack_moe.knowledge.graph.GraphError` naming the node or edge at fault.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nethack_moe import features
from nethack_moe.knowledge.graph import (
    ALLOWED_EDGES,
    NODE_TYPES,
    OPERATOR,
    GraphError,
    KnowledgeGraph,
)

log = logging.getLogger(__name__)

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
    _check_unique_names(sections)
    _check_atoms(sections, feat_atoms)
    experts = _experts(sections, expert_names, source)

    # ---- nodes in index order ----
    exp_desc = {e["name"]: str(e.get("desc", "")) for e in sections["experts"]}
    order: list[tuple[str, str, str]] = [(a, "atom", "") for a in feat_atoms]
    for s in ("conditions", "rules", "operators"):
        order += [(e["name"], _SECTION_TYPE[s], str(e.get("desc", ""))) for e in sections[s]]
    order += [(x, "expert", exp_desc.get(x, "")) for x in experts]
    names = tuple(n for n, _, _ in order)
    index = {n: i for i, n in enumerate(names)}

    edges = _edges(sections, experts, {n: t for n, t, _ in order}, index)
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


def _check_unique_names(sections: Mapping[str, list[dict[str, Any]]]) -> None:
    """Refuse a node name declared twice, within a section or across sections."""
    seen: dict[str, str] = {}
    for s, entries in sections.items():
        for e in entries:
            n = e["name"]
            if n in seen:
                raise GraphError(f"duplicate node '{n}' (as {seen[n]} and as {_SECTION_TYPE[s]})")
            seen[n] = _SECTION_TYPE[s]


def _check_atoms(sections: Mapping[str, list[dict[str, Any]]], feat_atoms: Sequence[str]) -> None:
    """The graph's atoms must be exactly the feature atoms."""
    file_atoms = [e["name"] for e in sections["atoms"]]
    for a in file_atoms:
        if a not in feat_atoms:
            raise GraphError(f"unknown atom '{a}': not a feature atom (features.ATOMS)")
    missing = [a for a in feat_atoms if a not in set(file_atoms)]
    if missing:
        raise GraphError(
            f"feature atom '{missing[0]}' is missing from the graph (missing: {missing})"
        )


def _experts(
    sections: Mapping[str, list[dict[str, Any]]], expert_names: Sequence[str] | None, source: str
) -> tuple[str, ...]:
    """The experts in index order: the configured list, which the graph's expert nodes must match
    exactly, or the graph's own order without one."""
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
        return conf
    return tuple(file_experts)


def _edges(
    sections: Mapping[str, list[dict[str, Any]]],
    experts: tuple[str, ...],
    types: Mapping[str, str],
    index: Mapping[str, int],
) -> list[tuple[int, int, int]]:
    """The signed edges ``(src, dst, ±1)`` of the conditions, rules and operators, in file order,
    each checked: both ends are nodes, the pair of types is allowed, no edge twice."""
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
    return edges


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
