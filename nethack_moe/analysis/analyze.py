"""Look inside a checkpoint's routing: ``nethack-moe analyze CKPT``.

Rolls the policy out on evaluation seeds with every visited state logged, labels each state with
its scenario (DESIGN.md, "Scenarios": ``moved`` = the step into the state changed the position or
depth, or was a search / descend, indices taken from the env's own action list), measures the
specialization figures next to their baselines (:mod:`nethack_moe.metrics.specialization`,
:mod:`nethack_moe.analysis.probes`), and writes to ``out_dir`` (default ``RUN/analysis/<stem>/``):

* ``analysis.json``: ``specialization`` (scenario information, its permutation p95 and p-value),
  ``reliance`` (``graph_mean``, ``graph_zero``, ``state_mean``, ``state_zero``: argmax change,
  policy KL, score with the replacement), ``interventions`` (``router`` and each expert forced:
  score, depth, died, scenario outcomes) with ``interventions_reading``, ``hint`` (follow share,
  score with the hint zeroed, hint follower and random on the same seeds), ``routing_balance``,
  ``teacher`` (the rollout is played with ``env.teacher``: branch information against its nulls,
  per-branch forced experts, agreement; :mod:`nethack_moe.metrics.branches`); the routing
  figures (labelled usage balance and per-state sharpness), the per-scenario mean-α table with
  counts, and each expert's action distribution (no stored sentence: readers build the verdicts);
* ``analysis.md``: the same as markdown tables, the verdict stated plainly;
* ``alpha_heatmap.png`` (scenario × expert), ``usage.png``, ``alpha_entropy_hist.png``,
  ``alpha_episode.png`` (α over the steps of the longest episode).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.analysis import plots
from nethack_moe.analysis.probes import DEFAULT_PROBE_EPISODES, ProbeOptions, run_probes
from nethack_moe.core.formatting import num, pct
from nethack_moe.core.io import atomic_write_bytes
from nethack_moe.evaluation.evaluate import summarize_episodes, teacher_env
from nethack_moe.evaluation.loading import checkpoint_episode, load_policy
from nethack_moe.evaluation.runner import E200_SEED_START, rollout, state_scenarios
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.information import DEFAULT_PERMUTATIONS
from nethack_moe.metrics.paired import PairedDiff
from nethack_moe.metrics.router_figures import InterventionReading
from nethack_moe.metrics.routing import entropy, routing_figures, scenario_table, verdict
from nethack_moe.metrics.scenarios import SCENARIOS
from nethack_moe.metrics.state_report import state_report
from nethack_moe.metrics.statelog import StateLog
from nethack_moe.metrics.teacher_figures import ALL_STATES, MIN_TEACHER_MARGIN, TeacherFigures
from nethack_moe.metrics.verdict import verdict_of
from nethack_moe.runs.rundir import RunDir

log = logging.getLogger(__name__)


def default_out_dir(path: str | Path) -> Path:
    """``RUN/analysis/<stem>/`` for ``RUN/checkpoints/<stem>.pt``, else ``<dir>/analysis/<stem>/``."""
    p = Path(path)
    return RunDir(RunDir.owner_dir(p)).analysis_dir(p.stem)


def plain_verdict(v: str) -> str:
    """The verdict of :func:`nethack_moe.metrics.routing.verdict` as a sentence."""
    if v.startswith(("collapsed", "never")):
        s = "Routing has " + v
    elif v.startswith(("not specialized", "specialized", "weakly")):
        s = "Routing is " + v
    elif v.startswith("a single expert"):
        s = "This model has " + v
    else:
        s = v[:1].upper() + v[1:]
    return s if s.endswith(".") else s + "."


def routing_verdict_text(r: dict[str, Any]) -> str:
    """The routing figures' own reading (:func:`nethack_moe.metrics.routing.verdict`) of an
    ``analysis.json`` object, built from its figures."""
    fig = r["figures"]
    return plain_verdict(verdict(fig, len(fig.get("expert_names") or [])))


def _by_action(names: list[str], p: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, p, strict=True)}


def _plots(
    out: Path,
    table: dict[str, Any],
    fig: dict[str, Any],
    st: StateLog,
    names: list[str],
    ep_seed: int | None,
) -> dict[str, Path]:
    """The analysis's plots in ``out``; the paths of every file it writes (``json`` and
    ``markdown`` are written after)."""
    E = len(names)
    files = {
        "json": out / "analysis.json",
        "markdown": out / "analysis.md",
        "heatmap": out / "alpha_heatmap.png",
        "usage": out / "usage.png",
        "entropy_hist": out / "alpha_entropy_hist.png",
        "episode": out / "alpha_episode.png",
    }
    plots.plot_alpha_heatmap(table, files["heatmap"])
    plots.plot_usage_bars(fig, names, files["usage"])
    plots.plot_alpha_entropy_hist(entropy(st.alpha, axis=1), files["entropy_hist"], E)
    sel = st.episode == ep_seed
    plots.plot_alpha_over_episode(st.alpha[sel], names, files["episode"])
    return files


def analyze(
    path: str | Path,
    episodes: int = 20,
    seed_start: int = E200_SEED_START,
    out_dir: str | Path | None = None,
    *,
    greedy: bool = False,
    num_envs: int = 16,
    workers: int = 2,
    device: str = "cpu",
    policy_seed: int = 0,
    routing: str | None = None,
    temperature: float | None = None,
    progress: bool | None = None,
    probe_episodes: int = DEFAULT_PROBE_EPISODES,
    permutations: int = DEFAULT_PERMUTATIONS,
) -> dict[str, Any]:
    """Analyse the routing of one checkpoint; returns the ``analysis.json`` object (with the
    written paths under ``files``).

    The specialization figures (module docstring) are computed on the rollout's states; the
    played ones (interventions, scores with a replacement, hint zeroed, baselines) on the first
    ``probe_episodes`` seeds (0: none of them).
    """
    model, cfg, ck = load_policy(path, device, routing=routing, temperature=temperature)
    # the teacher's advice and branch logged beside every state (it changes neither the game nor
    # the policy's inputs); the played probes keep the checkpoint's env
    taught = dataclasses.replace(cfg, env=teacher_env(cfg.env))
    res = rollout(
        model, taught, episodes, seed_start, num_envs, workers, greedy, policy_seed,
        collect_states=True, keep_obs=True, progress=progress,
    )  # fmt: skip
    st = res.states
    assert st is not None
    out = Path(out_dir) if out_dir is not None else default_out_dir(path)
    out.mkdir(parents=True, exist_ok=True)
    names = res.expert_names
    labels = state_scenarios(res)
    fig = routing_figures(st.alpha, st.episode, names)
    table = scenario_table(st.alpha, labels, SCENARIOS, names)
    report, means = state_report(
        model, st, labels, res.routing, res.temperature, permutations=permutations,
        actions="greedy" if greedy else "sampled",
    )  # fmt: skip
    if probe_episodes > 0:
        opts = ProbeOptions(probe_episodes, seed_start, num_envs, workers, policy_seed, greedy,
                            progress)  # fmt: skip
        report = run_probes(model, cfg, res, report, means, opts)
    blocks = report.to_json()
    ex = st.expert_action_distribution()
    taken = np.bincount(st.action, minlength=len(res.action_names)) / max(st.n, 1)
    recs = res.records
    summary = summarize_episodes(recs)
    # the longest episode (lowest seed on ties) for the α-over-steps plot
    lengths = {r["seed"]: r["length"] for r in recs}
    ep_seed = min(lengths, key=lambda s: (-lengths[s], s)) if lengths else None
    result: dict[str, Any] = {
        "checkpoint": str(path),
        "name": Path(path).stem,
        "episode": checkpoint_episode(ck),
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "episodes": episodes,
        "seed_start": seed_start,
        "greedy": greedy,
        "policy_seed": policy_seed,
        "routing": res.routing,
        "temperature": res.temperature,
        "n_states": st.n,
        "summary": summary,
        "records": recs,
        "retried": res.retried,
        "failed": res.failed,
        "figures": fig,
        "scenario_table": table,
        "expert_actions": {
            "actions": res.action_names,
            "experts": {n: _by_action(res.action_names, ex[i]) for i, n in enumerate(names)},
            "policy": _by_action(res.action_names, st.policy_action_distribution()),
            "taken": _by_action(res.action_names, taken),
        },
        "moved_actions": {
            "search": res.search_action,
            "descend": res.descend_action,
        },
        **blocks,
        "probe_episodes": min(probe_episodes, episodes),
        "episode_plot_seed": ep_seed,
    }
    files = _plots(out, table, fig, st, names, ep_seed)
    result["files"] = {k: str(p) for k, p in files.items()}
    atomic_write_bytes(files["json"], (json.dumps(result, indent=1) + "\n").encode("utf-8"))
    files["markdown"].write_text(analysis_markdown(result), encoding="utf-8")
    log.info("analysis of %s written to %s", path, out)
    return result


def scenario_markdown(table: dict[str, Any]) -> str:
    """The per-scenario mean-α table as markdown."""
    experts = table["experts"]
    head = "| scenario | states | share | " + " | ".join(f"α {e}" for e in experts)
    head += " | H(α) | top expert |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(experts) + "---:|---|"]
    for k, name in enumerate(table["scenarios"]):
        row = table["mean_alpha"][k]
        cells = [num(x, 3) for x in row] if row is not None else ["–"] * len(experts)
        lines.append(
            f"| {name} | {table['counts'][k]} | {pct(table['shares'][k])} | "
            + " | ".join(cells)
            + f" | {num(table['alpha_entropy'][k], 3)} | {table['argmax_expert'][k] or '–'} |"
        )
    lines.append(f"| **all** | {sum(table['counts'])} | 100.0 % |" + " |" * len(experts) + " | |")
    return "\n".join(lines)


def _reliance_rows(rel: dict[str, Any]) -> list[str]:
    lines = [
        "| replacement | argmax expert changes | α moves (TV) | policy KL | score with it | "
        "score without | paired difference [95 % CI] | episodes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in rel.items():
        if f is None:
            lines.append(f"| {name} | – (no such input) | | | | | | |")
            continue
        lines.append(
            f"| {name} | {pct(f['argmax_change'])} | {num(f['alpha_change'], 3)} | "
            f"{num(f['policy_kl'], 4)} | "
            f"{num(f['mean_score'], 1)} | {num(f['baseline_mean_score'], 1)} | "
            f"{_paired_text(f.get('seeds'), f.get('baseline_scores'), f.get('scores'))} | "
            f"{f['episodes']} |"
        )
    return lines


def _paired_text(seeds: Any, a: Any, b: Any) -> str:
    """``b - a`` paired over ``seeds`` with its CI (``–`` without per-seed figures)."""
    if not seeds or not a or not b or not (len(seeds) == len(a) == len(b)):
        return "– (no per-seed figures)"
    d = PairedDiff.of(dict(zip(seeds, a, strict=True)), dict(zip(seeds, b, strict=True)))
    return d.text() + ("" if d.sign else " (undetermined)")


def _ranking_rows(rd: InterventionReading) -> list[str]:
    lines = [
        "| scenario | outcome | point best | its margin over each other expert [95 % CI] | best |",
        "|---|---|---|---|---|",
    ]
    for s, rk in rd.rankings.items():
        margins = ", ".join(f"{e}: {m.text(3)}" for e, m in rk.margins.items()) or "–"
        best = rk.best or ("undetermined" if rk.point_best else "–")
        lines.append(f"| {s} | {rk.outcome} | {rk.point_best or '–'} | {margins} | {best} |")
    return lines


def _intervention_rows(iv: dict[str, Any]) -> list[str]:
    lines = [
        "| played by | episodes | mean score | depth | died | HP lost / survival step | "
        "kills / combat state | exp / combat state | new cells / exploration step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in iv.items():
        lines.append(
            f"| {name} | {p['episodes']} | {num(p['mean_score'], 1)} | {num(p['depth'], 2)} | "
            f"{pct(p['died'])} | {num(p.get('hp_lost_per_step'), 3)} ({p.get('survival_states', 0)}) | "
            f"{num(p.get('kills_per_combat_state'), 3)} ({p.get('combat_states', 0)}) | "
            f"{num(p.get('exp_per_combat_state'), 2)} | "
            f"{num(p.get('new_cells_per_step'), 3)} ({p.get('exploration_states', 0)}) |"
        )
    return lines


def teacher_markdown(block: Any) -> list[str]:
    """The teacher's-branches part of ``analysis.md`` (a ``teacher`` block; nothing without it):
    branch information next to its nulls, and per branch the agreement and the forced experts."""
    t = TeacherFigures.from_json(block)
    if t is None:
        return []
    md = [
        "Against the scripted teacher's branches (the rollout played with `env.teacher`: the "
        "branch is why the diver would act in the state; it changes neither the game nor the "
        "policy's inputs).\n"
    ]
    info = t.information
    if info is not None:
        md += [
            "| branch information I(argmax expert; branch) | share of H(branch) | permuted: mean / "
            "p95 | p-value | within-episode shifts: p95 / p-value | states |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {num(info.mi, 4)} nats | {pct(info.normalized)} | {num(info.shuffled_mean, 4)} / "
            f"{num(info.shuffled_p95, 4)} | {num(info.p_value, 3)} | {num(info.shifted_p95, 4)} / "
            f"{num(info.shifted_p_value, 3)} | {info.n_states} |\n",
        ]
    iv = t.interventions or {}
    experts = list(next(iter(iv.values())).expert_prob) if iv else []
    md.append(
        f"Per branch: the share of states whose action ({t.actions}) is the teacher's, and whose "
        "argmax of π is; π(teacher's action) with the learned router and with the router forced to "
        f"each expert (one-hot α) on {t.intervention_states} of these states, each a mean over "
        "episodes of per-episode means; the forced expert with the highest is *the* best only "
        "when its paired CI over episodes against every other expert lies above 0 and it leads "
        f"each by at least {100 * MIN_TEACHER_MARGIN:.0f} pp.\n"
    )
    md.append(
        "| branch | states | share | action is the teacher's | argmax is | π router | "
        + "".join(f"π {e} | " for e in experts)
        + "best forced expert | its gain over the router [95 % CI] |"
    )
    md.append("|---|---:|---:|---:|---:|---:|" + "---:|" * len(experts) + "---|---:|")
    total = max(t.n_states, 1)
    for b, a in t.agreement.items():
        x = iv.get(b)
        cells = [num(x.expert_prob.get(e), 3) if x else "–" for e in experts]
        pb = x.ranking.point_best if x else None
        g = x.gain.get(pb) if x is not None and pb is not None else None
        best = (x.best or (f"undetermined (point best {pb})" if pb else "–")) if x else "–"
        label = "**all**" if b == ALL_STATES else b
        md.append(
            f"| {label} | {a.n_states} | {pct(a.n_states / total)} | {pct(a.taken)} | "
            f"{pct(a.argmax)} | {num(x.router_prob, 3) if x else '–'} | "
            + "".join(f"{c} | " for c in cells)
            + f"{best if b != ALL_STATES else ''} | {g.text(3) if g else ''} |"
        )
    return md + [""]


def specialization_markdown(r: dict[str, Any]) -> str:
    """The specialization section of ``analysis.md``: each figure next to its baseline."""
    md = ["## Specialization, each figure next to its baseline\n"]
    sp = r.get("specialization")
    if sp:
        md.append(
            "| scenario information I(argmax expert; scenario) | share of H(scenario) | "
            "permuted: mean / p95 | p-value | within-episode shifts: p95 / p-value | states |"
        )
        md.append("|---:|---:|---:|---:|---:|---:|")
        md.append(
            f"| {num(sp['scenario_mi'], 4)} nats | {pct(sp['scenario_mi_normalized'])} | "
            f"{num(sp['scenario_mi_shuffled_mean'], 4)} / {num(sp['scenario_mi_shuffled_p95'], 4)} | "
            f"{num(sp['scenario_mi_p_value'], 3)} | {num(sp['scenario_mi_shifted_p95'], 4)} / "
            f"{num(sp['scenario_mi_shifted_p_value'], 3)} | {sp['n_states']} |\n"
        )
    if r.get("reliance"):
        md.append(
            "Reliance: the input replaced by its mean over the states (or zeros); the score columns "
            f"are the policy playing with the replacement on the first {r.get('probe_episodes')} "
            "seeds, and without it on the same seeds.\n"
        )
        md += _reliance_rows(r["reliance"]) + [""]
    if r.get("interventions"):
        md.append(
            "Interventions: the router forced to one expert (one-hot α) on the same seeds; "
            "`router` is the learned router. Scenario outcomes (state counts in brackets): HP lost "
            "per step, kills (experience rose) and experience gained (the damage proxy) per combat "
            "state, cells stood on for the first time per exploration step.\n"
        )
        md += _intervention_rows(r["interventions"]) + [""]
        rd = InterventionReading.from_json(r.get("interventions_reading"))
        if rd is not None and rd.rankings:
            md.append(
                "Forced experts ranked per scenario: the point best's margin over each other "
                "expert, paired over the probe seeds both have a value for (positive = the point "
                "best is better); it is *the* best only when every interval lies above 0.\n"
            )
            md += _ranking_rows(rd) + [""]
            own = ", ".join(f"{e} → {s or '–'}" for e, s in rd.own_scenario.items())
            md.append(
                f"Own scenario of each expert ({rd.own_source}: "
                + ("the scenario where the learned router gives it the most weight"
                   if rd.own_source == "router" else "its name, bound by the routing prior")
                + f"): {own}. "
                + "; ".join(f"{e}: {rd.status(e)}" for e in rd.own_scenario)
                + ".\n"
            )  # fmt: skip
        else:
            md.append("No per-seed figures for the forced experts: the ranking is undetermined.\n")
    md += teacher_markdown(r.get(mn.TEACHER))
    h = r.get("hint")
    if h:
        md.append(
            "| hinted move taken | policy score | hint inputs zeroed | zeroed − policy [95 % CI] "
            "| hint follower | follower − policy [95 % CI] | random |"
        )
        md.append("|---:|---:|---:|---:|---:|---:|---:|")
        seeds, pol = h.get("seeds"), h.get("policy_scores")
        md.append(
            f"| {pct(h['follow_share'])} | {num(h['policy_mean_score'], 1)} | "
            f"{num(h['zeroed_mean_score'], 1)} | {_paired_text(seeds, pol, h.get('zeroed_scores'))} | "
            f"{num(h['follower_mean_score'], 1)} | "
            f"{_paired_text(seeds, pol, h.get('follower_scores'))} | "
            f"{num(h['random_mean_score'], 1)} |\n"
        )
    return "\n".join(md) + "\n"


def analysis_markdown(r: dict[str, Any]) -> str:
    """``analysis.md`` from the ``analysis.json`` object."""
    fig, table = r["figures"], r["scenario_table"]
    names = fig["expert_names"]
    E = len(names)
    s = r["summary"]
    md: list[str] = []
    add = md.append
    add(f"# Routing analysis: `{r['name']}`\n")
    how = "greedy" if r["greedy"] else f"sampled, policy seed {r['policy_seed']}"
    add(
        f"Checkpoint `{r['checkpoint']}` (episode {r['episode']}), routing **{r['routing']}** at "
        f"temperature {r['temperature']:.3g}; {r['episodes']} episodes on seeds "
        f"{r['seed_start']}..{r['seed_start'] + r['episodes'] - 1} ({how}), "
        f"{r['n_states']} states. Generated {r['created']}.\n"
    )
    add(f"**Verdict**: {verdict_of(r)}\n")
    if r.get("failed"):
        add(
            f"**Warning**: {len(r['failed'])} episode(s) failed twice and are missing: seeds "
            + ", ".join(str(f["seed"]) for f in r["failed"])
            + "\n"
        )
    add("## Episodes\n")
    add("| n | mean score | median | max | died | depth | length |")
    add("|---:|---:|---:|---:|---:|---:|---:|")
    add(
        f"| {s['n']} | {num(s['mean'], 2)} | {num(s['median'], 1)} | {num(s['max'], 0)} | "
        f"{pct(s['died'])} | {num(s['depth'], 2)} | {num(s['length'], 1)} |\n"
    )
    add(specialization_markdown(r))
    add("## Routing figures: usage balance and per-state sharpness\n")
    add(
        "The load-balance term drives H(ᾱ) to ln E and the alpha-entropy term (with sparsemax at a "
        "low temperature) drives H(α_s) to 0, so any router trained under these losses shows a "
        "high routing MI whatever it routes on: read these as usage balance and sharpness, not as "
        f"specialization. Their own reading: {routing_verdict_text(r)}\n"
    )
    ln_e = math.log(E) if E > 1 else 0.0
    add("| figure | value | reading |")
    add("|---|---:|---|")
    add(
        f"| alpha entropy mean H(α_s) (per-state sharpness) | {num(fig[mn.ALPHA_ENTROPY], 4)} ± "
        f"{num(fig[mn.ALPHA_ENTROPY_STD], 4)} | ln {E} = {ln_e:.4f} is uniform, 0 is one expert per state |"
    )
    add(f"| usage entropy H(ᾱ) | {num(fig[mn.USAGE_ENTROPY], 4)} | how evenly experts are used |")
    add(
        f"| routing MI (usage balance) | {num(mn.routing_value(fig, mn.MI), 4)} | H(ᾱ) − mean H(α_s) |"
    )
    add(f"| effective experts exp H(ᾱ) | {num(fig[mn.EFFECTIVE_EXPERTS], 2)} | 1 = collapse |")
    add(f"| sparsity | {pct(fig[mn.SPARSITY])} | exact zeros in α_s |")
    add(f"| switch rate | {pct(fig[mn.SWITCH_RATE])} | argmax expert changes between steps |\n")
    add("| expert | mean weight ᾱ_i | argmax share |")
    add("|---|---:|---:|")
    for i, n in enumerate(names):
        add(f"| {n} | {num(fig[mn.USAGE][i], 3)} | {pct(fig[mn.ARGMAX_SHARE][i])} |")
    add("")
    add("## Mean α per scenario\n")
    add(
        "Scenarios (DESIGN.md, first match wins): survival (HP < 1/3, Weak, bad condition), combat "
        "(hostile adjacent or within 3), exploration (the hero moved, searched or descended), "
        "general.\n"
    )
    add(scenario_markdown(table) + "\n")
    add("## Each expert's action distribution\n")
    add(
        "Softmax of each expert's own logits averaged over the states; `policy` is the mixed "
        "policy, `taken` the share of the actions actually taken.\n"
    )
    ea = r["expert_actions"]
    add("| action | " + " | ".join(names) + " | policy | taken |")
    add("|---|" + "---:|" * (len(names) + 2))
    for a in ea["actions"]:
        cells = [num(ea["experts"][n][a], 3) for n in names]
        add(
            f"| {a} | "
            + " | ".join(cells)
            + f" | {num(ea['policy'][a], 3)} | {num(ea['taken'][a], 3)} |"
        )
    add("")
    add("## Figures\n")
    for key, cap in (
        ("heatmap", "Mean α per scenario"),
        ("usage", "Expert usage"),
        ("entropy_hist", "Per-state alpha entropy"),
        ("episode", f"α over the steps of the episode on seed {r.get('episode_plot_seed')}"),
    ):
        p = Path(r["files"][key]).name
        add(f"![{cap}]({p})\n")
    return "\n".join(md) + "\n"
