"""Model configuration (architecture sizes, variant, routing defaults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nethack_moe.models.routing import ROUTING_KINDS

#: Model variants: graph (GAT) or not, mixture of experts or a single expert.
VARIANTS: tuple[str, ...] = ("gat_moe", "mlp_moe", "gat_single", "mlp_single")


@dataclass
class ModelConfig:
    """Architecture of the actor-critic; see :func:`nethack_moe.models.policy.build_model`."""

    variant: str = "gat_moe"
    """``gat_moe`` (GAT-guided router, the main model), ``mlp_moe`` (router on the state only),
    ``gat_single`` (one expert on ``[h_state, h_graph]``), ``mlp_single`` (one expert on the
    state)."""
    n_experts: int = 4
    """Number of experts E of the MoE variants (the single variants use 1)."""
    expert_names: tuple[str, ...] = ("survival", "combat", "exploration", "general")
    """Expert names, in router-output order; must match the graph's expert nodes."""
    hidden: int = 128
    """Width of ``h_state`` and of the state-encoder MLPs."""
    glyph_embed_dim: int = 16
    """Embedding size of a glyph group in the crop."""
    conv_channels: tuple[int, ...] = (32,)
    """Output channels of the 3x3 convolutions over the crop (padding 1); the last one has
    stride 2 (9x9 -> 5x5, its centre cell sees exactly the hero's 8 neighbours). One conv keeps
    the 1024-state update step fast on CPU; ``(16, 32)`` adds a stride-1 conv first."""
    expert_hidden: int = 128
    """Hidden width of each expert MLP."""
    critic_hidden: int = 128
    """Hidden width of the critic MLP."""
    router_hidden: int = 64
    """Hidden width of the router MLP."""
    gat_heads: int = 4
    """Attention heads per GAT layer."""
    gat_dim: int = 16
    """Node state and embedding width in the GAT (all heads together; divisible by
    ``gat_heads``). The pass over the knowledge DAG runs once, in topological order."""
    graph_embed_dim: int = 64
    """Width of the pooled graph embedding ``h_graph``."""
    hint_to_logits: bool = False
    """A learned gain per expert on a skip path from the navigation hint (the ``nav_*`` one-hot
    of the state vector) to the logit of the action it advises: each expert decides how much to
    add to the planner, instead of having to rediscover the hint -> action map. Needs
    NetHackScore's 23-action set. Off: the hint is only an input like any other."""
    hint_inputs: bool = True
    """Whether the policy sees the navigation hint: off, the ``nav_*`` columns of the state
    vector are zeroed inside the model (acting and learning alike), for the no-hint ablation."""
    last_move_inputs: bool = False
    """A one-step memory: the policy also reads the ``last_move_*`` columns of the state vector
    (the direction of its previous action if it was a move, and whether that moved the hero), so
    that a deterministic policy can tell "arrived here from the east" or "bumped east" from a first
    visit. Off: the model reads the first ``BASE_STATE_DIM`` columns only (checkpoints made before
    the columns existed load unchanged)."""
    still_inputs: bool = False
    """With ``last_move_inputs``: also read ``still_steps`` (steps since the hero's position or
    depth last changed, capped at 8), an input that changes while the policy repeats an action
    that does nothing (a search, a prompt key, a bump), so that a deterministic policy can stop."""
    action_inputs: bool = False
    """With ``still_inputs``: also read ``last_action_0..22`` (one-hot of the previous action
    among the task's 23), so that a search, a kick, an eat or a prompt key just pressed is
    visible; the model then reads the whole state vector."""
    gat_dedup: bool = True
    """Run the GAT once per distinct atom vector of a batch (results identical, much faster)."""
    graph_path: str | None = None
    """Knowledge-graph YAML file; ``None`` = the packaged ``knowledge/graph.yaml``."""
    routing: str = "softmax"
    """Default routing kind (``softmax``, ``sparsemax``, ``entmax15``); the curriculum overrides
    it per phase."""
    temperature: float = 1.0
    """Default router temperature (> 0); the curriculum overrides it per phase."""

    def __post_init__(self) -> None:
        self.expert_names = tuple(self.expert_names)
        self.conv_channels = tuple(self.conv_channels)

    # ---- derived ----
    @property
    def uses_graph(self) -> bool:
        """Whether the model has the knowledge graph + GAT branch."""
        return self.variant.startswith("gat")

    @property
    def is_moe(self) -> bool:
        """Whether the model mixes several experts with a router."""
        return self.variant.endswith("moe")

    @property
    def effective_n_experts(self) -> int:
        """Experts actually built: ``n_experts`` for MoE variants, 1 otherwise."""
        return self.n_experts if self.is_moe else 1

    @property
    def effective_expert_names(self) -> tuple[str, ...]:
        """Names of the experts actually built (``("single",)`` for single variants)."""
        return self.expert_names if self.is_moe else ("single",)

    @property
    def expert_input(self) -> str:
        """What the experts see: ``"z"`` (``[h_state, h_graph]``) for ``gat_single`` so that the
        graph can reach the policy without a router, ``"state"`` (``h_state``) otherwise."""
        return "z" if self.variant == "gat_single" else "state"

    # ---- checks and (de)serialisation ----
    def validate(self) -> ModelConfig:
        """Raise ``ValueError`` naming the field of the first bad value; returns ``self``."""
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: unknown {self.variant!r}; expected one of {VARIANTS}")
        if self.routing not in ROUTING_KINDS:
            raise ValueError(f"routing: unknown {self.routing!r}; expected one of {ROUTING_KINDS}")
        if not isinstance(self.temperature, int | float) or not self.temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {self.temperature!r}")
        for name in (
            "n_experts",
            "hidden",
            "glyph_embed_dim",
            "expert_hidden",
            "critic_hidden",
            "router_hidden",
            "gat_heads",
            "gat_dim",
            "graph_embed_dim",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        if not self.conv_channels or any(
            not isinstance(c, int) or isinstance(c, bool) or c <= 0 for c in self.conv_channels
        ):
            raise ValueError(
                f"conv_channels: must be a non-empty list of positive integers, got {self.conv_channels!r}"
            )
        if self.gat_dim % self.gat_heads:
            raise ValueError(
                f"gat_dim: {self.gat_dim} is not divisible by gat_heads={self.gat_heads}"
            )
        if self.still_inputs and not self.last_move_inputs:
            raise ValueError("still_inputs: needs last_move_inputs=true")
        if self.action_inputs and not self.still_inputs:
            raise ValueError("action_inputs: needs still_inputs=true")
        if self.hint_to_logits and not self.hint_inputs:
            raise ValueError(
                "hint_to_logits: needs hint_inputs=true (the skip path reads the hint)"
            )
        if len(self.expert_names) != self.n_experts:
            raise ValueError(
                f"expert_names: {len(self.expert_names)} names for n_experts={self.n_experts}"
            )
        if len(set(self.expert_names)) != len(self.expert_names) or not all(
            isinstance(n, str) and n for n in self.expert_names
        ):
            raise ValueError(
                f"expert_names: must be distinct non-empty strings: {self.expert_names}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for config files and checkpoints."""
        d = dataclasses.asdict(self)
        d["expert_names"] = list(self.expert_names)
        d["conv_channels"] = list(self.conv_channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build and validate from a mapping; an unknown key raises ``ValueError`` naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model config field(s): {unknown}")
        return cls(**dict(d)).validate()
