"""Fault 6: untrusted checkpoints (and YAML inputs) never run code.

Each hostile file would create a marker file when loaded unsafely (checked first, so the payloads are
known to be live); loading it through ``load_checkpoint``, ``nethack-moe train --resume`` (in this
process and as a real subprocess) and, when it exists, ``nethack-moe evaluate`` must fail with exit
status 2 and leave no marker."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from rel_helpers import Run, train_args

from nethack_moe import cli
from nethack_moe.runs.checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, load_checkpoint


class _Touch:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _payload(marker: Path) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": _Touch(marker)}


def _raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_payload(marker), protocol=2))


def _torch_save(path: Path, marker: Path) -> None:
    torch.save(_payload(marker), path)


def _unsafe_load_raw(path: Path) -> None:
    pickle.loads(path.read_bytes())


def _unsafe_load_torch(path: Path) -> None:
    torch.load(path, weights_only=False)


KINDS = {
    "raw pickle": (_raw_pickle, _unsafe_load_raw),
    "torch.save": (_torch_save, _unsafe_load_torch),
}


@pytest.fixture(params=list(KINDS))
def evil(request, tmp_path) -> tuple[Path, Path]:
    make, unsafe = KINDS[request.param]
    control = tmp_path / "control_marker"
    make(tmp_path / "control.pt", control)
    unsafe(tmp_path / "control.pt")
    assert control.exists(), "the payload is live: an unsafe load does run it"
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    make(path, marker)
    return path, marker


def test_load_checkpoint_refuses_without_running_code(evil):
    path, marker = evil
    with pytest.raises(CheckpointError, match="refused: not a checkpoint of plain data"):
        load_checkpoint(path)
    assert not marker.exists()


def test_cli_resume_refuses_with_status_2(evil, tmp_path, capsys):
    path, marker = evil
    rc = cli.main(train_args(tmp_path / "out") + ["--resume", str(path)])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "refused" in line and "nothing in it was run" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_cli_evaluate_refuses_with_status_2(evil, tmp_path, capsys):
    path, marker = evil
    rc = cli.main(["evaluate", str(path), "--episodes", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "refused" in err[0], err
    assert not marker.exists()


def test_real_cli_resume_refuses_a_malicious_checkpoint(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    _torch_save(path, marker)
    run = Run(train_args(tmp_path / "out") + ["--resume", str(path)], tmp_path / "logs")
    assert run.wait(timeout=120) == 2
    (line,) = run.error_lines()
    assert "refused" in line and "GLOBAL posix.system" in line
    assert not marker.exists()


def test_yaml_inputs_are_loaded_safely(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"base: smoke\nrun:\n  name: {tag}\n")
    graph = tmp_path / "evil_graph.yaml"
    graph.write_text(f"version: 1\nexperts: {tag}\n")
    assert cli.main(["train", "--config", str(cfg), "--set", f"run.out_dir={tmp_path}/o"]) == 2
    assert cli.main(["train", "--config", "smoke", "--set", f"run.out_dir={tmp_path}/o",
                     "--set", f"model.graph_path={graph}"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("not valid YAML" in e for e in err), err
    assert not marker.exists() and not (tmp_path / "o").exists()
