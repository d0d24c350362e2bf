"""Whether two runs are the same run: their episode and update records, without clock time, speed
and the time split, and without fields that only one of them writes (a newer schema).

``python experiments/same_records.py RUN_A/metrics.jsonl[.gz] RUN_B/metrics.jsonl[.gz]``
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path


def _load(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [json.loads(line) for line in f]


def _strip(r: dict, keep: set[str]) -> str:
    return json.dumps({k: r[k] for k in sorted(keep) if k in r}, sort_keys=True)


def main() -> int:
    a, b = (_load(Path(p)) for p in sys.argv[1:3])
    same = True
    for kind in ("episode", "update"):
        ra = [r for r in a if r["type"] == kind]
        rb = [r for r in b if r["type"] == kind]
        keys_a = {k for r in ra for k in r}
        keys_b = {k for r in rb for k in r}
        keep = {
            k for k in keys_a & keys_b if k not in ("wall", "sps") and not k.startswith("time/")
        }
        diff = [
            i
            for i, (x, y) in enumerate(zip(ra, rb, strict=False))
            if _strip(x, keep) != _strip(y, keep)
        ]
        ok = len(ra) == len(rb) and not diff
        same &= ok
        only = sorted(keys_a ^ keys_b)
        verdict = (
            "identical"
            if ok
            else f"first difference at record {diff[0] if diff else min(len(ra), len(rb))}"
        )
        extra = f"; in one run only: {', '.join(only)}" if only else ""
        sys.stdout.write(
            f"{kind}: {len(ra)} vs {len(rb)} records, {len(keep)} fields compared, {verdict}{extra}\n"
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
