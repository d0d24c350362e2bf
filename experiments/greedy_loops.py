"""Where greedy (or sampled) play of a checkpoint goes wrong, step by step (notebook entry 25).

Plays the first N E200 seeds with the teacher's advice logged beside the game, classifies each
state by how the hero got there (``still``, ``back``, ``revisit``, ``new``:
:func:`nethack_moe.metrics.motion.motion_kinds`) and counts, per kind, whether the action chosen
there is the hinted move and whether it is the teacher's. Also what the moves that changed
nothing walked into.

    python experiments/greedy_loops.py checkpoints/strong.pt --episodes 10 --actions greedy
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np
from nle import nethack as nh
from nle.env.tasks import TASK_ACTIONS

from nethack_moe.evaluation.evaluate import teacher_env
from nethack_moe.evaluation.loading import load_policy
from nethack_moe.evaluation.players import ModelPlayer
from nethack_moe.evaluation.runner import play
from nethack_moe.features import ATOM_INDEX
from nethack_moe.features.glyphs import GLYPH_GROUP
from nethack_moe.game.actions import MOVE_DIR, action_label
from nethack_moe.game.navigation import DIRS
from nethack_moe.metrics.motion import MOTION_KINDS, motion_kinds

CMAP_NAMES = {int(GLYPH_GROUP[nh.GLYPH_CMAP_OFF + i]): n for i, n in
              ((0, "stone"), (19, "floor"), (21, "corridor"), (15, "closed door"), (13, "open door"), (14, "open door"),
               (16, "closed door"), (12, "doorway"), *((i, "wall") for i in range(1, 12)))}  # fmt: skip


def report(path: str, episodes: int, greedy: bool) -> str:
    """The per-kind counts of one checkpoint's play on the first ``episodes`` E200 seeds."""
    model, cfg, _ = load_policy(path)
    player = ModelPlayer(model, greedy=greedy)
    res = play(player, teacher_env(cfg.env), episodes, num_envs=1, workers=0,
               collect_states=True, keep_obs=True)  # fmt: skip
    st = res.states
    assert st is not None and st.crop is not None and st.teacher_action is not None
    kinds = motion_kinds(st)
    counted = kinds >= 0
    n = int(counted.sum())
    mean = np.mean([r["score"] for r in res.records])
    out = [f"{path} {'greedy' if greedy else 'sampled'}: mean {mean:.1f} over "
           f"{len(res.records)} episodes, {n} steps"]  # fmt: skip
    hint, teach = st.action == st.hint, st.action == st.teacher_action
    for i, k in enumerate(MOTION_KINDS):
        rows = kinds == i
        m = max(int(rows.sum()), 1)
        out.append(
            f"  {k:8s} {100 * rows.sum() / n:5.1f} % of steps; there the action is the hinted move "
            f"{100 * (rows & hint).sum() / m:5.1f} %, the teacher's {100 * (rows & teach).sum() / m:5.1f} %, "
            f"neither {100 * (rows & ~hint & ~teach).sum() / m:5.1f} %"
        )  # fmt: skip
    into: collections.Counter = collections.Counter()
    c = st.crop.shape[-1] // 2
    for r in np.flatnonzero((kinds == 0) & (MOVE_DIR[st.action] >= 0)):
        dy, dx = DIRS[MOVE_DIR[st.action[r]]]
        g = int(st.crop[r, c + dy, c + dx])
        into[CMAP_NAMES.get(g, f"group {g}")] += 1
    out.append(f"  moves that changed nothing, into: {dict(into.most_common(6))}")
    who = (("the player", st.action), ("the teacher", st.teacher_action))
    for name, acts in who:
        out.append(f"  in still states, {name} pressed: {_pressed(acts[kinds == 0])}")
    asked = st.atoms[:, ATOM_INDEX["question_prompt"]].astype(bool)
    out.append(f"  a question asked in {100 * asked.mean():.1f} % of steps:")
    for name, acts in who:
        out.append(f"    {name} pressed: {_pressed(acts[asked])}")
    return "\n".join(out)


def _pressed(acts: np.ndarray) -> dict[str, int]:
    """The 6 actions pressed most often, by label (``none``: no action, e.g. no advice)."""
    names = ("none" if a < 0 else action_label(TASK_ACTIONS[a]) for a in acts)
    return dict(collections.Counter(names).most_common(6))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--actions", choices=("greedy", "sampled"), default="greedy")
    a = ap.parse_args()
    sys.stdout.write(report(a.checkpoint, a.episodes, a.actions == "greedy") + "\n")


if __name__ == "__main__":
    main()
