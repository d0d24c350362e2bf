"""Reliance: what the router routes on, measured by replacing one of its inputs on logged states.

:func:`reliance_on_states` re-encodes a seeded sample of the logged states (:func:`sample_rows`,
:func:`encode_all`) and, for each :data:`REPLACEMENTS` entry (``h_graph`` or ``h_state`` replaced
by its mean over the states, or by zeros), gives the share of states whose argmax expert changes
and the mean policy KL; :func:`hint_follow_share` is the share of steps that take the hinted move.
The score change when the policy plays with a replacement is filled in by the probes
(:mod:`nethack_moe.analysis.probes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from nethack_moe.metrics import names as mn
from nethack_moe.metrics.router_figures import RelianceFigure
from nethack_moe.models.policy import Encoded

if TYPE_CHECKING:
    from nethack_moe.metrics.statelog import StateLog
    from nethack_moe.models.acting import Obs
    from nethack_moe.models.policy import ActorCritic, Encoded


#: States the reliance figures are computed on (a seeded sample of the logged states).
DEFAULT_RELIANCE_STATES = 4096


# ------------------------------------------------------------------------------ reliance
@dataclass(frozen=True)
class Replacement:
    """One edit of the encoding: ``field`` (``h_graph`` / ``h_state``) replaced by its mean over
    the states or by zeros."""

    name: str
    field: str
    kind: str

    def apply(self, enc: Encoded, means: dict[str, Tensor]) -> Encoded:
        """``enc`` with the field replaced (``means[field]``: ``[D]``, for ``kind="mean"``)."""
        h = getattr(enc, self.field)
        if h is None:
            return enc
        new = torch.zeros_like(h) if self.kind == "zero" else means[self.field].to(h).expand_as(h)
        return enc._replace(**{self.field: new})

    def edit(self, means: dict[str, Tensor]) -> Callable[[Encoded], Encoded]:
        """The replacement as an encoding edit for :class:`nethack_moe.evaluation.players.ModelPlayer`."""
        return lambda enc: self.apply(enc, means)


#: The four replacements of PROTOCOL.md, keyed like ``analysis.json``'s ``reliance`` block.
REPLACEMENTS: tuple[Replacement, ...] = (
    Replacement(mn.GRAPH_MEAN, "h_graph", "mean"),
    Replacement("graph_zero", "h_graph", "zero"),
    Replacement(mn.STATE_MEAN, "h_state", "mean"),
    Replacement("state_zero", "h_state", "zero"),
)


@dataclass
class RelianceResult:
    """The reliance figures on the states (``None`` for a replacement whose field the model lacks)
    and the means used, for playing with the same replacement."""

    figures: dict[str, RelianceFigure | None]
    means: dict[str, Tensor] = field(default_factory=dict)


def sample_rows(n: int, max_rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded sample of ``min(n, max_rows)`` of ``n`` rows."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _rows(obs: Obs, idx: Tensor | slice) -> Obs:
    """Rows ``idx`` of every field of ``obs``."""
    return obs._replace(**{f: getattr(obs, f)[idx] for f in obs._fields})


def _cat(parts: list[Tensor | None]) -> Tensor | None:
    return None if parts[0] is None else torch.cat([p for p in parts if p is not None])


def encode_all(model: ActorCritic, obs: Obs, batch: int = 512) -> Encoded:
    """:meth:`ActorCritic.encode` of ``obs`` in batches (no autograd), on the model's device."""

    dev = next(model.parameters()).device
    parts = []
    with torch.no_grad():
        for i in range(0, int(obs.state.shape[0]), batch):
            o = _rows(obs, slice(i, i + batch)).to(dev)
            parts.append(model.encode(*o))
    h_state = torch.cat([p.h_state for p in parts])
    return Encoded(
        h_state, _cat([p.h_graph for p in parts]), _cat([p.operator_scores for p in parts]),
        _cat([p.hint for p in parts]),
    )  # fmt: skip


def reliance_on_states(
    model: ActorCritic,
    obs: Obs,
    routing: str | None = None,
    temperature: float | None = None,
    *,
    max_states: int = DEFAULT_RELIANCE_STATES,
    seed: int = 0,
    batch: int = 512,
) -> RelianceResult:
    """The reliance figures of the four :data:`REPLACEMENTS` on (a seeded sample of) ``obs``.

    The mean is taken over the sampled states; the same mean replaces the field when the policy
    plays with the replacement, so both figures measure one and the same edit.
    """
    n = int(obs.state.shape[0])
    if n == 0:
        return RelianceResult({r.name: None for r in REPLACEMENTS})
    obs = _rows(obs, torch.from_numpy(sample_rows(n, max_states, seed)))
    enc = encode_all(model, obs, batch)
    means = {
        f: getattr(enc, f).mean(0) for f in ("h_state", "h_graph") if getattr(enc, f) is not None
    }
    with torch.no_grad():
        base = model.head(enc, routing, temperature)
        logp = torch.log_softmax(base.logits.float(), -1)
        am = base.alpha.argmax(-1)
        figs: dict[str, RelianceFigure | None] = {}
        for rep in REPLACEMENTS:
            if getattr(enc, rep.field) is None:
                figs[rep.name] = None
                continue
            out = model.head(rep.apply(enc, means), routing, temperature)
            logq = torch.log_softmax(out.logits.float(), -1)
            kl = (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0)
            tv = 0.5 * (out.alpha.float() - base.alpha.float()).abs().sum(-1)
            figs[rep.name] = RelianceFigure(
                rep.name,
                float((out.alpha.argmax(-1) != am).float().mean()),
                float(kl.mean()),
                int(am.shape[0]),
                alpha_change=float(tv.mean()),
            )
    return RelianceResult(figs, {k: v.detach().cpu() for k, v in means.items()})


# ------------------------------------------------------------------------------ scenario outcomes
def hint_follow_share(st: StateLog) -> float | None:
    """Share of the steps with a navigation hint on which the hinted move was taken (``None``
    without such steps)."""
    has = st.hint >= 0
    n = int(has.sum())
    return float((st.action[has] == st.hint[has]).mean()) if n else None
