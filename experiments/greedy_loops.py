"""Where greedy (or sampled) play of a checkpoint goes wrong, step by step (notebook entry 25).

Plays the first N E200 seeds one at a time with the teacher's advice computed beside the game,
classifies each state by how the hero got there (``still``, ``back``, ``revisit``, ``new``:
:mod:`nethack_moe.metrics.motion`) and counts, per kind, whether the action chosen there is the
hinted move and whether it is the teacher's. Also the targets of the moves that changed nothing.

    python experiments/greedy_loops.py checkpoints/strong.pt --episodes 10 --actions greedy
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys

import numpy as np
import torch
from nle import nethack as nh

from nethack_moe.envs.factory import SeedPlan
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.evaluation.loading import load_policy
from nethack_moe.evaluation.players import hint_actions
from nethack_moe.features.glyphs import GLYPH_GROUP
from nethack_moe.models.acting import Obs, act, gumbel_noise

#: (dy, dx) of the 8 moves (actions 1-8) and of the rush moves (9-16), NetHackScore-v0's order.
DIRS = [(-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]
CMAP_NAMES = {int(GLYPH_GROUP[nh.GLYPH_CMAP_OFF + i]): n for i, n in
              ((0, "stone"), (19, "floor"), (21, "corridor"), (15, "closed door"),
               (16, "closed door"), (12, "doorway"), *((i, "wall") for i in range(1, 12)))}  # fmt: skip


def play(path: str, episodes: int, greedy: bool) -> None:
    torch.set_num_threads(1)
    model, cfg, _ = load_policy(path)
    cfg.env.teacher = True
    gen = torch.Generator().manual_seed(0)
    kinds: collections.Counter = collections.Counter()
    cross: collections.Counter = collections.Counter()
    into: collections.Counter = collections.Counter()
    scores = []
    for s in range(episodes):
        with VectorEnv(cfg.env, 1, 0, SeedPlan("eval", base=100000 + s)) as venv:
            b = venv.buf
            obs = Obs(*(torch.from_numpy(a) for a in (b.state, b.crop, b.atoms)))
            pos: list[tuple[int, int, int]] = []
            while True:
                bl = b.blstats[0]
                p = (int(bl[nh.NLE_BL_Y]), int(bl[nh.NLE_BL_X]), int(bl[nh.NLE_BL_DEPTH]))
                noise = None if greedy else gumbel_noise((1, venv.n_actions), gen)
                with torch.no_grad():
                    a = int(act(model, obs, model.cfg.routing, model.cfg.temperature,
                                noise=noise).action[0])  # fmt: skip
                if pos:
                    k = ("still" if p == pos[-1] else "back" if len(pos) >= 2 and p == pos[-2]
                         else "revisit" if p in pos else "new")  # fmt: skip
                    kinds[k] += 1
                    hint = int(hint_actions(b.state)[0])
                    cross[(k, a == hint, a == int(b.teacher_action[0]))] += 1
                    if k == "still" and 1 <= a <= 16:
                        dy, dx = DIRS[(a - 1) % 8]
                        c = b.crop[0]
                        g = int(c[c.shape[0] // 2 + dy, c.shape[1] // 2 + dx])
                        into[CMAP_NAMES.get(g, f"group {g}")] += 1
                pos.append(p)
                venv.step(np.array([a]))
                done = venv.finished()
                if done:
                    scores += [e.score for e in done]
                    break
    n = sum(kinds.values())
    out = [f"{path} {'greedy' if greedy else 'sampled'}: mean {statistics.mean(scores):.1f} "
           f"over {len(scores)} episodes, {n} steps"]  # fmt: skip
    for k in ("still", "back", "revisit", "new"):
        m = kinds[k]
        hint = sum(v for (kk, h, _), v in cross.items() if kk == k and h)
        teach = sum(v for (kk, _, t), v in cross.items() if kk == k and t)
        neither = sum(v for (kk, h, t), v in cross.items() if kk == k and not h and not t)
        out.append(f"  {k:8s} {100 * m / n:5.1f} % of steps; there the action is the hinted move "
              f"{100 * hint / max(m, 1):5.1f} %, the teacher's {100 * teach / max(m, 1):5.1f} %, "
              f"neither {100 * neither / max(m, 1):5.1f} %")  # fmt: skip
    out.append(f"  moves that changed nothing, into: {dict(into.most_common(6))}")
    sys.stdout.write("\n".join(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--actions", choices=("greedy", "sampled"), default="greedy")
    a = ap.parse_args()
    play(a.checkpoint, a.episodes, a.actions == "greedy")


if __name__ == "__main__":
    main()
