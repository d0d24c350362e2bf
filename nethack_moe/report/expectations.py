"""Expectations of a config (``expectations:``, metric -> target) checked against the report's
named figures (:func:`nethack_moe.report.data.report_metrics`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

_TARGET_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<|≥|≤)\s*(-?[0-9.eE+]+)\s*$")
_RANGE_RE = re.compile(r"^\s*\[?\s*(-?[0-9.eE+]+)\s*(?:\.\.|–|-|to|,)\s*(-?[0-9.eE+]+)\s*\]?\s*$")


def check_expectation(target: Any, actual: float | None) -> tuple[str, str]:
    """``(status, target text)`` of one expectation; status ``met``, ``not met``, ``no data``
    or ``unparsed``. Targets: ``">= x"``, ``"> x"``, ``"<= x"``, ``"< x"``, ``"== x"``,
    ``"a..b"`` (inclusive range) or ``{"min": a, "max": b}``. A bare number is ambiguous (at least?
    at most?) and is not guessed.
    """
    text = str(target)
    lo: float | None = None
    hi: float | None = None
    op = None
    try:
        if isinstance(target, dict):
            lo = float(target["min"]) if target.get("min") is not None else None
            hi = float(target["max"]) if target.get("max") is not None else None
            text = " and ".join(
                t
                for t in ([f">= {lo:g}"] if lo is not None else [])
                + ([f"<= {hi:g}"] if hi is not None else [])
            )
            if lo is None and hi is None:
                return "unparsed", text
        elif isinstance(target, str) and (m := _TARGET_RE.match(target)):
            op, val = m.group(1), float(m.group(2))
            op = {"≥": ">=", "≤": "<="}.get(op, op)
            lo = val
        elif isinstance(target, str) and (m := _RANGE_RE.match(target)):
            lo, hi = sorted((float(m.group(1)), float(m.group(2))))
            text = f"{lo:g} .. {hi:g}"
        else:
            return "unparsed", text
    except (ValueError, KeyError, TypeError):
        return "unparsed", text
    if actual is None or not math.isfinite(actual):
        return "no data", text
    if op is not None:
        assert lo is not None
        ok = {
            ">=": actual >= lo,
            ">": actual > lo,
            "<=": actual <= lo,
            "<": actual < lo,
            "==": math.isclose(actual, lo, rel_tol=1e-9, abs_tol=1e-12),
            "!=": not math.isclose(actual, lo, rel_tol=1e-9, abs_tol=1e-12),
        }[op]
    else:
        ok = (lo is None or actual >= lo) and (hi is None or actual <= hi)
    return ("met" if ok else "not met"), text


def known_metrics_text(metrics: dict[str, Any], phase_names: Sequence[str]) -> str:
    """One sentence listing the metric names an expectation may use."""
    prefixes = ["first_phase", "final_phase", *phase_names]
    per_phase = sorted(
        {k[len(p) + 1 :] for k in metrics for p in prefixes if k.startswith(p + "_")}
    )
    run_level = sorted(k for k in metrics if not any(k.startswith(p + "_") for p in prefixes))
    return (
        "Known metrics: `<phase>_<figure>` for phase in "
        + ", ".join(f"`{p}`" for p in dict.fromkeys(prefixes))
        + " and figure in "
        + ", ".join(f"`{f}`" for f in per_phase)
        + "; run-level: "
        + ", ".join(f"`{k}`" for k in run_level)
        + "."
    )
