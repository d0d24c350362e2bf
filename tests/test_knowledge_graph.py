"""The packaged knowledge graph and the validator."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from nethack_moe import features
from nethack_moe.knowledge.graph import (
    ALLOWED_EDGES,
    NODE_TYPES,
    OPERATOR,
    GraphError,
    KnowledgeGraph,
    format_stats,
    graph_markdown,
)
from nethack_moe.knowledge.loader import load_graph

EXPERTS = ("survival", "combat", "exploration", "general")


@pytest.fixture(scope="module")
def graph() -> KnowledgeGraph:
    return load_graph()


# ---- the packaged graph ------------------------------------------------------------------


def test_packaged_graph_content(graph: KnowledgeGraph) -> None:
    assert graph.n_operators >= 30
    assert graph.atom_names == features.ATOMS
    for k, a in enumerate(features.ATOMS):
        i = graph.atom_node_index[k]
        assert graph.node_names[i] == a and NODE_TYPES[graph.node_types[i]] == "atom"
    assert set(graph.expert_names) == set(EXPERTS)
    assert set(graph.operator_expert.tolist()) == set(range(len(graph.expert_names)))
    for o, i in zip(graph.operator_names, graph.operator_node_index, strict=True):
        assert graph.node_types[i] == OPERATOR and graph.node_names[i] == o
    counts = graph.stats()["nodes_by_type"]
    assert counts["condition"] >= 10 and counts["rule"] >= 10 and counts["expert"] == 4


def test_packaged_graph_edges_are_typed_and_acyclic(graph: KnowledgeGraph) -> None:
    types = [NODE_TYPES[t] for t in graph.node_types]
    for s, d in graph.edge_index.T:
        assert (types[s], types[d]) in ALLOWED_EDGES
    assert set(np.unique(graph.edge_sign).tolist()) <= {-1, 1}
    assert graph.stats()["depth"] >= 3
    # every rule has >= 2 preconditions and points to an operator
    for n, t in zip(graph.node_names, types, strict=True):
        if t == "rule":
            assert len(graph.inputs(n)) >= 2
            assert graph.outputs(n)


def test_adjacency_convention(graph: KnowledgeGraph) -> None:
    adj = graph.adjacency
    n = graph.n_nodes
    assert adj.shape == (n, n) and adj.dtype == bool
    assert adj.diagonal().all()  # self-loops
    assert (adj == adj.T).all()  # both directions
    directed = graph.directed_adjacency
    for (s, d), sign in zip(graph.edge_index.T, graph.edge_sign, strict=True):
        assert directed[d, s] == sign and adj[d, s] and adj[s, d]
        assert graph.relation[d, s] == (2 if sign > 0 else 3)
        assert graph.relation[s, d] == (4 if sign > 0 else 5)
    assert int(adj.sum()) == 2 * graph.n_edges + n


def test_operator_preconditions_are_meaningful(graph: KnowledgeGraph) -> None:
    ix = graph.node_index
    fight = {s: g for s, g in graph.inputs("fight_adjacent")}
    assert fight["hostile_adjacent"] == 1 and fight["floating_eye_adjacent"] == -1
    assert ("more_prompt", 1) in graph.inputs("dismiss_more")
    assert (
        graph.expert_names[graph.operator_expert[graph.operator_names.index("pray")]] == "survival"
    )
    assert graph.type_of("pray_in_major_trouble") == "rule"
    assert ix["descend"] in graph.edge_index[1]


def test_expert_order_follows_config() -> None:
    order = ("general", "exploration", "combat", "survival")
    g = load_graph(expert_names=order)
    assert g.expert_names == order
    e = g.operator_expert[g.operator_names.index("dismiss_more")]
    assert order[e] == "general"
    assert g.operator_expert_matrix().sum(1).tolist() == [1.0] * g.n_operators


def test_stats_and_format(graph: KnowledgeGraph) -> None:
    st = graph.stats()
    assert st["nodes"] == graph.n_nodes and st["edges"] == graph.n_edges
    assert sum(st["edges_by_type"].values()) == graph.n_edges
    assert sum(st["operators_per_expert"].values()) == graph.n_operators
    assert st["max_in_degree"] >= 2
    text = format_stats(st)
    for word in ("atom", "operator", "survival", "depth", "atom->condition"):
        assert word in text


def test_doc_is_up_to_date(graph: KnowledgeGraph) -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "knowledge_graph.md"
    text = doc.read_text(encoding="utf-8")
    body = text.split("<!-- BEGIN GENERATED -->\n", 1)[1].split("<!-- END GENERATED -->", 1)[0]
    assert body == graph_markdown(graph), (
        "docs/knowledge_graph.md is stale: regenerate the part between the markers with"
        " nethack_moe.knowledge.graph.graph_markdown(load_graph())"
    )


# ---- the validator -----------------------------------------------------------------------


def _minimal() -> dict[str, Any]:
    """A small valid graph: every atom, one condition, one rule, one operator per expert."""
    return {
        "version": 1,
        "experts": [{"name": e} for e in EXPERTS],
        "atoms": list(features.ATOMS),
        "conditions": [
            {"name": "in_danger", "if": ["hp_low", "hostile_adjacent"]},
            {"name": "mortal", "if": ["in_danger", "hp_critical"]},
        ],
        "rules": [
            {"name": "pray_rule", "if": ["mortal", "prayer_ready"], "then": ["pray"]},
        ],
        "operators": [
            {"name": "pray", "expert": "survival", "if": ["mortal"]},
            {"name": "fight", "expert": "combat", "if": ["hostile_adjacent"]},
            {"name": "explore", "expert": "exploration", "if": ["unexplored_adjacent"]},
            {"name": "dismiss_more", "expert": "general", "if": ["more_prompt"]},
        ],
    }


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    p = tmp_path / "graph.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def test_minimal_graph_is_valid(tmp_path: Path) -> None:
    g = load_graph(_write(tmp_path, _minimal()), expert_names=EXPERTS)
    assert g.n_operators == 4
    # longest path: hp_low -> in_danger -> mortal -> pray_rule -> pray -> survival
    assert g.stats()["depth"] == 5


def _bad(tmp_path: Path, mutate, match: str, **kw: Any) -> None:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(_minimal())
    mutate(data)
    with pytest.raises(GraphError, match=match):
        load_graph(_write(tmp_path, data), **kw)


def test_rejects_unknown_atom(tmp_path: Path) -> None:
    _bad(
        tmp_path,
        lambda d: d["atoms"].append("levitating_wildly"),
        "unknown atom 'levitating_wildly'",
    )


def test_rejects_missing_atom(tmp_path: Path) -> None:
    _bad(tmp_path, lambda d: d["atoms"].remove("blind"), "'blind' is missing")


def test_rejects_dangling_edge(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["operators"][1]["if"].append("dragon_adjacent")

    _bad(tmp_path, m, "dangling edge 'dragon_adjacent' -> 'fight'")


def test_rejects_dangling_rule_target(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["rules"][0]["then"] = ["pray_harder"]

    _bad(tmp_path, m, "'pray_harder' is not a node")


def test_rejects_operator_without_expert(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        del d["operators"][2]["expert"]

    _bad(tmp_path, m, "operator 'explore' has no expert")


def test_rejects_unknown_expert(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["operators"][2]["expert"] = "wizardry"

    _bad(tmp_path, m, "operator 'explore' names unknown expert 'wizardry'")


def test_rejects_expert_not_configured(tmp_path: Path) -> None:
    _bad(
        tmp_path,
        lambda d: None,
        "expert 'general' is not in the configured expert list",
        expert_names=("survival", "combat", "exploration", "misc"),
    )


def test_rejects_cycle(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["conditions"][0]["if"].append("mortal")  # in_danger <- mortal <- in_danger

    with pytest.raises(GraphError, match="cycle") as e:
        data = copy.deepcopy(_minimal())
        m(data)
        load_graph(_write(tmp_path, data))
    assert "'in_danger'" in str(e.value) or "'mortal'" in str(e.value)


def test_rejects_duplicate_node(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["operators"].append({"name": "fight", "expert": "combat", "if": ["hostile_near"]})

    _bad(tmp_path, m, "duplicate node 'fight'")


def test_rejects_duplicate_across_types(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["conditions"].append({"name": "hp_low", "if": ["hp_critical"]})

    _bad(tmp_path, m, "duplicate node 'hp_low'")


def test_rejects_disallowed_edge_type(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["operators"][1]["if"].append("explore")  # operator -> operator

    _bad(tmp_path, m, "edge 'explore' -> 'fight' of disallowed type operator -> operator")


def test_rejects_single_precondition_rule(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["rules"][0]["if"] = ["mortal"]

    _bad(tmp_path, m, "rule 'pray_rule' has 1 precondition")


def test_rejects_unknown_field(tmp_path: Path) -> None:
    def m(d: dict[str, Any]) -> None:
        d["operators"][0]["exprt"] = "survival"

    _bad(tmp_path, m, "operator 'pray': unknown field")
