"""The sections of the training report: one function per section, each taking the loaded
:class:`~nethack_moe.report.data.ReportData` and returning its markdown lines (joined with
newlines by :func:`nethack_moe.report.write_report`, in the order of :data:`SECTIONS`).

This module holds the later sections (evaluation, expectations, stability, checkpoints, figures,
configuration) and :data:`SECTIONS`; the header and the executive summary are in
:mod:`nethack_moe.report.summary_sections`, the training sections (phases, performance, segments,
score distribution, routing) in :mod:`nethack_moe.report.training_sections`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.analysis import plots
from nethack_moe.config.loss_terms import TOTAL
from nethack_moe.core import formatting as fmt
from nethack_moe.core.formatting import markdown_table, num
from nethack_moe.report.compare import same_seeds_table, specialization_table, summary_table
from nethack_moe.report.data import ReportData
from nethack_moe.report.expectations import check_expectation, known_metrics_text
from nethack_moe.report.summary_sections import executive_summary, header
from nethack_moe.report.training_sections import (
    performance,
    phase_table,
    routing,
    score_distribution,
    segments,
)
from nethack_moe.report.training_stats import PhaseStats, finite, mean_of
from nethack_moe.runs.rundir import RunDir

log = logging.getLogger(__name__)


def _safe(s: str) -> str:
    """``s`` usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


# ------------------------------------------------------------------------------------ evaluation
SPECIALIZATION_NOTE = (
    "Scenario information is I(argmax expert; scenario label) on the evaluation states; it counts "
    "only above the p95 of the same figure with the expert assignments permuted across states and "
    "shifted within episodes. Reliance: the share of states whose argmax expert changes when "
    "h_graph or h_state is replaced by its mean over the states. Hinted move taken: read it "
    "against the hint follower's. Routing MI and effective experts (section 2) measure usage "
    "balance, not specialization (PROTOCOL.md).\n"
)


def evaluation(d: ReportData) -> list[str]:
    """Every evaluated set of episodes with CIs; greedy runs and baselines against the sampled
    policy on the same seeds; the specialization figures next to their baselines."""
    md = ["## 3. Evaluation\n"]
    if not d.evals:
        return md + ["No evaluation files (`eval/*.json`).\n", "---\n"]
    o = d.options
    md.append(summary_table(d.groups, d.group_summaries))
    md.append("")
    md.append(
        f"Seeds core = disp = 100000 + i (E200). CIs: bootstrap, {o.n_resamples} resamples.\n"
    )
    same = same_seeds_table(d.groups, n_resamples=o.n_resamples, seed=o.seed)
    if same:
        md += ["### Greedy beside sampled, and the baselines, on the same seeds\n", same, ""]
        md.append(
            "Difference: mean score of the row minus the sampled policy's on the seeds both "
            f"played (paired bootstrap, {o.n_resamples} resamples).\n"
        )
    spec = specialization_table(d.groups)
    if spec:
        md += ["### Specialization, each figure next to its baseline\n", SPECIALIZATION_NOTE]
        md += [spec, ""]
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ expectations
_MARKS = {
    "met": "✅ met",
    "not met": "❌ not met",
    "no data": "– no data",
    "unparsed": "? target not understood",
}


def _expectations_of(cfg: dict[str, Any]) -> Any:
    exp = cfg.get("expectations")
    if exp is None and isinstance(cfg.get("report"), dict):
        exp = cfg["report"].get("expectations")
    return exp


def expectations(d: ReportData) -> list[str]:
    """Each expectation of the config against the figure it names."""
    md = ["## 4. Expectations vs actual\n"]
    exp = _expectations_of(d.config)
    if isinstance(exp, dict) and exp:
        rows = []
        for k, target in exp.items():
            actual = d.metrics.get(str(k))
            status, text = check_expectation(target, actual)
            if str(k) not in d.metrics:
                status = "unknown metric"
            rows.append([f"`{k}`", text, num(actual, 4), _MARKS.get(status, status)])
        md += [markdown_table(["metric", "target", "actual", "status"], rows), ""]
        if any(r[3] in ("unknown metric", _MARKS["unparsed"]) for r in rows):
            md.append(
                "Targets are written `'>= x'`, `'<= x'`, `'> x'`, `'< x'`, `'== x'` or "
                "`'a..b'`. " + known_metrics_text(d.metrics, [s.name for s in d.phases]) + "\n"
            )
    elif exp is not None and exp != {}:
        md.append("The config's `expectations` is not a mapping of metric → target; ignored.\n")
    else:
        md.append(
            "The config states no `expectations:` (a mapping of metric → target such as "
            '`final_phase_mean_score: ">= 15"`).\n'
        )
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ stability
_STABILITY_EVENTS = {
    "nonfinite_skip",
    "worker_restart",
    "dropped_episode",
    "interrupted",
    "resumed",
}


def _stability_rows(d: ReportData) -> list[list[str]]:
    run, stab = d.run, d.stability
    skipped = [u for u in run.updates if u.skipped]
    terms = Counter(str(u.nonfinite_term) for u in skipped if u.nonfinite_term)
    rows = [
        ["updates logged", str(len(run.updates))],
        [
            "updates skipped (NaN/Inf)",
            f"{len(skipped)}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in terms.items())})" if terms else ""),
        ],
        ["`nonfinite_skip` events", str(stab.nonfinite_skip_events)],
        ["worker restarts", str(stab.worker_restarts)],
        ["dropped episodes (unfinished when a worker died)", str(stab.dropped_episodes)],
        ["interruptions", str(stab.interrupted)],
        ["resumes", str(stab.resumed)],
        [
            "torn / non-JSON lines skipped in metrics.jsonl",
            f"{len(run.bad_lines)}"
            + (f" (lines {', '.join(map(str, run.bad_lines[:10]))})" if run.bad_lines else ""),
        ],
        [
            "episode / update records superseded after a resume",
            f"{run.duplicate_episodes} / {run.duplicate_updates}",
        ],
    ]
    other = Counter(str(e.kind) for e in run.events)
    rows += [[f"`{k}` events", str(v)] for k, v in sorted(other.items())
             if k not in _STABILITY_EVENTS]  # fmt: skip
    return rows


def _optimizer_row(st: PhaseStats) -> list[str]:
    ups = st.updates
    gn = finite([u.grad_norm for u in ups])
    sps = finite([u.sps for u in ups])
    return [
        st.name,
        num(mean_of([u.approx_kl for u in ups]), 4),
        num(mean_of([u.clip_frac for u in ups]), 3),
        num(mean_of([u.explained_var for u in ups]), 3),
        f"{num(np.median(gn) if gn.size else None)} / {num(gn.max() if gn.size else None)}",
        num(mean_of([u.loss(TOTAL) for u in ups]), 4),
        fmt.MISSING if st.lr is None else f"{float(st.lr):.3g}",
        num(float(sps.mean()) if sps.size else None, 0),
    ]


def stability(d: ReportData) -> list[str]:
    """Skipped updates, worker restarts, dropped episodes, torn lines; optimizer figures."""
    md = ["## 5. Training stability\n", markdown_table(["item", "count"], _stability_rows(d)), ""]
    if d.run.updates:
        md.append(
            markdown_table(
                ["phase", "approx KL", "clip frac", "explained var", "grad norm median / max",
                 "total loss", "lr", "SPS (trainer's)"],
                [_optimizer_row(st) for st in d.phases if st.updates],
            )
        )  # fmt: skip
        md.append("")
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ checkpoints
def checkpoints(d: ReportData) -> list[str]:
    """The checkpoint files with their logged episode and kind."""
    md = ["## 6. Checkpoints\n"]
    ck_dir, files = RunDir(d.run_dir).checkpoints, RunDir(d.run_dir).checkpoint_files()
    by_name = {Path(c.path or "").name: c for c in d.run.checkpoints}
    if files:
        rows = []
        for p in files:
            rec = by_name.get(p.name)
            if rec is not None:
                ep = "–" if rec.episode is None else str(rec.episode)
                kind = "–" if rec.kind is None else rec.kind
            else:
                m = re.search(r"(\d+)(?!.*\d)", p.stem)
                ep, kind = (f"{int(m.group(1))} (from the name)" if m else "–"), "–"
            rows.append([f"`{p.name}`", fmt.file_size(p.stat().st_size), ep, kind])
        md += [f"`{ck_dir}`\n", markdown_table(["file", "size", "episode", "kind"], rows), ""]
    else:
        md.append(f"No checkpoint files in `{ck_dir}`.\n")
    missing = [n for n in by_name if not (ck_dir / n).is_file()]
    if missing:
        md.append(f"Logged but not on disk: {', '.join(f'`{n}`' for n in missing)}.\n")
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ figures
def _draw_figures(d: ReportData, figs: list[tuple[str, Path]]) -> None:
    """Draw the report's plots into ``d.plot_dir``, appending ``(title, path)`` of each to
    ``figs`` (what was drawn before a failure stays there)."""
    run, out = d.run, d.plot_dir
    tp = plots.plot_training_curves(
        run.episodes, run.updates, out / "training", window=d.options.window
    )
    if run.episodes:
        figs.append(("Score and reward per episode", tp[0]))
    if len(tp) > 1:
        figs.append(("Routing during training", tp[1]))
    if d.with_episodes:
        scores = {s.name: s.scores.tolist() for s in d.with_episodes}
        title = "Score per phase (training episodes)"
        figs.append(
            ("Score per phase", plots.plot_compare(scores, out / "phase_scores.png", title=title))
        )
    routed = d.routed
    if routed and routed[-1].routing.usage:
        st = routed[-1]
        path = plots.plot_usage_bars(
            st.routing.figures(), d.expert_names, out / "usage_last_phase.png"
        )
        figs.append((f"Expert usage ({st.name})", path))
    if d.groups:
        inputs = {g.name: g.plot_input() for g in d.groups}
        path = plots.plot_compare(inputs, out / "eval_compare.png", title="Evaluation scores")
        figs.append(("Evaluation", path))
    for r in d.latest_eval.entries if d.latest_eval else []:
        tab = r.routing.get("scenario_table")
        if isinstance(tab, dict) and tab.get("mean_alpha"):
            path = plots.plot_alpha_heatmap(tab, out / f"scenario_alpha_{_safe(r.checkpoint)}.png")
            figs.append((f"Mean α per scenario ({r.checkpoint})", path))


def figures(d: ReportData) -> list[str]:
    """The plots, embedded with paths relative to the report."""
    md = ["## 7. Figures\n"]
    figs: list[tuple[str, Path]] = []
    try:
        _draw_figures(d, figs)
    except Exception:  # noqa: BLE001 - a figure must not cost the whole report
        log.exception("plotting failed")
        md.append("Plotting failed (see the log); the tables above are complete.\n")
    for title, p in figs:
        md += [f"**{title}**\n", f"![{title}]({d.plot_rel}/{p.name})\n"]
    if not figs:
        md.append("No figures (no data).\n")
    md.append("---\n")
    return md


# ------------------------------------------------------------------------------------ configuration
def _temperature_text(temp: Any) -> str:
    if temp is None:
        return fmt.MISSING
    return " → ".join(f"{float(t):g}" for t in temp) if isinstance(temp, list) else str(temp)


def _curriculum_table(d: ReportData) -> list[str]:
    rows = []
    for ph in d.run.phases:
        sp = ph.spec
        coeffs = sp.get("coefficients")
        coeffs = coeffs if isinstance(coeffs, dict) else {}
        rows.append(
            [
                ph.name,
                f"{ph.start}–{'…' if ph.end is None else ph.end}",
                str(sp.get("routing", "–")),
                _temperature_text(sp.get("temperature")),
                "–" if sp.get("lr") is None else f"{float(sp['lr']):g}",
                ", ".join(f"{k}={v}" for k, v in coeffs.items()) or "–",
            ]
        )
    return [
        markdown_table(["phase", "episodes", "routing", "temperature", "lr", "coefficients"], rows),
        "",
    ]


def configuration(d: ReportData) -> list[str]:
    """The curriculum's phases and the resolved config."""
    run = d.run
    md = ["## 8. Configuration\n"]
    if run.phases and any(p.spec for p in run.phases):
        md += _curriculum_table(d)
    if run.config_text is not None:
        md += [f"Resolved config (`{run.config_source}`):\n", "```yaml"]
        md += [run.config_text.rstrip(), "```\n"]
    elif run.config is not None:
        import yaml

        text = yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True).rstrip()
        md += [f"Resolved config from the {run.config_source}:\n", "```yaml", text, "```\n"]
    else:
        md.append(
            "No config file (`config.yaml`) in the run directory and no `run_start` record: "
            "phases were inferred from the episode records.\n"
        )
    return md


#: The report's sections, in order.
SECTIONS: tuple[Callable[[ReportData], list[str]], ...] = (
    header,
    executive_summary,
    phase_table,
    performance,
    segments,
    score_distribution,
    routing,
    evaluation,
    expectations,
    stability,
    checkpoints,
    figures,
    configuration,
)
