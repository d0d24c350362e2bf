"""Behaviour fingerprint (issue 20): a seeded smoke run and a seeded evaluation, through the CLI,
equal what they were before the package move (tests/data/identity/, written by
`python tests/identity_record.py`).

The tensors are compared bit for bit on the CPU kind they were recorded on; on another kind
(matmul kernels differ), the records and the evaluation are compared to 1e-4."""

from __future__ import annotations

import json
import math
from pathlib import Path

import identity_record as rec
import torch

DATA = Path(__file__).parent / "data" / "identity"


def _close(a: object, b: object, exact: bool, where: str = "") -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a.keys() ^ b.keys())}"
        for k in a:
            _close(a[k], b[k], exact, f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, exact, f"{where}/{i}")
    elif isinstance(a, float) and isinstance(b, float) and not exact:
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_smoke_run_and_evaluation_equal_the_recorded_fingerprint(tmp_path):
    want = json.loads((DATA / "fingerprint.json").read_text())
    got = json.loads(json.dumps(rec.compute(tmp_path)))
    same_cpu = want["cpu"] == got["cpu"]
    _close(got["records"], want["records"], same_cpu, "records")
    _close(got["evaluate"], want["evaluate"], same_cpu, "evaluate")
    assert got["final_checkpoint"] == want["final_checkpoint"]
    assert got["tensors"].keys() == want["tensors"].keys()
    if same_cpu:
        assert got["tensors"] == want["tensors"]


def test_the_fingerprint_sees_a_changed_tensor(tmp_path):
    """The digest is of the bytes: one flipped weight changes it."""
    path = tmp_path / "c.pt"
    sd = {"w": torch.zeros(3), "n": 1}
    torch.save(sd, path)
    before = rec.tensor_digests(path)
    sd["w"][1] = 1e-30
    torch.save(sd, path)
    after = rec.tensor_digests(path)
    assert before["/w"] != after["/w"] and before["/n"] == after["/n"] == "1"
