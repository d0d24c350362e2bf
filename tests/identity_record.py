"""Record (or recompute) the behaviour fingerprint that the layers refactor must not change.

Through the CLI only, so that it does not depend on where modules live:
- a seeded `smoke` run: its metrics records without wall times, its final checkpoint's tensors;
- a seeded 4-episode `evaluate` of the shipped checkpoint and the baselines.

    python tests/identity_record.py            # rewrite tests/data/identity/ (before a move)
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "identity"
VOLATILE = ("wall", "sps", "time/", "seconds", "elapsed", "machine", "created", "version", "path",
            "out_dir", "config_yaml", "metrics_offset")  # fmt: skip


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "nethack_moe", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def _volatile(key: str) -> bool:
    return any(key.startswith(v) or key.endswith(v) for v in VOLATILE)


def _strip(x: object) -> object:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if not _volatile(str(k))}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def smoke_records(run: Path) -> list[dict]:
    """The episode and update records of a run, without wall-clock figures."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [_strip(r) for r in rows if r.get("type") in ("episode", "update")]  # type: ignore[misc]


def tensor_digests(ckpt: Path) -> dict[str, str]:
    """sha256 of every tensor in the checkpoint (model, optimizer, normaliser) and the repr of
    every other leaf but the wall-clock ones, by path."""
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    out: dict[str, str] = {}

    def walk(prefix: str, x: object) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().reshape(-1).contiguous()
            raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
            out[prefix] = f"{tuple(x.shape)}:{x.dtype}:" + hashlib.sha256(raw).hexdigest()
        elif isinstance(x, dict):
            for k, v in x.items():
                if not _volatile(str(k)):
                    walk(f"{prefix}/{k}", v)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(f"{prefix}/{i}", v)
        else:
            out[prefix] = repr(x)

    walk("", payload)
    return out


def compute(tmp: Path) -> dict[str, object]:
    """Run the smoke training and the evaluation in tmp; return the fingerprint."""
    _cli("train", "--config", "smoke", "--set", f"run.out_dir={tmp}", "--set", "run.name=id",
         "--set", "run.seed=7", "--set", "run.device=cpu")  # fmt: skip
    run = tmp / "id"
    final = sorted((run / "checkpoints").glob("ep_*.pt"))[-1]
    ev = tmp / "eval.json"
    _cli("evaluate", str(ROOT / "checkpoints" / "s500_final.pt"), "--baseline", "hint-follower",
         "--baseline", "random", "--episodes", "4", "--workers", "0", "--max-steps", "120",
         "--device", "cpu", "--out", str(ev))  # fmt: skip
    return {
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "records": smoke_records(run),
        "final_checkpoint": final.name,
        "tensors": tensor_digests(final),
        "evaluate": _strip(json.loads(ev.read_text())),
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fp = compute(Path(d))
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "fingerprint.json").write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
