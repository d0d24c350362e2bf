"""``nethack-moe sweep``: the spec is checked before anything runs; finished runs are skipped,
interrupted ones resumed, failed ones recorded while the sweep goes on; ``--dry-run``; submitit's
local executor; and one real sweep of the smoke preset through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nethack_moe.config.train import dump_config
from nethack_moe.sweep.launch import run_sweep, submit_slurm
from nethack_moe.sweep.spec import SpecError, load_spec
from nethack_moe.sweep.stages import config_difference, status_of

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp: Path, **over) -> Path:
    data = {
        "name": "t",
        "base": "smoke",
        "seeds": [1, 2],
        "out": str(tmp / "out"),
        "work_dir": str(tmp / "work"),
        "rows": [
            {"name": "a", "note": "the preset"},
            {"name": "b", "set": {"model.variant": "mlp_moe", "ppo.gamma": 0.99}},
        ],
    }
    data.update(over)
    p = tmp / "spec.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


class FakeRunner:
    """Stands in for the CLI: records commands and writes what each stage would write."""

    def __init__(
        self, fail: set[tuple[str, str]] | None = None, stop_train: set[str] = frozenset()
    ):
        self.calls: list[tuple[str, str, list[str]]] = []
        self.fail = fail or set()
        self.stop_train = set(stop_train)  # runs whose training is "killed" after a checkpoint

    def __call__(self, cmd: list[str], log: Path) -> int:
        stage = cmd[3]
        name = log.name.split(".")[0]
        self.calls.append((name, stage, cmd))
        log.parent.mkdir(parents=True, exist_ok=True)
        if (name, stage) in self.fail:
            log.write_text("nethack-moe: error: something broke\n")
            return 1
        if stage == "train":
            return self._train(cmd, name)
        out = Path(
            cmd[cmd.index("--out") + 1] if "--out" in cmd else cmd[cmd.index("--out-dir") + 1]
        )
        if stage == "evaluate":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"checkpoints": {"final": {"summary": {"mean": 1.0}}}}))
        else:
            out.mkdir(parents=True, exist_ok=True)
            (out / "analysis.json").write_text(json.dumps({"figures": {}}))
        return 0

    def _train(self, cmd: list[str], name: str) -> int:
        if "--resume" in cmd:
            run_dir = Path(cmd[cmd.index("--resume") + 1])
        else:
            sets = dict(s.split("=", 1) for s in cmd[cmd.index("--config") + 3 :: 2])
            from nethack_moe.config.train import make_config

            run_dir = Path(sets["run.out_dir"]) / sets["run.name"]
            cfg = make_config(cmd[cmd.index("--config") + 1], [f"{k}={v}" for k, v in sets.items()])
            (run_dir / "checkpoints").mkdir(parents=True)
            (run_dir / "config.yaml").write_text(dump_config(cfg))
        (run_dir / "checkpoints" / "ep_000004.pt").write_bytes(b"x")
        (run_dir / "metrics.jsonl").write_text('{"type":"update","sps":123.0}\n')
        if name in self.stop_train:
            self.stop_train.discard(name)
            return 143  # killed after its first checkpoint
        (run_dir / "checkpoints" / "final.pt").write_bytes(b"x")
        return 0


# ------------------------------------------------------------------ the spec
def test_spec_parses_rows_seeds_and_paths(tmp_path):
    spec = load_spec(_spec(tmp_path))
    assert [r.name for r in spec.runs()] == ["a_s1", "a_s2", "b_s1", "b_s2"]
    b = spec.run_named("b_s2")
    assert b.run_dir == tmp_path / "work" / "b_s2" and b.out_dir == tmp_path / "out" / "b_s2"
    cfg = b.config()
    assert (cfg.model.variant, cfg.ppo.gamma, cfg.run.seed, cfg.run.name) == (
        "mlp_moe",
        0.99,
        2,
        "b_s2",
    )
    assert cfg.run.out_dir == str(tmp_path / "work")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"colour": 1}, "unknown key 'colour'"),
        ({"rows": [{"name": "a"}, {"name": "a"}]}, "duplicate row name 'a'"),
        (
            {"rows": [{"name": "a", "set": {"model.colour": 3}}]},
            "row 'a': unknown config key 'model.colour'",
        ),
        (
            {"rows": [{"name": "a", "set": {"ppo.num_envs": "many"}}]},
            "row 'a': ppo.num_envs='many' is not an integer",
        ),
        ({"rows": [{"name": "a", "set": {"run.seed": 4}}]}, "run.seed is set by the sweep itself"),
        ({"rows": [{"name": "a", "sets": {}}]}, "rows[0]: unknown key 'sets'"),
        ({"rows": [{"name": "a/b"}]}, "rows[0].name must be a name"),
        ({"seeds": [1, 1]}, "seeds repeat"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"after": ["evaluate", "watch"]}, "unknown stage 'watch'"),
        ({"baselines": ["oracle"]}, "baselines: unknown 'oracle'"),
        ({"evaluate": {"episodes": -1}}, "evaluate.episodes must be an integer >= 0"),
        ({"base": "nosuchpreset"}, "unknown config preset 'nosuchpreset'"),
    ],
)
def test_bad_spec_is_refused_in_one_line_before_anything_runs(tmp_path, over, message):
    with pytest.raises(SpecError) as e:
        load_spec(_spec(tmp_path, **over))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()


def test_bad_spec_through_the_cli_exits_2_with_one_line(tmp_path):
    from nethack_moe.cli.app import main

    p = _spec(tmp_path, rows=[{"name": "a"}, {"name": "a"}])
    assert main(["sweep", str(p)]) == 2
    assert not (tmp_path / "work").exists()


# ------------------------------------------------------------------ running
def test_runs_every_stage_then_skips_what_is_finished(tmp_path):
    spec = load_spec(_spec(tmp_path, after=["evaluate", "analyze"]))
    fake = FakeRunner()
    res = run_sweep(spec, runner=fake)
    assert res.done == ["a_s1", "a_s2", "b_s1", "b_s2"] and not res.failed
    assert [(n, s) for n, s, _ in fake.calls][:3] == [
        ("a_s1", "train"),
        ("a_s1", "evaluate"),
        ("a_s1", "analyze"),
    ]
    for r in spec.runs():
        files = {p.name for p in r.out_dir.iterdir()}
        assert {
            "eval_E200.json",
            "analysis.json",
            "config.yaml",
            "metrics.jsonl.gz",
            "status.json",
        } <= files
        assert json.loads((r.out_dir / "status.json").read_text())["state"] == "done"
    again = FakeRunner()
    res = run_sweep(spec, runner=again)
    assert again.calls == [] and res.skipped == ["a_s1", "a_s2", "b_s1", "b_s2"]


def test_interrupted_training_is_resumed_not_restarted(tmp_path):
    spec = load_spec(_spec(tmp_path, seeds=[1], after=[]))
    fake = FakeRunner(stop_train={"a_s1"})
    res = run_sweep(spec, runner=fake)
    assert [s.name for s in res.failed] == ["a_s1"] and res.done == ["b_s1"]
    st = status_of(spec.run_named("a_s1"))
    assert st is not None and (st.state, st.stage, st.returncode) == ("failed", "train", 143)
    again = FakeRunner()
    res = run_sweep(spec, runner=again)
    ((name, stage, cmd),) = again.calls
    assert (name, stage) == ("a_s1", "train")
    assert cmd[3:6] == ["train", "--resume", str(tmp_path / "work" / "a_s1")]
    assert res.done == ["a_s1"] and res.skipped == ["b_s1"]


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    spec = load_spec(_spec(tmp_path, seeds=[1]))
    fake = FakeRunner(fail={("a_s1", "evaluate")})
    res = run_sweep(spec, runner=fake)
    assert res.done == ["b_s1"] and [f.name for f in res.failed] == ["a_s1"]
    st = status_of(spec.run_named("a_s1"))
    assert st is not None and (st.state, st.stage, st.returncode) == ("failed", "evaluate", 1)
    assert st.error == "nethack-moe: error: something broke" and st.log.endswith(
        "a_s1.evaluate.log"
    )
    skip = FakeRunner()
    assert run_sweep(spec, runner=skip, skip_failed=True).skipped == ["a_s1", "b_s1"]
    assert skip.calls == []
    retry = FakeRunner()  # the retry does not train again: only the failed stage and after
    assert run_sweep(spec, runner=retry).done == ["a_s1"]
    assert [s for _, s, _ in retry.calls] == ["evaluate", "analyze"]


def test_a_run_directory_of_another_experiment_is_never_replaced(tmp_path):
    spec = load_spec(_spec(tmp_path, seeds=[1], after=[]))
    other = spec.run_named("a_s1").config()
    other.ppo.gamma = 0.5
    d = spec.run_named("a_s1").run_dir
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.yaml").write_text(dump_config(other))
    (d / "checkpoints" / "ep_000004.pt").write_bytes(b"mine")
    fake = FakeRunner()
    res = run_sweep(spec, runner=fake)
    st = res.failed[0]
    assert st.name == "a_s1" and "ppo.gamma differs" in st.error
    assert (d / "checkpoints" / "ep_000004.pt").read_bytes() == b"mine"
    assert [n for n, _, _ in fake.calls] == ["b_s1"]


def test_execution_keys_do_not_make_another_experiment(tmp_path):
    spec = load_spec(_spec(tmp_path))
    a = spec.run_named("a_s1").config()
    b = spec.run_named("a_s1").config()
    b.run.num_workers, b.run.progress = 7, False
    assert config_difference(a, b) == ""
    b.run.seed = 9
    assert config_difference(a, b) == "run.seed"


def test_dry_run_prints_the_next_command_of_each_run(tmp_path, capsys):
    from nethack_moe.cli.app import main

    p = _spec(tmp_path, seeds=[1], after=["evaluate"])
    spec = load_spec(p)
    run_sweep(spec, only=["a_s1"], runner=FakeRunner())
    (spec.run_named("b_s1").run_dir / "checkpoints").mkdir(parents=True)
    (spec.run_named("b_s1").run_dir / "checkpoints" / "ep_000004.pt").write_bytes(b"x")
    assert main(["sweep", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# a_s1: done"
    assert out[1] == "# b_s1: to do train, evaluate, collect"
    assert out[2].startswith("nethack-moe train --resume ") and out[2].endswith(
        "b_s1 --set run.progress=false"
    )
    assert len(out) == 3
    assert not (spec.run_named("b_s1").out_dir / "status.json").exists()


def test_dry_run_of_a_fresh_run_gives_its_full_train_command(tmp_path, capsys):
    from nethack_moe.cli.app import main

    p = _spec(tmp_path, seeds=[3])
    assert main(["sweep", str(p), "--dry-run", "--only", "b_s3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        f"nethack-moe train --config smoke --set model.variant=mlp_moe --set ppo.gamma=0.99 "
        f"--set run.seed=3 --set run.out_dir={tmp_path / 'work'} --set run.name=b_s3 "
        "--set run.progress=false"
    )


# ------------------------------------------------------------------ real runs
def _smoke_spec(tmp: Path) -> Path:
    return _spec(
        tmp,
        seeds=[1],
        rows=[{"name": "a"}],
        after=["evaluate"],
        evaluate={"episodes": 2, "workers": 0, "num_envs": 2},
    )


def test_submitit_local_executor_runs_a_job_array(tmp_path):
    submitit = pytest.importorskip("submitit")
    p = _smoke_spec(tmp_path)
    spec = load_spec(p)
    ex = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    ex.update_parameters(timeout_min=10)
    jobs = submit_slurm(p, spec, executor=ex)
    assert len(jobs) == 1
    assert jobs[0].result() == "done"
    run = spec.run_named("a_s1")
    assert run.final_checkpoint.is_file()
    ev = json.loads((run.out_dir / "eval_E200.json").read_text())
    assert len(ev["checkpoints"]["final"]["episodes"]) == 2
    assert submit_slurm(p, spec, executor=ex) == []  # nothing left to submit


def test_real_sweep_through_the_cli_resumes_after_a_lost_final_checkpoint(tmp_path):
    """The smoke preset end to end: train, E200-style evaluation (2 episodes), collect, table;
    then with the final checkpoint and the results gone, the next sweep resumes training."""
    p = _smoke_spec(tmp_path)
    cmd = [sys.executable, "-m", "nethack_moe", "sweep", str(p)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 finished now, 0 skipped, 0 failed" in r.stdout
    run = load_spec(p).run_named("a_s1")
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    assert table["rows"][0]["seeds"][0]["run"] == "a_s1"
    assert table["rows"][0]["seeds"][0]["train_sps"] > 0
    # lose the end of training (as a kill after the last periodic checkpoint would)
    run.final_checkpoint.unlink()
    (run.out_dir / "status.json").unlink()
    (run.out_dir / "eval_E200.json").unlink()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "a_s1: train (resuming)" in r.stdout
    log = (tmp_path / "work" / "a_s1.train.log").read_text()
    assert log.count("train --resume") == 1
    assert run.final_checkpoint.is_file() and (run.out_dir / "eval_E200.json").is_file()


def test_table_only_rebuilds_the_table_from_finished_runs(tmp_path, capsys):
    from nethack_moe.cli.app import main

    p = _spec(tmp_path, seeds=[1, 2], after=["evaluate"])
    spec = load_spec(p)
    run_sweep(spec, only=["a_s1", "b_s2"], runner=FakeRunner())
    assert main(["sweep", str(p), "--table"]) == 0
    assert "table: 2 of 4 runs" in capsys.readouterr().out
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    assert [r["missing_seeds"] for r in table["rows"]] == [[2], [1]]
    assert table["rows"][0]["seeds"][0]["sampled_mean"] == 1.0


def test_a_run_done_under_fewer_stages_gets_the_missing_ones_only(tmp_path, capsys):
    from nethack_moe.cli.app import main

    quick = load_spec(_spec(tmp_path, seeds=[1], after=["evaluate"]))
    run_sweep(quick, only=["a_s1"], runner=FakeRunner())
    p = _spec(tmp_path, seeds=[1], after=["evaluate", "analyze"])
    assert main(["sweep", str(p), "--dry-run", "--only", "a_s1"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "# a_s1: to do analyze, collect"
    fake = FakeRunner()
    res = run_sweep(load_spec(p), only=["a_s1"], runner=fake)
    assert res.done == ["a_s1"] and [s for _, s, _ in fake.calls] == ["analyze"]
