"""How much of the scripted teacher's choice the student's hint input already names (notebook
entry 27): on the diver's own play of the first N E200 seeds, per teacher branch, how often its
action is the hinted move, and in the explore branch how often it moves in the hint's direction
(a step or a rush). With checkpoints: how often each one's argmax is the diver's action on these
states (the diver's own states, which no student played: a held-out imitation figure).

    python experiments/teacher_vs_hint.py --episodes 10 [CHECKPOINT ...]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from nethack_moe.envs.factory import EnvConfig
from nethack_moe.envs.teacher import BRANCHES
from nethack_moe.evaluation.evaluate import teacher_env
from nethack_moe.evaluation.loading import load_policy
from nethack_moe.evaluation.players import make_baseline
from nethack_moe.evaluation.runner import E200_SEED_START, RolloutResult, play
from nethack_moe.game.actions import MOVE_DIR, N_TASK_ACTIONS, RUSH_ACTIONS


def diver_play(
    episodes: int, seed_start: int = E200_SEED_START, num_envs: int = 1, workers: int = 0
) -> RolloutResult:
    """The diver's own play, every state logged with the policy inputs and its advice."""
    return play(make_baseline("diver", N_TASK_ACTIONS), teacher_env(EnvConfig()), episodes,
                seed_start=seed_start, num_envs=num_envs, workers=workers, collect_states=True,
                keep_obs=True, progress=False)  # fmt: skip


def per_branch(hit: np.ndarray, branch: np.ndarray) -> str:
    """``hit [S]`` bool as a percentage per teacher branch (``branch [S]``), the branches seen."""
    return ", ".join(f"{n} {100 * hit[branch == b].mean():.1f}"
                     for b, n in enumerate(BRANCHES) if (branch == b).any())  # fmt: skip


def report(episodes: int, checkpoints: list[str]) -> str:
    """The per-branch agreement of the diver's action with the hint (and the checkpoints'
    argmax), as text."""
    res = diver_play(episodes)
    st = res.states
    assert st is not None and st.teacher_action is not None and st.teacher_branch is not None
    ta, hint = st.teacher_action, st.hint
    same, hinted = ta == hint, hint >= 0
    t_dir = np.where(ta >= 0, MOVE_DIR[np.maximum(ta, 0)], -1)
    h_dir = np.where(hinted, MOVE_DIR[np.maximum(hint, 0)], -2)
    out = [f"diver: mean {np.mean([r['score'] for r in res.records]):.1f} over "
           f"{len(res.records)} episodes, {len(ta)} steps; its action is the hinted move in "
           f"{100 * same.mean():.1f} % of steps"]  # fmt: skip
    for b, name in enumerate(BRANCHES):
        rows = st.teacher_branch == b
        if rows.any():
            out.append(f"  {name:10s} {int(rows.sum()):6d} steps: the hinted move {100 * same[rows].mean():5.1f} %, "
                       f"a hint given {100 * hinted[rows].mean():5.1f} %")  # fmt: skip
    rows = st.teacher_branch == BRANCHES.index("explore")
    out.append(f"  explore: in the hint's direction (step or rush) {100 * (t_dir == h_dir)[rows].mean():.1f} %, "
               f"a rush {100 * np.isin(ta[rows], RUSH_ACTIONS).mean():.1f} %")  # fmt: skip
    for path in checkpoints:
        assert st.state is not None and st.crop is not None
        model, _, _ = load_policy(path)
        with torch.no_grad():
            obs = (torch.from_numpy(x) for x in (st.state, st.crop, st.atoms))
            am = model(*obs).logits.argmax(-1).numpy()  # [S]
        agree = am == ta
        out.append(
            f"{path}: argmax = the diver's action on {100 * agree.mean():.1f} % of its states; "
            f"{per_branch(agree, st.teacher_branch)}"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("checkpoints", nargs="*")
    a = ap.parse_args()
    sys.stdout.write(report(a.episodes, a.checkpoints) + "\n")


if __name__ == "__main__":
    main()
