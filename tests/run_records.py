"""The records of a run directory that two runs must share to be "the same run"."""

from __future__ import annotations

import json
from pathlib import Path

#: Fields that differ between identical runs (clock time, speed).
VOLATILE = ("wall", "sps")


def comparable_records(run: Path, types: tuple[str, ...] = ("episode", "update")) -> list[dict]:
    """``metrics.jsonl`` records of ``types``, without clock time, speed and the time split."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["type"] in types:
            out.append(
                {k: v for k, v in r.items() if k not in VOLATILE and not k.startswith("time/")}
            )
    return out
