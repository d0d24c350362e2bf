"""Look inside a checkpoint's routing: ``nethack-moe analyze CKPT``.

Rolls the policy out on evaluation seeds with every visited state logged, labels each state with
its scenario (DESIGN.md, "Scenarios": ``moved`` = position or depth changed since the previous step,
or the action was search / descend, indices taken from the env's own action list), and writes to
``out_dir`` (default ``RUN/analysis/<stem>/``):

* ``analysis.json``: routing figures (alpha entropy, usage entropy, routing MI, effective experts,
  sparsity, switch rate, usage and argmax shares), the per-scenario mean-α table with counts, each
  expert's action distribution (softmax of its logits averaged over the states), the verdict;
* ``analysis.md``: the same as markdown tables, the verdict stated plainly;
* ``alpha_heatmap.png`` (scenario × expert), ``usage.png``, ``alpha_entropy_hist.png``,
  ``alpha_episode.png`` (α over the steps of the longest episode).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.analysis import plots
from nethack_moe.analysis.routing import entropy, routing_figures, scenario_table, verdict
from nethack_moe.analysis.scenarios import SCENARIOS
from nethack_moe.checkpoint import atomic_write_bytes
from nethack_moe.evaluation import (
    E200_SEED_START,
    checkpoint_episode,
    load_policy,
    rollout,
    state_scenarios,
    summarize_episodes,
)

log = logging.getLogger(__name__)


def default_out_dir(path: str | Path) -> Path:
    """``RUN/analysis/<stem>/`` for ``RUN/checkpoints/<stem>.pt``, else ``<dir>/analysis/<stem>/``."""
    p = Path(path)
    root = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return root / "analysis" / p.stem


def plain_verdict(v: str) -> str:
    """The verdict of :func:`nethack_moe.analysis.routing.verdict` as a sentence."""
    if v.startswith(("collapsed", "never")):
        s = "Routing has " + v
    elif v.startswith(("not specialized", "specialized", "weakly")):
        s = "Routing is " + v
    elif v.startswith("a single expert"):
        s = "This model has " + v
    else:
        s = v[:1].upper() + v[1:]
    return s if s.endswith(".") else s + "."


def _f(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    f = float(v)
    return f"{f:.{nd}f}" if math.isfinite(f) else str(f)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


def _by_action(names: list[str], p: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, p, strict=True)}


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
) -> dict[str, Any]:
    """Analyse the routing of one checkpoint; returns the ``analysis.json`` object (with the
    written paths under ``files``)."""
    model, cfg, ck = load_policy(path, device, routing=routing, temperature=temperature)
    res = rollout(
        model, cfg, episodes, seed_start, num_envs, workers, greedy, policy_seed,
        collect_states=True, progress=progress,
    )  # fmt: skip
    st = res.states
    assert st is not None
    out = Path(out_dir) if out_dir is not None else default_out_dir(path)
    out.mkdir(parents=True, exist_ok=True)
    names = res.expert_names
    E = len(names)
    labels = state_scenarios(res)
    fig = routing_figures(st.alpha, st.episode, names)
    table = scenario_table(st.alpha, labels, SCENARIOS, names)
    v = verdict(fig, E)
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
        "verdict": v,
        "verdict_text": plain_verdict(v),
        "episode_plot_seed": ep_seed,
    }
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
        cells = [_f(x) for x in row] if row is not None else ["–"] * len(experts)
        lines.append(
            f"| {name} | {table['counts'][k]} | {_pct(table['shares'][k])} | "
            + " | ".join(cells)
            + f" | {_f(table['alpha_entropy'][k])} | {table['argmax_expert'][k] or '–'} |"
        )
    lines.append(f"| **all** | {sum(table['counts'])} | 100.0 % |" + " |" * len(experts) + " | |")
    return "\n".join(lines)


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
    add(f"**Verdict**: {r['verdict_text']}\n")
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
        f"| {s['n']} | {_f(s['mean'], 2)} | {_f(s['median'], 1)} | {_f(s['max'], 0)} | "
        f"{_pct(s['died'])} | {_f(s['depth'], 2)} | {_f(s['length'], 1)} |\n"
    )
    add("## Routing figures\n")
    ln_e = math.log(E) if E > 1 else 0.0
    add("| figure | value | reading |")
    add("|---|---:|---|")
    add(
        f"| alpha entropy mean H(α_s) | {_f(fig['alpha_entropy'], 4)} ± "
        f"{_f(fig['alpha_entropy_std'], 4)} | ln {E} = {ln_e:.4f} is uniform, 0 is one expert per state |"
    )
    add(f"| usage entropy H(ᾱ) | {_f(fig['usage_entropy'], 4)} | how evenly experts are used |")
    add(f"| routing MI | {_f(fig['routing_mi'], 4)} | dependence of the expert on the state |")
    add(f"| effective experts exp H(ᾱ) | {_f(fig['effective_experts'], 2)} | 1 = collapse |")
    add(f"| sparsity | {_pct(fig['sparsity'])} | exact zeros in α_s |")
    add(f"| switch rate | {_pct(fig['switch_rate'])} | argmax expert changes between steps |\n")
    add("| expert | mean weight ᾱ_i | argmax share |")
    add("|---|---:|---:|")
    for i, n in enumerate(names):
        add(f"| {n} | {_f(fig['usage'][i])} | {_pct(fig['argmax_share'][i])} |")
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
        cells = [_f(ea["experts"][n][a]) for n in names]
        add(f"| {a} | " + " | ".join(cells) + f" | {_f(ea['policy'][a])} | {_f(ea['taken'][a])} |")
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
