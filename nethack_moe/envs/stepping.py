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
_SCORE, _TIME = nh.NLE_BL_SCORE, nh.NLE_BL_TIME


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
        self.core = env.nethack._pynethack  # the C core; Nethack.step is core.step + core.done
        self.observation = env.nethack._obs  # its observation buffers (copy=False: fixed)
        self.keys = (env._blstats_index, env._internal_index, env._program_state_index)
        self.actions = env.actions
        self.penalty_step = env.penalty_step
        self.penalty_time = env.penalty_time

    def __call__(self, action: int) -> tuple[float, bool, bool, int]:
        """One step: (reward, done, truncated, end status); the observation is in the buffers.

        The statements of ``NLE.step`` in order, with ``NetHackScore``'s reward and end status
        inlined (``_check_abort`` is ``_steps >= _max_episode_steps`` for this class)."""
        env, core = self.env, self.core
        i_bl, i_internal, i_state = self.keys
        bl = env.last_observation[i_bl]
        # the wrapper copies the last observation for the reward; only these two values are read
        old_score, old_time = int(bl[_SCORE]), int(bl[_TIME])
        core.step(self.actions[action])
        observation, done = self.observation, core.done()
        truncated = env._steps >= env._max_episode_steps
        internal = observation[i_internal]
        if (observation[i_state][0] == 1 or not env._allow_all_modes) and not done:
            if internal[3] or internal[2] or internal[1]:  # else _perform_known_steps is a no-op
                observation, done = env._perform_known_steps(observation, done, exceptions=True)
        env._steps += 1
        env.last_observation = observation
        if done:
            status = StepStatus.DEATH
        elif env._steps >= env._max_episode_steps:
            status = StepStatus.ABORTED
        else:
            status = StepStatus.RUNNING
        # NetHackScore._reward_fn: score difference plus the constant frozen-step penalty
        bl = observation[i_bl]
        new_time = int(bl[_TIME])
        env._frozen_steps = env._frozen_steps + 1 if old_time == new_time else 0
        penalty = self.penalty_step if env._frozen_steps > 0 else 0
        penalty += float(new_time - old_time) * self.penalty_time
        if core.in_normal_game():
            reward = float(int(bl[_SCORE]) - old_score) + penalty
        else:  # blstats are zero before and after a game
            reward = float(0.0 + penalty)
        if status and not done:
            env._quit_game(observation, done)  # NLE's step cap: end the game the wrapper's way
            done = True
        return reward, bool(done), bool(truncated), int(status)


def stepper(env: Any, direct: bool = True) -> GymStep:
    """The fastest exact stepper for ``env``: :class:`CoreStep` where it applies."""
    return CoreStep(env) if direct and CoreStep.supports(env) else GymStep(env)
