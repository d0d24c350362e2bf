"""Fault 5: bad input to ``nethack-moe train``. Each case: exit status 2, exactly one line on stderr
that names the culprit and why, nothing written (the output directory is not created, files given
as input are unchanged) and no env started. Cases run through ``cli.main`` in this process (with
``VectorEnv`` made to fail the test if the trainer got that far); one case also runs as a real
subprocess to check the real exit status and stderr."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import torch
import yaml
from rel_helpers import Run, train_args

import nethack_moe.ppo.trainer as trainer_mod
from nethack_moe import cli
from nethack_moe.knowledge.loader import DEFAULT_GRAPH_PATH


def _tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` with its digest (to prove nothing was written)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _final(finished_run: Path) -> bytes:
    return (finished_run / "checkpoints" / "final.pt").read_bytes()


def _write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / "inputs" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _version_999(tmp: Path, run: Path) -> Path:
    ck = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    ck["format_version"] = 999
    p = tmp / "inputs" / "v999.pt"
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, p)
    return p


def _broken_run_dir(tmp: Path, run: Path) -> Path:
    d = tmp / "inputs" / "broken_run"
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "ep_000004.pt").write_bytes(_final(run)[:5000])
    (d / "checkpoints" / "ep_000008.pt").write_bytes(b"")
    return d


def _graph(tmp: Path, name: str, mutate) -> Path:
    data = yaml.safe_load(DEFAULT_GRAPH_PATH.read_text())
    mutate(data)
    p = tmp / "inputs" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _dangling(data):
    data["rules"][0]["if"] = [*data["rules"][0]["if"], "ghost_node"]


def _no_expert(data):
    data["operators"][0].pop("expert")


GAT = "model.variant=gat_moe"
# id -> (build(tmp, finished_run) -> (extra CLI args, input path or None), words in the message)
CASES = {
    "missing checkpoint": (
        lambda t, r: (["--resume", str(t / "nope.pt")], None),
        ["nope.pt", "neither a checkpoint file nor a run directory"],
    ),
    "truncated checkpoint": (
        lambda t, r: ((["--resume", str(p := _write(t, "half.pt", _final(r)[:60000]))]), p),
        ["half.pt", "truncated or not a checkpoint"],
    ),
    "random bytes": (
        lambda t, r: (
            ["--resume", str(p := _write(t, "rnd.pt", random.Random(0).randbytes(9000)))],
            p,
        ),
        ["rnd.pt", "not a checkpoint"],
    ),
    "text file": (
        lambda t, r: (["--resume", str(p := _write(t, "notes.pt", b"hello world\n"))], p),
        ["notes.pt", "not a checkpoint"],
    ),
    "empty file": (
        lambda t, r: (["--resume", str(p := _write(t, "empty.pt", b""))], p),
        ["empty.pt", "is empty"],
    ),
    "run dir without a complete checkpoint": (
        lambda t, r: (["--resume", str(p := _broken_run_dir(t, r))], p),
        ["no complete checkpoint in"],
    ),
    "other model variant": (
        lambda t, r: (["--set", GAT, "--resume", str(r / "checkpoints" / "final.pt")], r),
        ["cannot resume: model.variant differs (checkpoint 'mlp_single', now 'gat_moe')"],
    ),
    "other env settings": (
        lambda t, r: (["--set", "ppo.num_envs=8", "--resume", str(r)], r),
        ["cannot resume: ppo.num_envs differs (checkpoint 4, now 8)"],
    ),
    "incompatible format version": (
        lambda t, r: (["--resume", str(p := _version_999(t, r))], p),
        ["v999.pt", "format version 999", "reads version 1"],
    ),
    "unknown config key": (
        lambda t, r: (["--set", "ppo.num_env=8"], None),
        ["unknown config key 'ppo.num_env'", "num_envs"],
    ),
    "mistyped config value": (
        lambda t, r: (["--set", "ppo.num_envs=four"], None),
        ["ppo.num_envs='four' is not an integer"],
    ),
    "unknown config value": (
        lambda t, r: (["--set", "model.variant=gat_moee"], None),
        ["variant: unknown 'gat_moee'"],
    ),
    "unknown preset": (
        lambda t, r: (["--config", "smok"], None),
        ["unknown config preset 'smok'"],
    ),
    "graph: dangling edge": (
        lambda t, r: (
            ["--set", GAT, "--set", f"model.graph_path={_graph(t, 'g1.yaml', _dangling)}"],
            None,
        ),
        ["model.graph_path=", "g1.yaml", "'ghost_node' is not a node"],
    ),
    "graph: operator without expert": (
        lambda t, r: (
            ["--set", GAT, "--set", f"model.graph_path={_graph(t, 'g2.yaml', _no_expert)}"],
            None,
        ),
        ["g2.yaml", "has no expert"],
    ),
    "graph: not YAML": (
        lambda t, r: (
            ["--set", GAT, "--set", f"model.graph_path={_write(t, 'g3.yaml', b'a: [b')}"],
            None,
        ),
        ["g3.yaml", "not valid YAML"],
    ),
    "graph: missing file": (
        lambda t, r: (["--set", GAT, "--set", f"model.graph_path={t / 'nope.yaml'}"], None),
        ["nope.yaml", "cannot read knowledge graph file"],
    ),
    "existing run directory": (
        lambda t, r: (["--set", f"run.out_dir={r.parent}"], r),
        ["run directory", "exists", "--resume", "--overwrite"],
    ),
}


@pytest.fixture
def no_env(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("an env was started for bad input")

    monkeypatch.setattr(trainer_mod, "VectorEnv", refuse)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case, tmp_path, finished_run, no_env, capsys
):
    build, words = CASES[case]
    out = tmp_path / "out"
    extra, given = build(tmp_path, finished_run)
    before = _tree(given) if given is not None else None
    args = train_args(out)
    if "--config" in extra:  # replace the preset
        i = extra.index("--config")
        args[args.index("--config") + 1] = extra[i + 1]
        extra = extra[:i] + extra[i + 2 :]
    rc = cli.main(args + extra)

    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith("nethack-moe: error: ")
    for w in words:
        assert w in err[0], (w, err[0])
    assert not out.exists(), "something was written"
    if given is not None:
        assert _tree(given) == before, "an input file was changed"


def test_bad_graph_via_real_cli_exits_2_before_any_env(tmp_path):
    bad = _graph(tmp_path, "bad.yaml", _dangling)
    out = tmp_path / "out"
    run = Run(train_args(out, GAT, f"model.graph_path={bad}"), tmp_path / "logs")
    assert run.wait(timeout=120) == 2
    assert run.stderr.strip().splitlines() == run.error_lines()  # nothing else: no env was started
    (line,) = run.error_lines()
    assert line.startswith("nethack-moe: error: model.graph_path=") and "ghost_node" in line
    assert not out.exists()
