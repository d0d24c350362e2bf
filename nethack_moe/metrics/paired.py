"""Paired differences and the readers of stored numbers that every verdict figure uses.

:class:`PairedDiff` is a score change over the same seeds with its bootstrap CI (a finding only when
the CI excludes 0); ``_float`` and the per-seed readers turn what a JSON file stored back into finite
floats or ``None``, so that a missing or non-finite value reads as "not measured".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nethack_moe.core.formatting import MISSING
from nethack_moe.metrics import stats


def _float(v: Any) -> float | None:
    """``v`` as a finite float; ``None`` when missing, not a number or not finite."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ------------------------------------------------------------------------------ paired differences
@dataclass(frozen=True)
class PairedDiff:
    """``mean(b - a)`` over the seeds both sides played, with its bootstrap CI
    (:func:`nethack_moe.metrics.stats.paired_diff_ci`)."""

    diff: float | None
    ci: tuple[float, float] | None
    """``None``: no interval (fewer than 2 pairs, or the bootstrap failed)."""
    n: int
    """Seeds in the pairs."""

    @classmethod
    def of(
        cls,
        a: Mapping[int, float | None],
        b: Mapping[int, float | None],
        *,
        n_resamples: int = 2000,
        seed: int = 0,
    ) -> PairedDiff:
        """The difference of per-seed values ``b[s] - a[s]`` over the seeds where both have a
        finite value (in seed order)."""

        common = sorted(
            s for s in set(a) & set(b) if _float(a[s]) is not None and _float(b[s]) is not None
        )
        if not common:
            return cls(None, None, 0)
        x = [float(a[s]) for s in common]  # type: ignore[arg-type]
        y = [float(b[s]) for s in common]  # type: ignore[arg-type]
        d, ci = stats.paired_diff_ci(x, y, n_resamples=n_resamples, seed=seed)
        return cls(_float(d), _interval(ci) if len(common) >= 2 else None, len(common))

    @property
    def sign(self) -> int:
        """+1 when the CI lies above 0, -1 below, 0 when it contains 0 or there is none."""
        if self.ci is None:
            return 0
        lo, hi = self.ci
        return 1 if lo > 0 else (-1 if hi < 0 else 0)

    def text(self, nd: int = 1) -> str:
        """``+3.0 [1.0, 5.0]``, ``+3.0 (no CI)``, or ``–``."""
        if self.diff is None:
            return MISSING
        d = f"{self.diff:+.{nd}f}"
        if self.ci is None:
            return f"{d} (no CI)"
        return f"{d} [{self.ci[0]:+.{nd}f}, {self.ci[1]:+.{nd}f}]"

    def to_json(self) -> dict[str, Any]:
        return {"diff": self.diff, "ci": list(self.ci) if self.ci else None, "n": self.n}

    @classmethod
    def from_json(cls, d: Any) -> PairedDiff | None:
        if not isinstance(d, Mapping):
            return None
        return cls(_float(d.get("diff")), _interval(d.get("ci")), int(d.get("n") or 0))


def _interval(ci: Any) -> tuple[float, float] | None:
    """``[lo, hi]`` as a tuple of finite floats; ``None`` for a missing or failed interval."""
    if ci is None or isinstance(ci, (str, bytes)):
        return None
    try:
        lo, hi = ci
    except (TypeError, ValueError):
        return None
    flo, fhi = _float(lo), _float(hi)
    return None if flo is None or fhi is None else (flo, fhi)


def _by_seed(seeds: Sequence[int], values: Sequence[float | None]) -> dict[int, float | None]:
    return {int(s): (None if v is None else float(v)) for s, v in zip(seeds, values, strict=True)}


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else ()


def _floats(v: Any) -> tuple[float | None, ...]:
    return tuple(_float(x) for x in v) if isinstance(v, (list, tuple)) else ()
