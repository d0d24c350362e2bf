"""The terminal text of ``evaluate`` and ``analyze``: the tables an evaluation or an analysis prints.

:func:`evaluation_text` lays out each played set of an evaluation (scores, routing, the
specialization figures and verdict, the teacher's figures; side by side in columns when the
terminal is wide enough) and :func:`analysis_text` the figures of ``analyze`` with its probes;
both read only the stored figures, the same records the JSON files hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nethack_moe.core.formatting import ci, num, pct
from nethack_moe.metrics import names as mn
from nethack_moe.metrics.motion import MOTION_KINDS
from nethack_moe.metrics.router_figures import RelianceFigure, ScenarioInformation
from nethack_moe.metrics.routing import verdict as routing_verdict
from nethack_moe.metrics.teacher_figures import ALL_STATES, TeacherFigures
from nethack_moe.metrics.verdict import verdict_of


def motion_text(m: dict[str, Any] | None) -> str:
    """The ``motion`` block as four shares (``–`` where it was not measured)."""
    if not m:
        return "–"
    return " / ".join(pct(m[k]) for k in MOTION_KINDS)


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(w)}  {v}" for k, v in rows)


# ------------------------------------------------------------------------------------ evaluate
def _eval_rows(entry: dict[str, Any]) -> list[tuple[str, str]]:
    s = entry["summary"]
    r = s.get("routing") or {}
    rows = [
        (
            "episodes",
            f"{s['n']}" + (f" ({len(entry['failed'])} missing)" if entry.get("failed") else ""),
        ),
        ("mean ± std", f"{num(s['mean'])} ± {num(s['std'])}"),
        ("95 % CI of mean", f"{ci(s['ci_mean'])} ({s.get('ci_method')})"),
        ("median", num(s["median"], 1)),
        ("IQM", num(s["iqm"])),
        ("95 % CI of IQM", ci(s["ci_iqm"])),
        ("max", num(s["max"], 0)),
        ("death rate", pct(s["died"])),
        ("mean depth", num(s["depth"])),
        ("mean length", num(s["length"], 1)),
        ("mean reward", num(s.get("reward"), 3)),
        ("hinted move taken", pct((s.get("hint") or {}).get("follow_share"))),
        ("steps: still / back / revisit / new", motion_text(s.get(mn.MOTION))),
    ]
    if entry.get("greedy_result"):
        g = entry["greedy_result"]["summary"]
        rows.append(
            ("greedy: mean [CI]", f"{num(g['mean'])} {ci(g['ci_mean'])}, died {pct(g['died'])}, "
             f"depth {num(g['depth'])}, hinted move {pct((g.get('hint') or {}).get('follow_share'))}")
        )  # fmt: skip
        rows.append(("greedy steps: still / back / revisit / new", motion_text(g.get(mn.MOTION))))
    if not r:
        return rows + teacher_rows(s.get(mn.TEACHER)) + _entry_notes(entry)
    src = f" (from the {entry['routing_source']})" if entry.get("routing_source") else ""
    rows += [
        ("routing", f"{entry.get('routing')} T={num(entry.get('temperature'), 3)}{src}"),
        (
            "alpha entropy (per-state sharpness)",
            f"{num(r.get(mn.ALPHA_ENTROPY), 4)} ± {num(r.get(mn.ALPHA_ENTROPY_STD), 4)}",
        ),
        ("usage entropy", num(r.get(mn.USAGE_ENTROPY), 4)),
        ("routing MI (usage balance)", num(mn.routing_value(r, mn.MI), 4)),
        ("effective experts", num(r.get(mn.EFFECTIVE_EXPERTS))),
        ("sparsity", pct(r.get(mn.SPARSITY))),
        ("switch rate", pct(r.get(mn.SWITCH_RATE))),
    ]
    names = r.get("expert_names") or []
    usage, share = r.get(mn.USAGE) or [], r.get(mn.ARGMAX_SHARE) or []
    if names and usage:
        rows.append(
            (
                "usage ᾱ / argmax",
                ", ".join(
                    f"{n} {num(u)}/{pct(a)}" for n, u, a in zip(names, usage, share, strict=False)
                ),
            )
        )
    rows.append(("routing figures", routing_verdict(r, len(names))))
    rows += _specialization_rows(s)
    return rows + _entry_notes(entry)


def _specialization_rows(s: dict[str, Any], *, with_verdict: bool = True) -> list[tuple[str, str]]:
    """Scenario information next to its baselines, reliance, and the verdict built from them
    (evaluate and analyze print the same rows)."""
    rows = []
    info = ScenarioInformation.from_json(s.get("specialization"))
    if info is not None:
        null = info.null
        rows.append(
            (
                "scenario information",
                f"{num(info.mi, 4)} nats ({pct(info.normalized)} of H), permuted p95 "
                f"{num(info.shuffled_p95, 4)}, episode-shift p95 {num(info.shifted_p95, 4)}; "
                f"against the {null.name} null: p = {num(null.p_value, 3)}",
            )
        )
    for key, label in (("graph_mean", "h_graph → mean"), ("graph_zero", "h_graph → 0"),
                       ("state_mean", "h_state → mean"), ("state_zero", "h_state → 0")):  # fmt: skip
        f = RelianceFigure.from_json(key, (s.get("reliance") or {}).get(key))
        if f is not None:
            sd = f.score_diff
            score = ""
            if sd is not None and sd.diff is not None:
                score = f", score {sd.text()} (paired, {sd.n} seeds)"
            elif f.score_change is not None:
                score = f", score {f.score_change:+.1f} (no per-seed figures: no CI)"
            rows.append(
                (label, f"argmax expert changes {pct(f.argmax_change)}, α moves "
                        f"{num(f.alpha_change, 3)}, policy KL {num(f.policy_kl, 4)}{score}")
            )  # fmt: skip
    rows += teacher_rows(s.get(mn.TEACHER))
    if with_verdict and (info is not None or s.get("reliance") is not None):
        rows.append(("verdict", verdict_of(s)))
    return rows


def teacher_rows(block: Any) -> list[tuple[str, str]]:
    """The figures against the teacher's branches (a ``teacher`` block), one row each: branch
    information next to its nulls, agreement, and per branch the forced expert that most raises
    π(teacher's action)."""
    t = TeacherFigures.from_json(block)
    if t is None:
        return []
    rows = []
    info = t.information
    if info is not None:
        rows.append(
            (
                "teacher's branch information",
                f"{num(info.mi, 4)} nats ({pct(info.normalized)} of H), permuted p95 "
                f"{num(info.shuffled_p95, 4)}, episode-shift p95 {num(info.shifted_p95, 4)}; "
                f"against the {info.null.name} null: p = {num(info.null.p_value, 3)}",
            )
        )
    a = t.agreement.get(ALL_STATES)
    if a is not None:
        per = ", ".join(f"{b} {pct(x.taken)}" for b, x in t.agreement.items() if b != ALL_STATES)
        am = f", π argmax {pct(a.argmax)}" if a.argmax is not None else ""
        rows.append(
            (
                "teacher's action taken",
                f"{pct(a.taken)} of {a.n_states} states ({t.actions}){am}; {per}",
            )
        )
    for b, x in (t.interventions or {}).items():
        pb = x.ranking.point_best
        g = x.gain.get(pb) if pb is not None else None
        best = x.best or (f"undetermined (point best {pb})" if pb else "–")
        gain = f", {g.text(3)} over the router" if g is not None else ""
        rows.append(
            (
                f"branch {b}",
                f"{x.n_states} states, π(teacher's action) {num(x.router_prob, 3)} with the "
                f"router; best forced expert {best}{gain}",
            )
        )
    return rows


def _entry_notes(entry: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if entry.get("retried"):
        rows.append(("retried (crash)", ", ".join(str(x) for x in entry["retried"])))
    if entry.get("failed"):
        rows.append(("FAILED twice", ", ".join(str(f["seed"]) for f in entry["failed"])))
    return rows


def _side_by_side(ckpts: dict[str, Any]) -> str:
    cols = list(ckpts)
    keys = [
        ("n", lambda s, r: str(s["n"])),
        ("mean", lambda s, r: num(s["mean"])),
        ("95 % CI mean", lambda s, r: ci(s["ci_mean"])),
        ("std", lambda s, r: num(s["std"])),
        ("median", lambda s, r: num(s["median"], 1)),
        ("IQM", lambda s, r: num(s["iqm"])),
        ("95 % CI IQM", lambda s, r: ci(s["ci_iqm"])),
        ("max", lambda s, r: num(s["max"], 0)),
        ("died", lambda s, r: pct(s["died"])),
        ("depth", lambda s, r: num(s["depth"])),
        ("length", lambda s, r: num(s["length"], 1)),
        ("hinted move", lambda s, r: pct((s.get("hint") or {}).get("follow_share"))),
        ("alpha entropy", lambda s, r: num(r.get(mn.ALPHA_ENTROPY), 4)),
        ("routing MI", lambda s, r: num(mn.routing_value(r, mn.MI), 4)),
        ("eff. experts", lambda s, r: num(r.get(mn.EFFECTIVE_EXPERTS))),
        ("switch rate", lambda s, r: pct(r.get(mn.SWITCH_RATE))),
    ]
    table = [["", *cols]]
    for label, fn in keys:
        row = [label]
        for c in cols:
            s = ckpts[c]["summary"]
            row.append(fn(s, s.get("routing") or {}))
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for j, r in enumerate(table):
        lines.append("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _columns(ckpts: dict[str, Any]) -> dict[str, Any]:
    """One column per played set of episodes: each checkpoint (sampled, then greedy beside it)
    and each baseline."""
    cols: dict[str, Any] = {}
    for name, entry in ckpts.items():
        label = name + (" (greedy)" if entry.get("greedy") else "")
        cols[label] = entry
        if entry.get("greedy_result"):
            cols[f"{name} (greedy)"] = entry["greedy_result"]
    return cols


def _entry_header(name: str, entry: dict[str, Any], proto: str, seeds: str) -> str:
    if entry.get("player", "policy") != "policy":
        return f"{name} — baseline, {proto}, {seeds}"
    mode = "greedy" if entry.get("greedy") else "sampled"
    return f"{name} — {entry['path']} (episode {entry['episode']}), {proto} {mode}, {seeds}"


def evaluation_text(res: dict[str, Any]) -> str:
    """What ``evaluate`` prints for an evaluation JSON object, every verdict built from its
    figures (also used to re-render a stored evaluation file)."""
    proto = res["protocol"]
    seeds = f"seeds {res['seed_start']}..{res['seed_start'] + res['episodes'] - 1}"
    out: list[str] = []
    for name, entry in res["checkpoints"].items():
        out += [_entry_header(name, entry, proto, seeds), _rows(_eval_rows(entry)), ""]
    cols = _columns(res["checkpoints"])
    if len(cols) > 1:
        out += [
            f"side by side ({proto}, score; 95 % bootstrap CIs; same seeds)",
            _side_by_side(cols),
            "",
        ]
    out += [f"wrote {p}" for p in res.get("written", [])]
    return "\n".join(out) + "\n"


def analysis_text(r: dict[str, Any]) -> str:
    """What ``analyze`` prints for an ``analysis.json`` object, the verdict built from its
    figures (also used to re-render a stored analysis)."""
    from nethack_moe.analysis.analyze import scenario_markdown

    fig = r["figures"]
    head = (
        f"{r['name']} (episode {r['episode']}), routing {r['routing']} T={r['temperature']:.3g}, "
        f"{r['episodes']} episodes, {r['n_states']} states; probes on {r.get('probe_episodes', 0)} seeds"
    )
    rows = _rows(
        [
            ("alpha entropy (per-state sharpness)", num(fig[mn.ALPHA_ENTROPY], 4)),
            ("usage entropy", num(fig[mn.USAGE_ENTROPY], 4)),
            ("routing MI (usage balance)", num(mn.routing_value(fig, mn.MI), 4)),
            ("effective experts", num(fig[mn.EFFECTIVE_EXPERTS])),
            ("sparsity", pct(fig[mn.SPARSITY])),
            ("switch rate", pct(fig[mn.SWITCH_RATE])),
            *_specialization_rows(r, with_verdict=False),
            *_probe_rows(r),
        ]
    )
    files = r.get("files") or {}
    where = Path(files["markdown"]).parent if files.get("markdown") else Path(".")
    return (
        "\n".join(
            [
                head,
                rows,
                "",
                scenario_markdown(r["scenario_table"]),
                "",
                f"Verdict: {verdict_of(r)}",
                f"wrote {where}/ (analysis.json, analysis.md, 4 PNGs)",
            ]
        )
        + "\n"
    )


def _probe_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Interventions and hint reliance of an ``analysis.json`` object, one row each."""
    rows = []
    for name, p in (r.get("interventions") or {}).items():
        rows.append(
            (
                f"forced: {name}" if name != "router" else "learned router",
                f"score {num(p['mean_score'], 1)}, depth {num(p['depth'])}, died {pct(p['died'])}; "
                f"HP lost/step {num(p.get('hp_lost_per_step'), 3)}, kills/combat state "
                f"{num(p.get('kills_per_combat_state'), 3)}, new cells/step "
                f"{num(p.get('new_cells_per_step'), 3)}",
            )
        )
    h = r.get("hint") or {}
    if h:
        rows.append(
            (
                "hint",
                f"hinted move taken {pct(h.get('follow_share'))}; score {num(h.get('policy_mean_score'), 1)}, "
                f"hint zeroed {num(h.get('zeroed_mean_score'), 1)}, hint follower "
                f"{num(h.get('follower_mean_score'), 1)}, random {num(h.get('random_mean_score'), 1)}",
            )
        )
    return rows
