"""Reward scaling by the running variance of the discounted return (SB3's ``VecNormalize``)."""

from __future__ import annotations

import math

import numpy as np
import torch


class RunningMeanStd:
    """Running variance of the discounted return, for reward scaling (as in SB3 VecNormalize)."""

    def __init__(self, n: int, gamma: float):
        self.gamma = gamma
        self.ret = np.zeros(n, np.float64)
        self.mean = 0.0
        self.var = 1.0
        self.count = 1e-4

    def scale(
        self, reward: np.ndarray, done: np.ndarray, lo: int = 0, hi: int | None = None
    ) -> np.ndarray:
        """Scale the rewards of envs ``lo..hi-1`` and update the running statistics."""
        ret = self.ret[lo:hi]
        ret *= self.gamma
        ret += reward
        b_mean, b_var, b_n = float(ret.mean()), float(ret.var()), ret.size
        delta = b_mean - self.mean
        tot = self.count + b_n
        self.mean += delta * b_n / tot
        m2 = self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / tot
        self.var = m2 / tot
        self.count = tot
        ret[done] = 0.0
        return reward / math.sqrt(self.var + 1e-8)

    def state(self) -> dict:
        return {
            "ret": torch.from_numpy(self.ret.copy()),
            "mean": self.mean,
            "var": self.var,
            "count": self.count,
        }

    def load(self, s: dict) -> None:
        self.ret = s["ret"].numpy().astype(np.float64)
        self.mean, self.var, self.count = float(s["mean"]), float(s["var"]), float(s["count"])
