"""Evaluation, analysis and their subcommands on a real smoke checkpoint and real NLE games."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from nle import nethack as nh

from nethack_moe.analysis.analyze import analyze
from nethack_moe.cli import app as cli
from nethack_moe.config.train import make_config
from nethack_moe.envs import vector as vector_mod
from nethack_moe.envs.factory import EnvConfig, make_env, seed_env
from nethack_moe.envs.vector import WorkerError
from nethack_moe.evaluation.evaluate import checkpoint_names, evaluate
from nethack_moe.evaluation.loading import load_policy
from nethack_moe.evaluation.runner import rollout
from nethack_moe.evaluation.watch import watch_frames
from nethack_moe.features import ATOM_INDEX, FeatureSpec, compute_features, new_memory
from nethack_moe.metrics.scenarios import (
    COMBAT,
    COMBAT_ATOMS,
    EXPLORATION,
    GENERAL,
    SURVIVAL_ATOMS,
    label_scenarios,
    moved_from_trajectory,
)
from nethack_moe.metrics.verdict import verdict_of
from nethack_moe.ppo.trainer import Trainer
from nethack_moe.report import write_report

RECORD_KEYS = {"seed", "score", "reward", "length", "depth", "died"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evalruns")
    cfg = make_config(
        "smoke",
        [f"run.out_dir={tmp}", "run.name=smoke", "run.num_workers=0", "run.device=cpu",
         "run.tensorboard=false", "env.max_episode_steps=20"],
    )  # fmt: skip
    Trainer(cfg).run()
    return tmp / "smoke"


@pytest.fixture(scope="module")
def ckpt(run_dir) -> str:
    return str(run_dir / "checkpoints" / "final.pt")


@pytest.fixture(scope="module")
def policy(ckpt):
    model, cfg, _ = load_policy(ckpt)
    return model, cfg


def _plain(recs: list[dict]) -> list[dict]:
    return [{k: r[k] for k in RECORD_KEYS} for r in recs]


@pytest.fixture
def main(monkeypatch):
    """``cli.main`` with the evaluation subcommands registered (whether or not cli.py does it)."""
    from nethack_moe.cli.commands_eval import register

    orig = cli.build_parser

    def build_parser() -> argparse.ArgumentParser:
        ap = orig()
        sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
        if "evaluate" not in sub.choices:
            register(sub)
        return ap

    monkeypatch.setattr(cli, "build_parser", build_parser)
    return cli.main


# ------------------------------------------------------------------------------ rollout / evaluate
def test_rollout_is_deterministic_and_plays_exactly_the_seeds_in_order(policy):
    model, cfg = policy
    a = rollout(model, cfg, 5, seed_start=100000, num_envs=2, workers=0)
    b = rollout(model, cfg, 5, seed_start=100000, num_envs=2, workers=0)
    assert a.records == b.records
    assert [r["seed"] for r in a.records] == list(range(100000, 100005))
    assert not a.retried and not a.failed
    for r in a.records:
        assert RECORD_KEYS <= set(r)
        assert 1 <= r["length"] <= cfg.env.max_episode_steps
    # the episodes depend on the seeds only, not on how many envs play them (nor on worker
    # processes: see the worker tests below)
    g1 = rollout(model, cfg, 3, seed_start=100002, num_envs=3, workers=0, greedy=True)
    g2 = rollout(model, cfg, 3, seed_start=100002, num_envs=1, workers=0, greedy=True)
    assert g1.records == g2.records
    assert [r["seed"] for r in g1.records] == [100002, 100003, 100004]


def test_evaluate_writes_the_json_format_and_the_run_copy(ckpt, run_dir, tmp_path):
    out = tmp_path / "e.json"
    res = evaluate([ckpt], episodes=3, num_envs=3, workers=0, out=out)
    data = json.loads(out.read_text())
    assert {"protocol", "created", "machine", "checkpoints", "greedy"} <= set(data)
    assert data["protocol"] == "E3" and data["greedy"] is False
    assert list(data["checkpoints"]) == ["final"]
    entry = data["checkpoints"]["final"]
    assert {"path", "episode", "greedy", "summary", "episodes"} <= set(entry)
    assert entry["episode"] >= 12
    s = entry["summary"]
    for k in ("n", "mean", "std", "median", "iqm", "max", "ci_mean", "ci_iqm", "died", "depth",
              "length", "routing"):  # fmt: skip
        assert k in s, k
    assert s["n"] == 3
    for k in ("alpha_entropy", "usage_entropy", "mi", "effective_experts", "usage",
              "argmax_share", "sparsity", "switch_rate", "scenario_table"):  # fmt: skip
        assert k in s["routing"], k
    assert s["routing"]["n_states"] == sum(e["length"] for e in entry["episodes"])
    assert [e["seed"] for e in entry["episodes"]] == [100000, 100001, 100002]
    for e in entry["episodes"]:
        assert RECORD_KEYS <= set(e)
    copy = run_dir / "eval" / "final_E3.json"
    assert str(copy) in res["written"]
    assert json.loads(copy.read_text())["checkpoints"]["final"]["episodes"] == entry["episodes"]


def test_checkpoint_names_are_stems_made_unique():
    paths = ["a/checkpoints/final.pt", "b/checkpoints/final.pt", "a/checkpoints/ep_000004.pt"]
    assert checkpoint_names(paths) == ["a:final", "b:final", "ep_000004"]
    assert checkpoint_names(["x/final.pt", "x/final.pt"]) == ["x:final", "x:final_2"]


def test_watch_replays_the_evaluation_episode_of_its_seed(policy):
    model, cfg = policy
    res = rollout(model, cfg, 1, seed_start=100003, num_envs=1, workers=0, collect_states=True)
    frames = list(watch_frames(model, cfg, seed=100003))
    assert res.states is not None
    assert [f["action"] for f in frames] == res.states.action.tolist()
    assert frames[-1]["score"] == res.records[0]["score"]
    assert len(frames) == res.records[0]["length"]
    assert "Dlvl:1" in frames[0]["screen"]


# ------------------------------------------------------------------------------ robustness
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"], ids=["crash", "hang"])
def test_an_episode_lost_to_a_dead_or_hung_worker_is_played_again(policy, monkeypatch, sig):
    model, cfg = policy
    clean = rollout(model, cfg, 4, num_envs=2, workers=0)
    real_step = vector_mod.VectorEnv.step
    calls = [0]
    killed: list[int] = []

    def step(self, actions):
        calls[0] += 1
        if calls[0] == 5 and self.num_workers > 0:
            pid = self.worker_pids()[0]
            # a worker this evaluation started; a stopped one is killed by the vector env's restart
            os.kill(pid, getattr(signal, sig))
            killed.append(pid)
        return real_step(self, actions)

    monkeypatch.setattr(vector_mod.VectorEnv, "step", step)
    res = rollout(
        model, cfg, 4, num_envs=2, workers=1, step_timeout=8.0
    )  # a fresh worker loads numba
    assert killed, "the worker was not signalled"
    assert [r["seed"] for r in res.records] == [100000, 100001, 100002, 100003]
    assert res.retried == [100000, 100001]  # the two games in progress when the worker died
    assert not res.failed
    assert _plain(res.records) == _plain(clean.records)
    assert [r["retried"] for r in res.records] == [True, True, False, False]


def test_a_worker_error_is_retried_once_and_a_second_failure_is_reported(policy, monkeypatch):
    model, cfg = policy
    clean = rollout(model, cfg, 3, num_envs=3, workers=0)
    real_step = vector_mod.VectorEnv.step
    calls = {"n": 0}

    def fail_first(self, actions):
        calls["n"] += 1
        if calls["n"] == 1:
            raise WorkerError("env worker 0 (pid 1) did not answer within 60 s")
        return real_step(self, actions)

    monkeypatch.setattr(vector_mod.VectorEnv, "step", fail_first)
    res = rollout(model, cfg, 3, num_envs=3, workers=0)
    assert len(res.records) == 3
    assert _plain(res.records) == _plain(clean.records)
    assert res.retried == [100000, 100001, 100002] and not res.failed

    def always_fail(self, actions):
        raise WorkerError("env worker 0 (pid 1) died with exit code -11")

    monkeypatch.setattr(vector_mod.VectorEnv, "step", always_fail)
    bad = rollout(model, cfg, 2, num_envs=2, workers=0)
    assert bad.records == []
    assert [f["seed"] for f in bad.failed] == [100000, 100001]
    assert all(len(f["errors"]) == 2 for f in bad.failed)  # first try + one retry, then reported


# ------------------------------------------------------------------------------ analysis
def test_analyze_writes_its_files_and_the_scenario_table_covers_every_state(ckpt, tmp_path):
    out = tmp_path / "an"
    analyze(ckpt, episodes=3, num_envs=3, workers=0, out_dir=out, probe_episodes=2)
    for name in ("analysis.json", "analysis.md", "alpha_heatmap.png", "usage.png",
                 "alpha_entropy_hist.png", "alpha_episode.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "analysis.json").read_text())
    table = data["scenario_table"]
    assert sum(table["counts"]) == data["n_states"] == sum(x["length"] for x in data["records"])
    assert table["scenarios"] == ["survival", "combat", "exploration", "general"]
    ea = data["expert_actions"]
    assert set(ea["experts"]) == set(data["figures"]["expert_names"])
    for dist in ea["experts"].values():
        assert set(dist) == set(ea["actions"]) and abs(sum(dist.values()) - 1) < 1e-4
    assert "SEARCH" in ea["actions"] and "DOWN" in ea["actions"]
    assert ea["actions"][data["moved_actions"]["search"]] == "SEARCH"
    assert ea["actions"][data["moved_actions"]["descend"]] == "DOWN"
    for k in ("alpha_entropy", "usage_entropy", "mi", "effective_experts", "sparsity",
              "switch_rate", "usage", "argmax_share"):  # fmt: skip
        assert k in data["figures"], k
    md = (out / "analysis.md").read_text()
    assert verdict_of(data) in md and "| combat |" in md
    # the routing figures against their definitions (PROTOCOL.md), recomputed from the usage
    fig = data["figures"]
    h_use = -sum(x * math.log(x) for x in fig["usage"] if x > 0)
    assert sum(fig["usage"]) == pytest.approx(1) and sum(fig["argmax_share"]) == pytest.approx(1)
    assert fig["usage_entropy"] == pytest.approx(h_use)
    assert fig["mi"] == pytest.approx(max(0.0, h_use - fig["alpha_entropy"]), abs=1e-9)
    assert fig["effective_experts"] == pytest.approx(math.exp(h_use))
    rb = data["routing_balance"]  # routing MI is reported as usage balance, with its own numbers
    assert rb["usage_balance_routing_mi"] == fig["mi"]
    assert rb["per_state_sharpness_alpha_entropy"] == fig["alpha_entropy"]
    assert rb["effective_experts"] == fig["effective_experts"]
    # the specialization figures, each next to its baseline, under the keys report/compare read;
    # H(scenario) recomputed from the scenario table's counts
    sp = data["specialization"]
    n = sum(table["counts"])
    h_scen = -sum(c / n * math.log(c / n) for c in table["counts"] if c)
    assert sp["n_states"] == n and sp["scenario_entropy"] == pytest.approx(h_scen)
    assert 0 <= sp["scenario_mi"] <= h_scen + 1e-9  # I(expert; scenario) <= H(scenario)
    if h_scen > 0:
        assert sp["scenario_mi_normalized"] == pytest.approx(sp["scenario_mi"] / h_scen)
    # p = (1 + #permutations at or above the figure) / (1 + permutations)
    perms = sp["permutations"]
    k = sp["scenario_mi_p_value"] * (perms + 1)
    assert perms >= 100 and k == pytest.approx(round(k)) and 1 <= round(k) <= perms + 1
    assert sp["scenario_mi_shuffled_p95"] >= 0
    names = data["figures"]["expert_names"]
    assert set(data["interventions"]) == {"router", *names}
    for p in data["interventions"].values():
        assert p["episodes"] == 2 and p["mean_score"] is not None
        assert {"hp_lost_per_step", "kills_per_combat_state", "new_cells_per_step"} <= set(p)
    router = data["interventions"]["router"]
    assert router["mean_score"] == np.mean([x["score"] for x in data["records"][:2]])
    for key in ("graph_mean", "graph_zero", "state_mean", "state_zero"):
        f = data["reliance"][key]
        changed = f["argmax_change"] * f["n_states"]  # a share of the states: k / n
        assert changed == pytest.approx(round(changed)) and 0 <= changed <= f["n_states"]
        # the smoke model reads every input: each replacement moves its router and its policy
        assert f["policy_kl"] > 0 and f["alpha_change"] > 0
        # played on the probe seeds against the unedited policy's score there
        assert f["episodes"] == 2 and f["baseline_mean_score"] == router["mean_score"]
        assert f["score_change"] == pytest.approx(f["mean_score"] - f["baseline_mean_score"])
    rel = data["reliance"]  # the mean and the zero replacements are different edits
    assert rel["graph_mean"]["alpha_change"] != rel["graph_zero"]["alpha_change"]
    assert rel["state_mean"]["alpha_change"] != rel["state_zero"]["alpha_change"]
    h = data["hint"]
    assert h["policy_mean_score"] == router["mean_score"] and h["zeroed_mean_score"] is not None
    taken = h["follow_share"] * h["hinted_steps"]  # a share of the hinted steps
    assert h["hinted_steps"] > 0 and taken == pytest.approx(round(taken))
    assert h["follower_mean_score"] is not None and h["follower_follow_share"] > 0.8
    # figures only: no stored sentence; the verdict is built from them
    assert not {"verdict", "verdict_text", "routing_verdict"} & set(data)
    assert data["reliance_measured"] is True and data["n_experts"] == len(names)
    rd = data["interventions_reading"]
    assert set(rd["rankings"]) == {"survival", "combat", "exploration", "general"}
    assert set(rd["own_scenario"]) == set(names) and rd["own_scenario_source"] == "router"
    assert all(len(p["scores"]) == 2 for p in data["interventions"].values())
    assert "Specialization, each figure next to its baseline" in md
    # against the teacher's branches: the rollout was played with env.teacher
    t = data["teacher"]
    assert t["n_states"] == data["n_states"] and t["actions"] == "sampled"
    assert t["branch_mi"] >= 0 and t["branch_mi_shuffled_p95"] >= 0 and t["permutations"] >= 100
    assert t["branch_mi_shifted_p95"] is not None
    assert sum(t["branch_counts"].values()) == data["n_states"]
    assert 0 <= t["agreement"]["all"]["taken"] <= 1 and t["agreement"]["all"]["argmax"] is not None
    assert set(t["interventions"]) == set(t["branch_counts"])
    for x in t["interventions"].values():
        assert set(x["expert_prob"]) == set(names) and 0 <= x["router_prob"] <= 1
    assert "Against the scripted teacher's branches" in md and "teacher's branch" in verdict_of(
        data
    )


def test_forced_expert_and_edited_players_act_through_the_rollout_loop(policy):
    from nethack_moe.evaluation.players import ModelPlayer, zero_hint
    from nethack_moe.evaluation.runner import play

    model, cfg = policy
    forced = play(ModelPlayer(model, expert=1), cfg.env, 2, num_envs=2, workers=0,
                  collect_states=True)  # fmt: skip
    assert forced.states is not None
    assert np.all(forced.states.alpha == np.eye(model.n_experts)[1])
    plain = rollout(model, cfg, 2, num_envs=2, workers=0, collect_states=True, keep_obs=True)
    assert plain.states is not None and plain.states.state is not None
    assert plain.states.state.shape[0] == plain.states.n
    # an edit that changes nothing plays exactly the same games
    same = play(ModelPlayer(model, edit=lambda enc: enc), cfg.env, 2, num_envs=1, workers=0)
    assert same.records == plain.records
    zeroed = play(ModelPlayer(model, obs_edit=zero_hint), cfg.env, 2, num_envs=2, workers=0)
    assert [r["seed"] for r in zeroed.records] == [100000, 100001]


def _hostile_adjacent_by_glyphs(obs) -> bool:
    """Independent check: a non-pet monster glyph in the 8 cells around the hero."""
    g = obs["glyphs"]
    x, y = int(obs["blstats"][nh.NLE_BL_X]), int(obs["blstats"][nh.NLE_BL_Y])
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = y + dy, x + dx
            if (dy or dx) and 0 <= yy < g.shape[0] and 0 <= xx < g.shape[1]:
                gl = int(g[yy, xx])
                if nh.glyph_is_monster(gl) and not nh.glyph_is_pet(gl):
                    return True
    return False


def test_scenario_labels_on_real_observations():
    env = make_env(EnvConfig(max_episode_steps=200))
    spec = FeatureSpec()
    found: dict[int, tuple] = {}
    surv = [ATOM_INDEX[a] for a in SURVIVAL_ATOMS]
    comb = [ATOM_INDEX[a] for a in COMBAT_ATOMS]
    try:
        for seed in range(100000, 100012):
            rng = np.random.default_rng(seed)
            seed_env(env, seed, seed)
            obs, _ = env.reset()
            mem = new_memory(1)
            xs, ys, ds, atoms, hostile = [], [], [], [], []
            for _ in range(200):
                _, _, at = compute_features(
                    obs["glyphs"][None], obs["blstats"][None], obs["message"][None],
                    obs["tty_chars"][None], spec, memory=mem,
                )  # fmt: skip
                bl = obs["blstats"]
                xs.append(int(bl[nh.NLE_BL_X]))
                ys.append(int(bl[nh.NLE_BL_Y]))
                ds.append(int(bl[nh.NLE_BL_DEPTH]))
                atoms.append(at[0].copy())
                hostile.append(_hostile_adjacent_by_glyphs(obs))
                # walk (actions 1-8) most of the time, wait (19) sometimes: both moved and still
                a = int(rng.integers(1, 9)) if rng.random() < 0.6 else 19
                obs, _, term, trunc, _ = env.step(a)
                if term or trunc:
                    break
            A = np.array(atoms)
            moved = moved_from_trajectory(xs, ys, ds)
            labels = label_scenarios(A, moved)
            for s in range(len(labels)):
                calm = not A[s, surv].any()
                if calm and A[s, ATOM_INDEX["hostile_adjacent"]] and COMBAT not in found:
                    assert hostile[s], "hostile_adjacent without a hostile monster glyph"
                    found[COMBAT] = (seed, s, labels[s])
                elif calm and not A[s, comb].any():
                    k = EXPLORATION if moved[s] else GENERAL
                    if k not in found:
                        if k == EXPLORATION:  # the hero really changed cell since the last step
                            assert (xs[s], ys[s]) != (xs[s - 1], ys[s - 1])
                        found[k] = (seed, s, labels[s])
            if len(found) == 3:
                break
    finally:
        env.close()
    assert set(found) == {COMBAT, EXPLORATION, GENERAL}, found
    for want, (seed, s, got) in found.items():
        assert got == want, f"seed {seed} step {s}: label {got}, expected {want}"


def test_report_on_the_smoke_run_writes_markdown(run_dir, tmp_path, main, capsys):
    out = tmp_path / "r.md"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Training report")
    assert str(out) in capsys.readouterr().out
    assert write_report(run_dir).is_file()


# ------------------------------------------------------------------------------ command line
def test_cli_evaluate_compare_watch_and_bad_input(ckpt, run_dir, tmp_path, main, capsys):
    out = tmp_path / "cli.json"
    argv = ["evaluate", ckpt, "--episodes", "4", "--workers", "0", "--num-envs", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("IQM", "95 % CI of mean", "death rate", "alpha entropy", "routing MI"):
        assert word in text
    assert [e["seed"] for e in json.loads(out.read_text())["checkpoints"]["final"]["episodes"]] == [
        100000, 100001, 100002, 100003,
    ]  # fmt: skip
    assert main(["compare", str(out), str(run_dir), "--out-dir", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.png").is_file()
    frames = tmp_path / "watch.txt"
    assert main(["watch", ckpt, "--steps", "3", "--out", str(frames)]) == 0
    w = frames.read_text()
    assert "step    2" in w and "Dlvl:1" in w and "█" in w
    assert main(["evaluate", str(tmp_path / "missing.pt"), "--episodes", "4"]) == 2
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad), "--episodes", "4"]) == 2
    assert main(["analyze", str(tmp_path / "missing.pt")]) == 2
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("nethack-moe: error:") == 4


def test_evaluate_reports_greedy_beside_sampled_and_baselines_on_the_same_seeds(ckpt, policy):
    from nethack_moe.report.compare import groups_from_eval

    model, cfg = policy
    res = evaluate([ckpt], episodes=2, num_envs=2, workers=0, baselines=["hint-follower"],
                   write_run_copies=False)  # fmt: skip
    assert res["actions"] == "both" and res["greedy"] is False
    entry = res["checkpoints"]["final"]
    greedy = entry["greedy_result"]
    assert entry["greedy"] is False and greedy["greedy"] is True
    assert entry["routing_source"] in ("checkpoint", "curriculum")
    follower = res["checkpoints"]["hint-follower"]
    for e in (entry, greedy, follower):
        assert [r["seed"] for r in e["episodes"]] == [100000, 100001]
        assert {"mean", "ci_mean", "hint"} <= set(e["summary"])
    assert "routing" in greedy["summary"] and "routing" not in follower["summary"]
    # the specialization summary, keyed as in analysis.json (reliance needs the sampled run's obs)
    s = entry["summary"]
    assert {"specialization", "reliance", "reliance_measured", "n_experts"} <= set(s)
    assert "verdict" not in s and s["reliance_measured"] is True
    assert s["specialization"]["scenario_mi_shuffled_p95"] is not None
    steps = sum(r["length"] for r in entry["episodes"])  # the sampled run's states
    assert s["specialization"]["n_states"] == steps
    for key in ("graph_mean", "state_mean"):
        f = s["reliance"][key]
        changed = f["argmax_change"] * f["n_states"]  # a share of the sampled run's states
        assert f["n_states"] == steps and changed == pytest.approx(round(changed))
        assert f["alpha_change"] > 0 and f["policy_kl"] > 0
    assert greedy["summary"]["reliance"] == {} and "specialization" in greedy["summary"]
    assert greedy["summary"]["reliance_measured"] is False
    ref = rollout(model, cfg, 2, num_envs=1, workers=0, greedy=True)
    assert _plain(greedy["episodes"]) == _plain(ref.records)  # played with env.teacher: same games
    # the teacher block: sampled with the forced experts on its states, greedy with its agreement
    t, tg = s["teacher"], greedy["summary"]["teacher"]
    assert t["actions"] == "sampled" and tg["actions"] == "greedy"
    assert t["branch_mi_shuffled_p95"] is not None and t["interventions"]
    assert tg["interventions"] is None and tg["branch_mi"] is not None
    assert tg["agreement"]["all"]["n_states"] == sum(e["length"] for e in greedy["episodes"])
    assert "teacher" not in follower["summary"]
    names = [g.name for g in groups_from_eval(res, "x", Path("e.json"))]
    assert names == ["x:final", "x:final (greedy)", "x:hint-follower"]
    only = evaluate([ckpt], episodes=1, num_envs=1, workers=0, actions="sampled",
                    write_run_copies=False)  # fmt: skip
    assert "greedy_result" not in only["checkpoints"]["final"]
