"""Numbers, shares and confidence intervals as text: the one set of formatters of the report,
``compare``, the ``evaluate`` / ``analyze`` output, ``analysis.md`` and the specialization verdict.

Conventions: a missing value (``None``) prints as :data:`MISSING` (``–``); a value that rounds to
zero prints without a minus sign; ``nan`` / ``inf`` print as such; what is not a number prints as
``str(v)``. A confidence interval is ``[lo, hi]`` with the decimals of its estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: What a missing value prints as.
MISSING = "–"


def num(v: Any, nd: int = 2) -> str:
    """``v`` with ``nd`` decimals (``–`` for ``None``, no ``-0.00`` for tiny negatives)."""
    if v is None:
        return MISSING
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return str(f)
    if abs(f) < 0.5 * 10.0**-nd:
        f = 0.0
    return f"{f:.{nd}f}"


def pct(v: Any, nd: int = 1) -> str:
    """A share as a percentage, ``0.25`` -> ``25.0 %`` (``–`` for ``None``)."""
    return MISSING if v is None else f"{100 * float(v):.{nd}f} %"


def ci(v: Any, nd: int = 2) -> str:
    """A confidence interval ``[lo, hi]`` (``–`` when there is none)."""
    return MISSING if not v else f"[{num(v[0], nd)}, {num(v[1], nd)}]"


def with_ci(text: str, v: Any, nd: int = 2) -> str:
    """``text [lo, hi]``, or ``text`` alone when there is no interval."""
    return text if not v else f"{text} {ci(v, nd)}"


def pm(mean: Any, sd: Any, nd: int = 4) -> str:
    """``mean ± sd`` (``–`` without a mean)."""
    return MISSING if mean is None else f"{num(mean, nd)} ± {num(sd, nd)}"


def signed(v: float | None, nd: int = 2) -> str:
    """A change with its sign, ``+0.25`` (``–`` for ``None``)."""
    return MISSING if v is None else f"{v:+.{nd}f}"


def rel_change(a: float | None, b: float | None) -> str:
    """`` (+12.5 %)``: the change from ``a`` to ``b`` relative to ``a``; empty when ``a`` is 0 or
    missing, or the change is over 1000 % (meaningless)."""
    if a is None or b is None or a == 0 or abs(b - a) > 10 * abs(a):
        return ""
    return f" ({100 * (b - a) / abs(a):+.1f} %)"


def duration(s: float | None) -> str:
    """Seconds as ``1h 02m 03s`` (``–`` for ``None``)."""
    if s is None:
        return MISSING
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s"


def file_size(n: int) -> str:
    """Bytes as ``512 B``, ``2.0 KiB`` ... ``GiB``."""
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return f"{n} B"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table (left-aligned columns)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
