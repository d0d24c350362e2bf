"""Scenario information: how much the argmax expert says about a state label, next to its nulls.

:func:`scenario_information` measures I(argmax expert; label) in nats and as a share of H(label)
(:func:`mutual_information`, :func:`entropy_of_labels`), next to the same figure after permuting
the expert assignments across states and, with episode ids, after shifting them circularly within
each episode (:func:`_episode_shift_index`), which keeps the autocorrelation of both sequences;
it fills in a :class:`nethack_moe.metrics.router_figures.ScenarioInformation`.
"""

from __future__ import annotations

import numpy as np

from nethack_moe.metrics.router_figures import ScenarioInformation
from nethack_moe.metrics.scenarios import SCENARIOS

#: Permutations of the scenario-information baseline (PROTOCOL.md: at least 100).
DEFAULT_PERMUTATIONS = 200


# ------------------------------------------------------------------------------ scenario information
def entropy_of_labels(labels: np.ndarray, n: int) -> float:
    """Entropy (nats) of the empirical distribution of ``labels`` in ``0 .. n-1``."""
    c = np.bincount(np.asarray(labels, np.int64), minlength=n).astype(np.float64)
    p = c[c > 0] / max(c.sum(), 1.0)
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> float:
    """I(a; b) in nats of two label sequences (``a`` in ``0..na-1``, ``b`` in ``0..nb-1``)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    n = a.size
    if n == 0:
        return 0.0
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / n
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum(), 0.0))


def _episode_shift_index(episode_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row index that rotates every episode's rows by a random offset.

    The rows of each episode must be contiguous: otherwise every run of rows would be rotated on
    its own, the shift would leave runs of length 1 in place, and the null would silently become
    the figure itself. Raises ``ValueError`` when an episode id appears in two separate runs."""
    e = np.asarray(episode_ids)
    starts = np.flatnonzero(np.r_[True, e[1:] != e[:-1]])
    run_ids = e[starts]
    if np.unique(run_ids).size != run_ids.size:
        _, first = np.unique(run_ids, return_index=True)
        dup = run_ids[np.setdiff1d(np.arange(run_ids.size), first)[0]]
        raise ValueError(
            f"episode ids are not contiguous per episode (episode {dup} appears in two separate "
            "runs of rows): sort the state log by episode before the within-episode shifts"
        )
    lengths = np.diff(np.r_[starts, e.size])
    offsets = rng.integers(0, np.maximum(lengths, 1))
    start_of = np.repeat(starts, lengths)
    len_of = np.repeat(lengths, lengths)
    pos = np.arange(e.size) - start_of
    return start_of + (pos + np.repeat(offsets, lengths)) % len_of


def scenario_information(
    argmax: np.ndarray,
    labels: np.ndarray,
    n_experts: int,
    n_scenarios: int = len(SCENARIOS),
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    episode_ids: np.ndarray | None = None,
) -> ScenarioInformation:
    """I(argmax expert; scenario) and its baselines over ``permutations`` seeded draws."""
    am, lab = np.asarray(argmax, np.int64), np.asarray(labels, np.int64)
    if am.shape != lab.shape:
        raise ValueError(f"argmax {am.shape} and labels {lab.shape} differ in shape")
    if permutations < 1:
        raise ValueError(f"permutations={permutations} must be >= 1")
    mi = mutual_information(am, lab, n_experts, n_scenarios)
    rng = np.random.default_rng(seed)
    shuffled = np.array(
        [mutual_information(rng.permutation(am), lab, n_experts, n_scenarios)
         for _ in range(permutations)]
    )  # fmt: skip
    shifted_p95 = shifted_p = None
    if episode_ids is not None and am.size:
        ep = np.asarray(episode_ids)
        shifted = np.array(
            [mutual_information(am[_episode_shift_index(ep, rng)], lab, n_experts, n_scenarios)
             for _ in range(permutations)]
        )  # fmt: skip
        shifted_p95 = float(np.quantile(shifted, 0.95))
        shifted_p = float((1 + (shifted >= mi - 1e-12).sum()) / (1 + permutations))
    return ScenarioInformation(
        mi=mi,
        scenario_entropy=entropy_of_labels(lab, n_scenarios),
        shuffled_mean=float(shuffled.mean()),
        shuffled_p95=float(np.quantile(shuffled, 0.95)),
        p_value=float((1 + (shuffled >= mi - 1e-12).sum()) / (1 + permutations)),
        permutations=int(permutations),
        n_states=int(am.size),
        shifted_p95=shifted_p95,
        shifted_p_value=shifted_p,
    )
