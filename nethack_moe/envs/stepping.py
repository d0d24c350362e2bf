"""Stepping an NLE env below its gymnasium wrapper, with exactly the wrapper's results.

``nle.env.base.NLE.step`` spends about as long in Python as NetHack's C core spends on the step:
it copies the six observation arrays of the last step (for the reward function), builds an
observation dict and an info dict, and asks the core how the game ended. The vector env needs
none of that: it reads the observation from NLE's own buffers, which the C core overwrites in
place. :class:`CoreStep` does what ``NetHackScore.step`` does, in the same order and with the same
arithmetic, keeping the wrapper's own state (step counter, frozen-step counter, last observation)
up to date, so the gym path and this one can be mixed and give the same trajectories
(``tests/test_stepping.py`` checks it on seeded games through deaths and NLE's step cap).

Only ``NetHackScore`` itself (and its constant step penalty) is stepped this way; every other task
(its own reward or episode end) goes through the gymnasium ``step`` (:class:`GymStep`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nle import nethack as nh
from nle.env.base import NLE
from nle.env.tasks import NetHackScore

#: End statuses of the NLE tasks (``info["end_status"]``).
StepStatus = NLE.StepStatus
#: Observation keys the vector env reads, in this order.
KEYS = ("glyphs", "blstats", "message", "tty_chars")


class GymStep:
    """One env stepped through its gymnasium ``step``; observations stay in NLE's buffers."""

    def __init__(self, env: Any):
        self.env = env
        self.buffers: tuple[np.ndarray, ...] = ()

    def reset(self) -> tuple[np.ndarray, ...]:
        """Reset the game (seed it first); returns NLE's live ``KEYS`` buffers."""
        obs, _ = self.env.reset()
        self.buffers = tuple(obs[k] for k in KEYS)
        return self.buffers

    def __call__(self, action: int) -> tuple[float, bool, bool, int]:
        """One step: (reward, done, truncated, end status); the observation is in the buffers."""
        _, reward, done, truncated, info = self.env.step(action)
        return float(reward), bool(done), bool(truncated), int(info["end_status"])


class CoreStep(GymStep):
    """``NetHackScore.step`` without the gymnasium wrapper's copies: same results, bit for bit."""

    @staticmethod
    def supports(env: Any) -> bool:
        """Whether ``env`` is exactly a NetHackScore env with the constant step penalty."""
        return type(env) is NetHackScore and env.penalty_mode == "constant"

    def __init__(self, env: Any):
        if not self.supports(env):
            raise TypeError(f"CoreStep steps NetHackScore only, not {type(env).__name__}")
        super().__init__(env)
        self.nethack = env.nethack
        self.actions = env.actions
        self.penalty_step = env.penalty_step
        self.penalty_time = env.penalty_time

    def __call__(self, action: int) -> tuple[float, bool, bool, int]:
        """One step: (reward, done, truncated, end status); the observation is in the buffers."""
        env = self.env
        bl = env.last_observation[env._blstats_index]
        # the wrapper copies the last observation for the reward; only these two values are read
        old_score, old_time = int(bl[nh.NLE_BL_SCORE]), int(bl[nh.NLE_BL_TIME])
        observation, done = self.nethack.step(self.actions[action])
        truncated = env._check_abort(observation)
        internal = observation[env._internal_index]
        game_over = observation[env._program_state_index][0] == 1
        if (game_over or not env._allow_all_modes) and not done:
            if internal[3] or internal[2] or internal[1]:  # else _perform_known_steps is a no-op
                observation, done = env._perform_known_steps(observation, done, exceptions=True)
        env._steps += 1
        env.last_observation = observation
        status = StepStatus.DEATH if done else self._end_status(observation)
        reward = self._reward(observation, old_score, old_time)
        if status and not done:
            env._quit_game(observation, done)  # NLE's step cap: end the game the wrapper's way
            done = True
        return reward, bool(done), bool(truncated), int(status)

    def _end_status(self, observation: tuple) -> int:
        """``NLE._get_end_status`` of a running game (NetHackScore has no task end)."""
        return StepStatus.ABORTED if self.env._check_abort(observation) else StepStatus.RUNNING

    def _reward(self, observation: tuple, old_score: int, old_time: int) -> float:
        """``NetHackScore._reward_fn``: score difference plus the constant frozen-step penalty."""
        env = self.env
        bl = observation[env._blstats_index]
        new_time = int(bl[nh.NLE_BL_TIME])
        env._frozen_steps = env._frozen_steps + 1 if old_time == new_time else 0
        penalty = self.penalty_step if env._frozen_steps > 0 else 0
        penalty += float(new_time - old_time) * self.penalty_time
        if not self.nethack.in_normal_game():  # blstats are zero before and after a game
            return float(0.0 + penalty)
        return float(int(bl[nh.NLE_BL_SCORE]) - old_score) + penalty


def stepper(env: Any, direct: bool = True) -> GymStep:
    """The fastest exact stepper for ``env``: :class:`CoreStep` where it applies."""
    return CoreStep(env) if direct and CoreStep.supports(env) else GymStep(env)
