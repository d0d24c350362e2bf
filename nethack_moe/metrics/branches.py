"""Specialization against the scripted teacher's branches (issue 18; PROTOCOL.md, "branch
information").

The teacher's branch (:data:`nethack_moe.envs.teacher.BRANCHES`) is why the scripted diver would act in
a state (fight, descend, to_stairs, explore, search, ...): a ground-truth situation label that no
heuristic guessed. It is computed in the env workers beside the hint (``env.teacher``), which
changes neither the game nor the policy's inputs, and logged per state
(:class:`nethack_moe.evaluation.StateLog`). On the states of one run:

* **branch information**: I(argmax expert; branch) next to the permutation and within-episode-shift
  nulls, with the estimator of the scenario information (:func:`scenario_information`);
* **per branch**: π(teacher's action) with the learned router and with the router forced to each
  expert (one-hot α through :func:`nethack_moe.models.acting.act`'s ``alpha_override``, the
  intervention of ``ModelPlayer(expert=i)``), on the same states. Each figure is a per-episode
  mean over the branch's states, and a forced expert's gain over the router is paired over the
  episodes (seeds) with its bootstrap CI. The expert with the highest mean is *the* best only when
  its paired CI against every other expert lies above 0 (:func:`rank_by_seed`);
* **agreement**: the share of states whose action taken in the run (sampled or greedy, as played)
  is the teacher's, and the share whose argmax of π is, per branch and overall.

The figures are records of :mod:`nethack_moe.metrics.verdict` (:class:`TeacherFigures`), which
builds the verdict's lines from them at read time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from nethack_moe.envs.teacher import BRANCHES
from nethack_moe.metrics.information import DEFAULT_PERMUTATIONS, scenario_information
from nethack_moe.metrics.paired import PairedDiff
from nethack_moe.metrics.reliance import _rows, encode_all, sample_rows
from nethack_moe.metrics.specialization import rank_by_seed
from nethack_moe.metrics.teacher_figures import (
    ALL_STATES,
    TEACHER_PROB,
    Agreement,
    BranchIntervention,
    TeacherFigures,
)

if TYPE_CHECKING:
    from nethack_moe.metrics.statelog import StateLog
    from nethack_moe.models.acting import Obs
    from nethack_moe.models.policy import ActorCritic

#: States the per-branch interventions and the argmax agreement are computed on (a seeded sample
#: of the logged states with the teacher's advice).
DEFAULT_TEACHER_STATES = 16384


@dataclass(frozen=True)
class TeacherProbs:
    """π(teacher's action) on a set of states: with the learned router, and with the router
    forced to each expert; and π's argmax."""

    router: np.ndarray
    """``[S]``."""
    forced: np.ndarray
    """``[E, S]``."""
    argmax: np.ndarray
    """``[S]`` int64: the argmax action of π with the learned router."""


def teacher_probs(
    model: ActorCritic,
    obs: Obs,
    teacher_action: np.ndarray,
    routing: str | None = None,
    temperature: float | None = None,
    *,
    batch: int = 512,
) -> TeacherProbs:
    """:class:`TeacherProbs` of the states ``obs`` (teacher's actions ``teacher_action``, ``[S]``),
    each expert forced by a one-hot α override as in ``ModelPlayer(expert=i)``."""
    enc = encode_all(model, obs, batch)
    dev = enc.h_state.device
    a = torch.from_numpy(np.asarray(teacher_action, np.int64)).to(dev)
    E = int(model.n_experts)
    S = int(a.shape[0])
    forced = np.zeros((E, S))

    def head(alpha: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        # the heads of act() on the states encoded once (act() would encode them E + 1 times)
        with torch.no_grad():
            out = model.head(enc, routing, temperature, alpha)
            logp = torch.log_softmax(out.logits.float(), -1)
            p = logp.gather(1, a[:, None]).squeeze(1).exp()
        return p.cpu().numpy(), logp.argmax(-1).cpu().numpy()

    router, argmax = head(None)
    for i in range(E):
        onehot = torch.zeros(S, E, device=dev)
        onehot[:, i] = 1.0
        forced[i] = head(onehot)[0]
    return TeacherProbs(router.astype(np.float64), forced, argmax.astype(np.int64))


def agreement(
    action: np.ndarray,
    teacher_action: np.ndarray,
    branch: np.ndarray,
    argmax_rows: np.ndarray | None = None,
    argmax: np.ndarray | None = None,
) -> dict[str, Agreement]:
    """:class:`Agreement` overall (:data:`ALL_STATES`) and per branch with states (in the order
    of :data:`BRANCHES`). ``argmax_rows`` / ``argmax``: row indices and π's argmax there."""
    act, ta, br = (np.asarray(x, np.int64) for x in (action, teacher_action, branch))
    hit = act == ta
    am_hit = np.zeros(0, bool)
    am_br = np.zeros(0, np.int64)
    if argmax_rows is not None and argmax is not None:
        am_hit = np.asarray(argmax, np.int64) == ta[argmax_rows]
        am_br = br[argmax_rows]

    def one(sel: np.ndarray, am_sel: np.ndarray) -> Agreement:
        n, m = int(sel.sum()), int(am_sel.sum())
        return Agreement(
            n, float(hit[sel].mean()) if n else None,
            float(am_hit[am_sel].mean()) if m else None, m,
        )  # fmt: skip

    out = {ALL_STATES: one(np.ones(br.size, bool), np.ones(am_br.size, bool))}
    for k, name in enumerate(BRANCHES):
        if (br == k).any():
            out[name] = one(br == k, am_br == k)
    return out


def _per_seed(values: np.ndarray, episode: np.ndarray) -> dict[int, float | None]:
    """Mean of ``values`` per episode id."""
    return {int(s): float(values[episode == s].mean()) for s in np.unique(episode)}


def branch_interventions(
    router_p: np.ndarray,
    forced_p: np.ndarray,
    branch: np.ndarray,
    episode: np.ndarray,
    expert_names: list[str],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, BranchIntervention]:
    """Per branch with states: π(teacher's action) with the router (``router_p``, ``[S]``) and
    with each expert forced (``forced_p``, ``[E, S]``), as means over the episodes of per-episode
    means; each expert's gain over the router and the ranking, paired over the episodes."""
    br, ep = np.asarray(branch, np.int64), np.asarray(episode, np.int64)
    out: dict[str, BranchIntervention] = {}
    for k, name in enumerate(BRANCHES):
        sel = br == k
        if not sel.any():
            continue
        e_sel = ep[sel]
        router = _per_seed(router_p[sel], e_sel)
        by_seed = {e: _per_seed(forced_p[i][sel], e_sel) for i, e in enumerate(expert_names)}
        point = {e: float(np.mean(list(v.values()))) for e, v in by_seed.items()}
        gain = {
            e: PairedDiff.of(router, v, n_resamples=n_resamples, seed=seed)
            for e, v in by_seed.items()
        }
        ranking = rank_by_seed(name, TEACHER_PROB, True, point, by_seed,
                               n_resamples=n_resamples, seed=seed)  # fmt: skip
        out[name] = BranchIntervention(
            name, int(sel.sum()), float(np.mean(list(router.values()))), dict(point), gain,
            ranking,
        )  # fmt: skip
    return out


def teacher_figures(
    model: ActorCritic | None,
    st: StateLog,
    routing: str | None = None,
    temperature: float | None = None,
    actions: str = "sampled",
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    max_states: int = DEFAULT_TEACHER_STATES,
    seed: int = 0,
    n_resamples: int = 2000,
) -> TeacherFigures | None:
    """The ``teacher`` block of one run's logged states (``None`` when the run had no teacher).

    Branch information needs a routing (more than one expert); the per-branch interventions and
    the argmax agreement need ``model`` and the kept observations (``keep_obs``), and are
    computed on a seeded sample of at most ``max_states`` states.
    """
    if st.teacher_branch is None or st.teacher_action is None:
        return None
    rows = np.flatnonzero(st.teacher_branch >= 0)
    if rows.size == 0:
        return None
    br, ta, ep = st.teacher_branch[rows], st.teacher_action[rows], st.episode[rows]
    E = int(st.alpha.shape[1])
    info = None
    if E > 1:
        info = scenario_information(
            st.alpha[rows].argmax(1), br, E, len(BRANCHES), permutations=permutations,
            seed=seed, episode_ids=ep,
        )  # fmt: skip
    iv = None
    am_rows = am = None
    n_iv = 0
    if model is not None and E > 1 and st.state is not None:
        pick = sample_rows(rows.size, max_states, seed)
        sub = torch.from_numpy(rows[pick])
        probs = teacher_probs(model, _rows(st.obs(), sub), ta[pick], routing, temperature)
        iv = branch_interventions(probs.router, probs.forced, br[pick], ep[pick],
                                  list(model.expert_names), n_resamples=n_resamples,
                                  seed=seed)  # fmt: skip
        am_rows, am, n_iv = pick, probs.argmax, int(pick.size)
    counts = np.bincount(br, minlength=len(BRANCHES))
    return TeacherFigures(
        n_states=int(rows.size),
        actions=actions,
        branch_counts={n: int(c) for n, c in zip(BRANCHES, counts, strict=True) if c},
        agreement=agreement(st.action[rows], ta, br, am_rows, am),
        information=info,
        interventions=iv,
        intervention_states=n_iv,
    )
