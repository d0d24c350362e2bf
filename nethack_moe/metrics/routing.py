"""Routing figures of a mixture of experts (``PROTOCOL.md``, "Routing figures").

``α_s`` is the router's weight vector over the E experts in state s; ``0·log 0 = 0``; natural logs.

* :func:`routing_figures`: numpy, over a set of visited states (analysis, evaluation), with switch
  rate when episode ids are given;
* :func:`routing_figures_torch`: the cheap version the trainer calls every update (one device sync,
  no switch rate), keyed like the ``routing/*`` fields of an update record;
* :func:`verdict`: a plain-language reading of the figures;
* :func:`scenario_table`: mean ``α`` per scenario.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nethack_moe.metrics import names as mn

#: Default expert names (DESIGN.md, E = 4).
DEFAULT_EXPERTS: tuple[str, ...] = ("survival", "combat", "exploration", "general")

#: Thresholds used by :func:`verdict`.
COLLAPSE_EFFECTIVE_EXPERTS = 1.5
MIN_MI = 0.05
UNIFORM_FRACTION = 0.95


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy (nats) along ``axis`` with ``0·log 0 = 0``."""
    p = np.asarray(p, dtype=np.float64)
    pos = p > 0
    terms = np.where(pos, p * np.log(np.where(pos, p, 1.0)), 0.0)
    return -terms.sum(axis=axis)


def _expert_names(n: int, names: Sequence[str] | None) -> list[str]:
    if names is not None and len(names) == n:
        return [str(s) for s in names]
    if n == len(DEFAULT_EXPERTS):
        return list(DEFAULT_EXPERTS)
    return [f"expert_{i}" for i in range(n)]


def switch_rate(argmax: np.ndarray, episode_ids: np.ndarray) -> float | None:
    """Share of consecutive step pairs of one episode whose argmax expert differs.

    Steps must be in time order within each episode (rows of different episodes may follow each
    other; a pair counts only when both rows carry the same episode id). ``None`` without pairs.
    """
    a = np.asarray(argmax).reshape(-1)
    e = np.asarray(episode_ids).reshape(-1)
    if a.shape != e.shape:
        raise ValueError(f"argmax {a.shape} and episode_ids {e.shape} differ in shape")
    if a.size < 2:
        return None
    same_ep = e[1:] == e[:-1]
    n = int(same_ep.sum())
    if n == 0:
        return None
    return float(((a[1:] != a[:-1]) & same_ep).sum() / n)


def routing_figures(
    alpha: Any,
    episode_ids: Any = None,
    expert_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Routing figures over the states of ``alpha`` (``[S, E]``, rows on the simplex).

    Returns ``n_states, n_experts, expert_names`` and the figures named in
    :mod:`~nethack_moe.analysis.metric_names`: ``alpha_entropy, alpha_entropy_std`` (ddof 0, over
    states), ``usage_entropy, mi`` (clipped at 0), ``effective_experts, usage`` (ᾱ),
    ``argmax_share`` (ties go to the lowest index), ``sparsity`` (mean share of exact zeros) and
    ``switch_rate`` (``None`` without ``episode_ids``). Accepts numpy arrays or torch tensors.
    """
    if hasattr(alpha, "detach"):
        alpha = alpha.detach().float().cpu().numpy()
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"alpha must be [S, E], got shape {a.shape}")
    S, E = a.shape
    names = _expert_names(E, expert_names)
    out: dict[str, Any] = {"n_states": int(S), "n_experts": int(E), "expert_names": names}
    if S == 0:
        out.update({name: None for name in mn.ROUTING_SCALARS})
        out.update({mn.USAGE: [None] * E, mn.ARGMAX_SHARE: [None] * E, mn.SWITCH_RATE: None})
        return out
    h = entropy(a, axis=1)
    usage = a.mean(axis=0)
    hu = float(entropy(usage))
    am = a.argmax(axis=1)
    out[mn.ALPHA_ENTROPY] = float(h.mean())
    out[mn.ALPHA_ENTROPY_STD] = float(h.std())
    out[mn.USAGE_ENTROPY] = hu
    out[mn.MI] = max(0.0, hu - float(h.mean()))
    out[mn.EFFECTIVE_EXPERTS] = float(math.exp(hu))
    out[mn.USAGE] = [float(v) for v in usage]
    out[mn.ARGMAX_SHARE] = [float(v) for v in np.bincount(am, minlength=E) / S]
    out[mn.SPARSITY] = float((a == 0).mean())
    if episode_ids is not None:
        if hasattr(episode_ids, "detach"):
            episode_ids = episode_ids.detach().cpu().numpy()
        out[mn.SWITCH_RATE] = switch_rate(am, np.asarray(episode_ids))
    else:
        out[mn.SWITCH_RATE] = None
    return out


def routing_figures_torch(
    alpha: Any, *, prefix: str = mn.ROUTING_PREFIX, lists: bool = True
) -> dict[str, Any]:
    """Routing figures of a batch ``alpha`` (torch ``[S, E]``) for an update record.

    Keys (with ``prefix``): :data:`metric_names.ROUTING_SCALARS` (``alpha_entropy,
    alpha_entropy_std, usage_entropy, mi, effective_experts, sparsity``; python floats) and, when
    ``lists``, ``usage`` and ``argmax_share`` (lists of E floats). Runs without autograd and syncs
    the device once.
    """
    import torch

    with torch.no_grad():
        a = alpha.detach().reshape(-1, alpha.shape[-1]).to(torch.float64)
        S, E = a.shape
        if S == 0:
            return {}
        pos = a > 0
        h = -torch.where(pos, a * torch.log(torch.where(pos, a, torch.ones_like(a))), 0.0).sum(1)
        usage = a.mean(0)
        upos = usage > 0
        hu = -torch.where(upos, usage * torch.log(torch.where(upos, usage, 1.0)), 0.0).sum()
        hm = h.mean()
        scal = torch.stack(  # in the order of mn.ROUTING_SCALARS
            [
                hm,
                h.std(unbiased=False),
                hu,
                torch.clamp(hu - hm, min=0.0),
                torch.exp(hu),
                (a == 0).to(torch.float64).mean(),
            ]
        )
        share = torch.bincount(a.argmax(1), minlength=E).to(torch.float64) / S
        flat = torch.cat([scal, usage, share]).cpu().tolist()
    out: dict[str, Any] = {
        prefix + k: float(v) for k, v in zip(mn.ROUTING_SCALARS, flat[:6], strict=True)
    }
    if lists:
        out[prefix + mn.USAGE] = [float(v) for v in flat[6 : 6 + E]]
        out[prefix + mn.ARGMAX_SHARE] = [float(v) for v in flat[6 + E : 6 + 2 * E]]
    return out


def _get(fig: dict[str, Any], name: str) -> float | None:
    """Routing figure ``name`` of ``fig`` as a float (:func:`metric_names.routing_value`)."""
    v = mn.routing_value(fig, name)
    return None if v is None else float(v)


def verdict(fig: dict[str, Any], n_experts: int) -> str:
    """A plain-language statement about the routing figures ``fig``.

    Accepts the output of :func:`routing_figures` or of :func:`routing_figures_torch` (``routing/``
    keys), and figures of older files (:data:`metric_names.LEGACY_NAMES`). In order: collapse onto one expert (effective experts < 1.5); never left
    uniform (alpha entropy > 0.95 ln E); not specialized (routing MI < 0.05 nats: the same mixture
    in every state); otherwise "state-dependent routing", labelled as usage balance and per-state
    sharpness: whether it is *specialization* is for the figures of
    :mod:`nethack_moe.metrics.specialization` to say.
    """
    h = _get(fig, mn.ALPHA_ENTROPY)
    mi = _get(fig, mn.MI)
    eff = _get(fig, mn.EFFECTIVE_EXPERTS)
    hu = _get(fig, mn.USAGE_ENTROPY)
    if eff is None and hu is not None:
        eff = math.exp(hu)
    if h is None or mi is None or eff is None:
        return "no routing data"
    E = int(n_experts)
    if E <= 1:
        return "a single expert: routing is trivial"
    ln_e = math.log(E)
    usage = mn.routing_value(fig, mn.USAGE)
    top = ""
    if usage:
        names = _expert_names(len(usage), fig.get("expert_names"))
        i = int(np.argmax(usage))
        top = f" ({names[i]}, {100 * float(usage[i]):.0f} % of the weight)"
    if eff < COLLAPSE_EFFECTIVE_EXPERTS:
        return (
            f"collapsed onto one expert{top}: effective experts {eff:.2f} of {E}, "
            f"routing MI {mi:.3f} nats"
        )
    if h > UNIFORM_FRACTION * ln_e:
        return (
            f"never left uniform: alpha entropy {h:.4f} ≈ ln {E} = {ln_e:.4f}, "
            f"every state mixes all experts (routing MI {mi:.3f} nats)"
        )
    if mi < MIN_MI:
        return (
            f"not specialized (MI < {MIN_MI}): routing MI {mi:.3f} nats, the router gives about "
            f"the same mixture of ≈{math.exp(h):.1f} experts (alpha entropy {h:.4f}) in every "
            f"state; effective experts {eff:.2f} of {E}"
        )
    strength = "soft " if mi < 0.25 * ln_e else ""
    return (
        f"{strength}state-dependent routing: routing MI {mi:.3f} nats ({100 * mi / ln_e:.0f} % of "
        f"ln {E}; usage balance), alpha entropy {h:.4f} (per-state sharpness), effective experts "
        f"{eff:.2f} of {E}; the load-balance and alpha-entropy terms produce these for any router, "
        "so they are not evidence of specialization (see the specialization figures)"
    )


def scenario_table(
    alpha: Any,
    labels: Any,
    scenario_names: Sequence[str],
    expert_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Mean ``α`` per scenario.

    ``labels[s]`` is the scenario index of state s (into ``scenario_names``). Returns
    ``{"scenarios", "experts", "counts", "shares", "mean_alpha"`` (rows ``None`` for scenarios
    without states), ``"alpha_entropy"`` (mean per scenario), ``"argmax_expert"``\\ ``}``.
    """
    if hasattr(alpha, "detach"):
        alpha = alpha.detach().float().cpu().numpy()
    a = np.asarray(alpha, dtype=np.float64)
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    if a.ndim != 2 or a.shape[0] != lab.shape[0]:
        raise ValueError(f"alpha {a.shape} and labels {lab.shape} do not match")
    E = a.shape[1]
    names = _expert_names(E, expert_names)
    S = max(int(a.shape[0]), 1)
    h = entropy(a, axis=1)
    counts: list[int] = []
    shares: list[float] = []
    means: list[list[float] | None] = []
    ents: list[float | None] = []
    top: list[str | None] = []
    for k in range(len(scenario_names)):
        m = lab == k
        c = int(m.sum())
        counts.append(c)
        shares.append(c / S)
        if c:
            row = a[m].mean(axis=0)
            means.append([float(v) for v in row])
            ents.append(float(h[m].mean()))
            top.append(names[int(np.argmax(row))])
        else:
            means.append(None)
            ents.append(None)
            top.append(None)
    return {
        "scenarios": [str(s) for s in scenario_names],
        "experts": names,
        "counts": counts,
        "shares": shares,
        "mean_alpha": means,
        "alpha_entropy": ents,
        "argmax_expert": top,
    }
