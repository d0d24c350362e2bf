"""Replays of seeded episodes: one episode recorded with a checkpoint's policy or a baseline, and
the replays of an evaluation's best, median and worst episodes.

:func:`record_episode` plays the evaluation episode of ``seed`` (the same player, seeds and action
generators as ``evaluate``) and returns all its frames (:mod:`nethack_moe.evaluation.frames`),
optionally with NLE's ttyrec recording (:func:`ttyrec3_to_ttyrec` turns it into a plain ttyrec);
:func:`write_eval_replays` writes one HTML page per picked episode
(:mod:`nethack_moe.evaluation.replay_page`) and an index page. ``watch`` prints the same frames to
a terminal.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nethack_moe.envs.factory import EnvConfig
from nethack_moe.evaluation.frames import EpisodeMeta, Frame, play_frames
from nethack_moe.evaluation.loading import action_names, load_policy
from nethack_moe.evaluation.players import ModelPlayer, Player, make_baseline
from nethack_moe.evaluation.replay_page import write_html
from nethack_moe.game.actions import check_action_set

ROWS, COLS = 24, 80


def _teacher_works(env_cfg: EnvConfig) -> bool:
    """Whether the scripted teacher knows this env's action set (``env.teacher`` validates)."""
    import dataclasses

    try:
        dataclasses.replace(env_cfg, teacher=True).validate()
    except ValueError:
        return False
    return True


def record_episode(
    checkpoint: str | Path | None = None,
    baseline: str | None = None,
    seed: int = 100000,
    greedy: bool = False,
    steps: int | None = None,
    ttyrec_dir: str | Path | None = None,
    device: str = "cpu",
    policy_seed: int = 0,
    teacher: bool = True,
) -> tuple[list[Frame], EpisodeMeta]:
    """Play the episode of ``seed`` with a checkpoint's policy or a baseline; all its frames.
    ``teacher``: show the scripted teacher's advice at every step (it never changes the play)."""

    if checkpoint is not None:
        model, cfg, _ = load_policy(checkpoint, device)
        env_cfg = cfg.env
        player: Player = ModelPlayer(model, greedy=greedy, policy_seed=policy_seed)
        name = Path(checkpoint).stem
    elif baseline is not None:
        env_cfg = EnvConfig()
        names, raw = action_names(env_cfg)
        check_action_set(raw)
        player = make_baseline(baseline, len(names), policy_seed)
        name = baseline
    else:
        raise ValueError("record_episode needs a checkpoint or a baseline")
    names, _ = action_names(env_cfg)
    teacher = teacher and _teacher_works(env_cfg)
    frames = list(
        play_frames(player, env_cfg, seed, steps=steps, ttyrec_dir=ttyrec_dir, teacher=teacher)
    )
    meta = EpisodeMeta(
        player=name,
        seed=int(seed),
        greedy=bool(greedy and checkpoint is not None),
        expert_names=list(player.expert_names),
        routing=player.routing,
        temperature=player.temperature,
        action_names=names,
    )
    return frames, meta


def ttyrec3_to_ttyrec(src: str | Path, dst: str | Path) -> Path:
    """NLE's recording (``*.ttyrec3.bz2``: each record ``sec, usec, len`` and a channel byte; 0 is
    terminal output, 1 the key pressed, 2 the score) as a plain ttyrec file of the output records,
    which any ttyrec player (``ttyplay``, ``ipbt``, termrec) replays."""
    import bz2
    import struct

    raw = bz2.open(src).read()
    out = bytearray()
    off = 0
    while off < len(raw):
        if off + 13 > len(raw):
            raise ValueError(f"{src}: truncated record header at byte {off}")
        sec, usec, n, channel = struct.unpack_from("<iiiB", raw, off)
        body = raw[off + 13 : off + 13 + n]
        if len(body) != n:
            raise ValueError(f"{src}: truncated record at byte {off}")
        if channel == 0:
            out += struct.pack("<iii", sec, usec, n) + body
        off += 13 + n
    p = Path(dst)
    p.write_bytes(bytes(out))
    return p


# ------------------------------------------------------------------ replays of an evaluation
@dataclass
class ReplayLink:
    """One replayed episode of an evaluation (a row of the index page)."""

    player: str
    tag: str
    """``best``, ``median`` or ``worst`` (with a rank when K > 1)."""
    seed: int
    score: int
    """The score the evaluation recorded for this seed."""
    replayed_score: int
    path: str


def pick_episodes(episodes: Sequence[dict[str, Any]], k: int) -> list[tuple[str, dict[str, Any]]]:
    """The best, the median and the worst ``k`` episodes by score (ties by seed), no repeats."""
    order = sorted(episodes, key=lambda e: (-float(e["score"]), int(e["seed"])))
    n = len(order)
    mid = max(0, n // 2 - k // 2)
    groups = [("best", order[:k]), ("median", order[mid : mid + k]), ("worst", order[::-1][:k])]
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[int] = set()
    for tag, eps in groups:
        for i, e in enumerate(eps):
            if int(e["seed"]) not in seen:
                seen.add(int(e["seed"]))
                out.append((tag if k == 1 else f"{tag} {i + 1}", e))
    return out


def _players(result: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(label, entry, greedy) of every played set of an evaluation JSON object."""
    out = []
    for name, entry in result["checkpoints"].items():
        out.append((name, entry, bool(entry.get("greedy"))))
        g = entry.get("greedy_result")
        if g:
            out.append((f"{name} (greedy)", {**entry, **g}, True))
    return out


def write_eval_replays(
    result: dict[str, Any],
    out_dir: str | Path,
    k: int = 1,
    ttyrec_dir: str | Path | None = None,
    device: str = "cpu",
) -> Path:
    """Replays of the best, median and worst ``k`` episodes of every player of an evaluation,
    and ``index.html`` linking them; returns the index. A replayed score that differs from the
    evaluation's is shown on the index (the episode would not be the evaluation's)."""
    out = Path(out_dir)
    links: list[ReplayLink] = []
    for label, entry, greedy in _players(result):
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
        for tag, ep in pick_episodes(entry.get("episodes") or [], k):
            seed = int(ep["seed"])
            tty = None if ttyrec_dir is None else Path(ttyrec_dir) / slug / f"seed_{seed}"
            frames, meta = record_episode(
                checkpoint=entry.get("path") if entry.get("player", "policy") == "policy" else None,
                baseline=None if entry.get("player", "policy") == "policy" else entry["player"],
                seed=seed, greedy=greedy, steps=result.get("max_steps"), ttyrec_dir=tty,
                device=device, policy_seed=int(result.get("policy_seed", 0)),
            )  # fmt: skip
            meta.title = f"{label}: {tag} episode (seed {seed})"
            page = write_html(frames, meta, out / slug / f"seed_{seed}.html")
            if tty is not None:
                for rec in tty.glob("*.ttyrec3.bz2"):
                    ttyrec3_to_ttyrec(
                        rec, rec.with_name(rec.name.replace(".ttyrec3.bz2", ".ttyrec"))
                    )
            rel = str(page.relative_to(out))
            links.append(ReplayLink(label, tag, seed, int(ep["score"]), frames[-1].score, rel))
    return _write_index(out / "index.html", links, result)


def _write_index(path: Path, links: list[ReplayLink], result: dict[str, Any]) -> Path:
    rows = []
    for r in links:
        same = "" if r.score == r.replayed_score else f" (replayed: {r.replayed_score}: differs)"
        rows.append(
            f"<tr><td>{html.escape(r.player)}</td><td>{r.tag}</td><td>{r.seed}</td>"
            f'<td>{r.score}{same}</td><td><a href="{html.escape(r.path)}">replay</a></td></tr>'
        )
    proto = html.escape(str(result.get("protocol", "")))
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Replays</title>'
        "<style>body{font:14px system-ui,sans-serif;margin:16px}td,th{padding:2px 10px;"
        "text-align:left}</style></head><body>"
        f"<h1>Replays of an evaluation ({proto})</h1>"
        "<table><tr><th>player</th><th>episode</th><th>seed</th><th>score</th><th></th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
