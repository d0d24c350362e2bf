"""Can the student's architecture imitate the diver from its own inputs? Pure behaviour cloning
(cross-entropy to the diver's action, no RL) on the diver's states of training seeds 1000..,
then the argmax agreement on the diver's states of the first 10 E200 seeds, the held-out figure
of ``experiments/teacher_vs_hint.py`` (notebook entry 27).

    python experiments/bc_probe.py --episodes 40 --epochs 15 --play 20 model.last_move_inputs=true model.still_inputs=true

``--play N``: then the cloned policy plays the first N E200 seeds, greedy and sampled (softmax
routing, T = 1), beside the hint follower on the same seeds.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from teacher_vs_hint import diver_play, per_branch

from nethack_moe.config.train import make_config
from nethack_moe.envs.factory import EnvConfig
from nethack_moe.evaluation.evaluate import teacher_env
from nethack_moe.evaluation.players import ModelPlayer, make_baseline
from nethack_moe.evaluation.runner import play
from nethack_moe.features import FeatureSpec
from nethack_moe.game.actions import N_TASK_ACTIONS
from nethack_moe.models.policy import ActorCritic, build_model


def diver_states(episodes: int, seed_start: int) -> list[torch.Tensor]:
    """``[state, crop, atoms, teacher action, teacher branch]`` of the diver's own play."""
    st = diver_play(episodes, seed_start, num_envs=4, workers=2).states
    assert st is not None and st.state is not None and st.crop is not None
    assert st.teacher_action is not None and st.teacher_branch is not None
    ok = st.teacher_action >= 0
    cols = (st.state, st.crop, st.atoms, st.teacher_action, st.teacher_branch)
    return [torch.from_numpy(np.asarray(x)[ok]) for x in cols]


def agreement(model: ActorCritic, data: list[torch.Tensor]) -> torch.Tensor:
    """``[S]`` bool: the argmax is the diver's action."""
    model.eval()
    with torch.no_grad():
        return model(*data[:3], "softmax", 1.0).logits.argmax(-1) == data[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=40, help="training episodes of diver play")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--play", type=int, default=0, help="E200 seeds the cloned policy plays")
    ap.add_argument("overrides", nargs="*", help="config overrides (preset kickstart)")
    a = ap.parse_args()
    torch.manual_seed(0)
    train, test = diver_states(a.episodes, 1000), diver_states(10, 100000)
    sys.stdout.write(f"{len(train[3])} training states, {len(test[3])} held-out states\n")
    model = build_model(make_config("kickstart", a.overrides).model, FeatureSpec(), N_TASK_ACTIONS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    for ep in range(1, a.epochs + 1):
        model.train()
        for idx in torch.randperm(len(train[3])).split(256):
            out = model(*(x[idx] for x in train[:3]), "softmax", 1.0)
            loss = F.cross_entropy(out.logits, train[3][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ep % 5 == 0 or ep == a.epochs:
            ag = agreement(model, test)
            per = per_branch(ag.numpy(), test[4].numpy())
            sys.stdout.write(f"epoch {ep}: training states {100 * agreement(model, train).float().mean():.1f} %, "
                             f"held-out {100 * ag.float().mean():.1f} %; {per}\n")  # fmt: skip
            sys.stdout.flush()
    if a.play:
        model.eval()
        players = {"greedy": ModelPlayer(model, greedy=True, routing="softmax", temperature=1.0),
                   "sampled": ModelPlayer(model, routing="softmax", temperature=1.0),
                   "hint follower": make_baseline("hint-follower", N_TASK_ACTIONS)}  # fmt: skip
        for name, player in players.items():
            res = play(
                player, teacher_env(EnvConfig()), a.play, num_envs=4, workers=2, progress=False
            )
            mean = np.mean([r["score"] for r in res.records])
            sys.stdout.write(f"{name}: mean {mean:.1f} over the first {a.play} E200 seeds\n")


if __name__ == "__main__":
    main()
