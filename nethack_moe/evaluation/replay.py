"""One seeded episode, recorded step by step, and written as a self-contained HTML replay.

:func:`play_frames` plays one episode in an in-process env (game seeds ``core = disp = seed``,
PROTOCOL.md) with any :class:`~nethack_moe.players.Player` and yields a :class:`Frame` per step:
the 24x80 terminal (characters and colours) before the action, the experts' weights, the policy's
top actions, the hinted move, score, depth, HP and the step's reward. The episode is the
evaluation episode of ``seed`` (the same player, seeds and action generators as ``evaluate``).

:func:`write_html` writes the frames as one HTML file that makes no network request: the screens
are stored as key frames every :data:`KEY_EVERY` steps plus per-step deltas (runs of changed cells),
so 500 steps stay well under 2 MB. The page has play/pause, step back/forward, a slider, a speed
choice, the arrow keys, and a strip of the argmax expert over the episode to jump to where the
routing changes. ``watch`` prints the same frames to a terminal.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nle import nethack as nh

from nethack_moe.envs import teacher as T
from nethack_moe.envs.factory import EnvConfig, make_env, seed_env
from nethack_moe.envs.shaping import hint_action
from nethack_moe.evaluation.loading import action_names, load_policy
from nethack_moe.evaluation.players import ModelPlayer, Player, make_baseline
from nethack_moe.features import FeatureSpec, compute_features, new_memory
from nethack_moe.game.actions import check_action_set
from nethack_moe.models.acting import Obs, Teacher

#: Steps between full screens in the HTML (the others are deltas against the previous step).
KEY_EVERY = 50
#: Actions listed per step (the policy's most probable).
TOP_K = 5
ROWS, COLS = 24, 80


@dataclass
class Frame:
    """One step of an episode: what the player saw and did."""

    step: int
    chars: np.ndarray
    """``[24, 80]`` uint8 terminal characters before the action."""
    colors: np.ndarray
    """``[24, 80]`` int8 NetHack colours (0..15) of those characters."""
    action: int
    top: list[tuple[int, float]]
    """The policy's ``TOP_K`` most probable actions with their probabilities (rule players: the
    action taken with probability 1)."""
    alpha: list[float]
    """Expert weights (empty for rule players)."""
    hint: int
    """The action the navigation hint advises (-1: none)."""
    teacher: int
    """The scripted teacher's (diver's) action (-1: no teacher)."""
    branch: str
    """Why the teacher chose it (``fight``, ``explore``, ...; empty without a teacher)."""
    reward: float
    score: int
    """Score gained since the episode's start, after this step."""
    depth: int
    hp: int
    hp_max: int
    done: bool
    died: bool
    final_chars: np.ndarray | None = None
    """``[24, 80]`` the screen after the last step (``final_screen=True``, last frame only)."""


@dataclass
class EpisodeMeta:
    """What the replay page shows about the whole episode."""

    player: str
    seed: int
    greedy: bool
    expert_names: list[str]
    routing: str | None
    temperature: float | None
    action_names: list[str]
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _top(logits: torch.Tensor | None, action: int) -> list[tuple[int, float]]:
    if logits is None:
        return [(action, 1.0)]
    p = torch.softmax(logits.float(), dim=-1)
    v, i = torch.topk(p, min(TOP_K, p.numel()))
    return [(int(a), float(q)) for a, q in zip(i, v, strict=True)]


def play_frames(
    player: Player,
    env_cfg: EnvConfig,
    seed: int,
    steps: int | None = None,
    ttyrec_dir: str | Path | None = None,
    final_screen: bool = False,
    teacher: bool = False,
) -> Iterator[Frame]:
    """Play the episode of ``seed`` with ``player`` in one in-process env; a :class:`Frame` per
    step. ``ttyrec_dir``: NLE also records the game there as ttyrec files (its ``savedir``).
    ``final_screen``: the last frame also carries the screen after its step. ``teacher``: compute
    the scripted teacher's advice beside the features, as the env workers do with ``env.teacher``
    (always on for a player that needs it)."""
    teach = teacher or bool(getattr(player, "needs_teacher", False))
    tmem = T.new_teacher_memory(1) if teach else None
    env = make_env(env_cfg, extra_keys=("tty_colors",), savedir=ttyrec_dir)
    spec = FeatureSpec(crop_size=env_cfg.crop_size)
    cap = env_cfg.max_episode_steps if steps is None else min(int(steps), env_cfg.max_episode_steps)
    player.start_episode(0, seed)
    try:
        seed_env(env, seed, seed)
        obs, _ = env.reset()
        mem = new_memory(1)
        score0 = int(obs["blstats"][nh.NLE_BL_SCORE])
        score = 0
        for t in range(cap):
            st, cr, at = compute_features(
                obs["glyphs"][None], obs["blstats"][None], obs["message"][None],
                obs["tty_chars"][None], spec, memory=mem,
            )  # fmt: skip
            advice = None
            if tmem is not None:  # after the features: it reads their level memory
                ta, tb = T.compute_teacher(
                    obs["glyphs"][None], obs["blstats"][None], obs["message"][None], at, mem, tmem
                )
                advice = Teacher(torch.from_numpy(ta), torch.from_numpy(tb))
            choice = player.choose(Obs(*(torch.from_numpy(x) for x in (st, cr, at))), advice)
            a = int(choice.action[0])
            if tmem is not None:
                tmem.taken[0] = a  # the teacher learns what its last advice led to
            out = choice.out
            before = (obs["tty_chars"].copy(), obs["tty_colors"].copy(), obs["blstats"].copy())
            obs, r, term, trunc, _ = env.step(a)
            done = bool(term or trunc) or t + 1 >= cap
            bl = before[2] if term else obs["blstats"]  # NLE zeroes blstats after the game ends
            if not term:
                score = int(obs["blstats"][nh.NLE_BL_SCORE]) - score0
            yield Frame(
                step=t,
                chars=before[0],
                colors=before[1],
                action=a,
                top=_top(None if out is None else out.logits[0], a),
                alpha=[] if out is None else [float(v) for v in out.alpha[0].cpu()],
                hint=int(hint_action(st)[0]),
                teacher=-1 if advice is None else int(advice.action[0]),
                branch="" if advice is None else T.branch_names(advice.branch.numpy())[0],
                reward=float(r) * env_cfg.reward_scale,
                score=score,
                depth=int(bl[nh.NLE_BL_DEPTH]),
                hp=int(bl[nh.NLE_BL_HP]),
                hp_max=int(bl[nh.NLE_BL_HPMAX]),
                done=done,
                died=bool(term),
                final_chars=obs["tty_chars"].copy() if done and final_screen else None,
            )
            if done:
                break
    finally:
        env.close()


# ------------------------------------------------------------------ encoding
def _runs(prev_c: np.ndarray, prev_k: np.ndarray, c: np.ndarray, k: np.ndarray) -> list[list[Any]]:
    """Runs of changed cells: ``[start, chars, colours]`` with flat positions (row * 80 + col)."""
    changed = np.flatnonzero((prev_c != c).ravel() | (prev_k != k).ravel())
    if changed.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(changed) > 1) + 1
    fc, fk = c.ravel(), k.ravel()
    out = []
    for seg in np.split(changed, breaks):
        a, b = int(seg[0]), int(seg[-1]) + 1
        out.append([a, _text(fc[a:b]), _colors(fk[a:b])])
    return out


def _text(chars: np.ndarray) -> str:
    return bytes(np.asarray(chars, dtype=np.uint8)).decode("latin-1")


def _colors(colors: np.ndarray) -> str:
    """One hex digit per cell (NetHack colours 0..15)."""
    return "".join("0123456789abcdef"[int(v) & 15] for v in colors)


def encode_episode(frames: Sequence[Frame], meta: EpisodeMeta) -> dict[str, Any]:
    """The JSON the page reads: metadata, per-step figures, key frames and deltas."""
    keys: dict[str, list[str]] = {}
    deltas: list[list[list[Any]]] = []
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for f in frames:
        if f.step % KEY_EVERY == 0 or prev is None:
            keys[str(f.step)] = [_text(f.chars.ravel()), _colors(f.colors.ravel())]
            deltas.append([])
        else:
            deltas.append(_runs(prev[0], prev[1], f.chars, f.colors))
        prev = (f.chars, f.colors)
    steps = [
        {
            "a": f.action,
            "top": [[a, round(p, 4)] for a, p in f.top],
            "alpha": [round(v, 4) for v in f.alpha],
            "hint": f.hint,
            "teacher": f.teacher,
            "branch": f.branch,
            "r": round(f.reward, 4),
            "score": f.score,
            "depth": f.depth,
            "hp": f.hp,
            "hpmax": f.hp_max,
        }
        for f in frames
    ]
    last = frames[-1] if frames else None
    return {
        "meta": {
            **asdict(meta),
            "steps": len(frames),
            "score": last.score if last else 0,
            "died": bool(last and last.died),
            "key_every": KEY_EVERY,
            "has_teacher": any(f.teacher >= 0 for f in frames),
        },
        "steps": steps,
        "keys": keys,
        "deltas": deltas,
    }


def write_html(frames: Sequence[Frame], meta: EpisodeMeta, path: str | Path) -> Path:
    """Write the self-contained replay page; returns its path."""
    data = encode_episode(frames, meta)
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = meta.title or f"{meta.player} on seed {meta.seed}"
    page = (
        _TEMPLATE.replace("__TITLE__", html.escape(title))
        .replace("__CSS__", _CSS)
        .replace("__JS__", _JS)
        .replace("__DATA__", blob)
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(p)
    return p


def write_episode_json(frames: Sequence[Frame], meta: EpisodeMeta, path: str | Path) -> Path:
    """The per-step figures of the episode (no screens) as JSON, e.g. to check a replay."""
    data = encode_episode(frames, meta)
    p = Path(path)
    p.write_text(json.dumps({"meta": data["meta"], "steps": data["steps"]}, indent=0))
    return p


# ------------------------------------------------------------------ the page
_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title><style>__CSS__</style></head>
<body>
<header><h1>__TITLE__</h1><div id="summary"></div></header>
<main>
<pre id="screen" aria-label="NetHack screen"></pre>
<aside>
 <div class="stats"><span>step <b id="step">0</b> / <span id="nsteps"></span></span>
  <span>score <b id="score"></b></span><span>depth <b id="depth"></b></span>
  <span>HP <b id="hp"></b></span><span>reward <b id="reward"></b></span></div>
 <h2>experts <small id="routing"></small></h2><div id="alpha"></div>
 <h2>policy</h2><ol id="top"></ol>
 <div>taken: <b id="taken"></b></div><div>hint: <b id="hint"></b></div>
 <div id="teacher-row">teacher: <b id="teacher"></b> <small id="branch"></small></div>
</aside>
</main>
<nav>
 <button id="back" title="step back (left arrow)">&#9664;</button>
 <button id="play" title="play / pause (space)">play</button>
 <button id="fwd" title="step forward (right arrow)">&#9654;</button>
 <input id="slider" type="range" min="0" value="0" aria-label="step">
 <label>speed <select id="speed"><option value="1">1x</option><option value="4" selected>4x</option>
 <option value="16">16x</option><option value="64">64x</option></select></label>
</nav>
<canvas id="strip" height="14" title="argmax expert per step (click to jump)"></canvas>
<div id="legend"></div>
<script id="episode" type="application/json">__DATA__</script>
<script>__JS__</script>
</body></html>
"""

_CSS = """
body{background:#111;color:#ddd;font:14px/1.3 system-ui,sans-serif;margin:12px}
h1{font-size:18px;margin:0 0 4px}h2{font-size:14px;margin:10px 0 4px}small{color:#999}
main{display:flex;gap:16px;align-items:flex-start}
#screen{background:#000;font:13px/1.15 "DejaVu Sans Mono",Menlo,Consolas,monospace;padding:6px;margin:0;white-space:pre}
aside{min-width:260px}.stats span{margin-right:10px}
.bar{display:flex;align-items:center;gap:6px;margin:2px 0}.bar .name{width:90px}
.bar .fill{height:10px;background:#4a9;display:inline-block}.bar .val{width:48px;text-align:right}
#top li.taken{color:#fd6;font-weight:bold}
nav{margin:10px 0;display:flex;gap:8px;align-items:center}#slider{flex:1}
#strip{width:100%;height:14px;display:block;cursor:pointer;image-rendering:pixelated}
#legend span{margin-right:12px}
.c0{color:#555}.c1{color:#c33}.c2{color:#3a3}.c3{color:#a72}.c4{color:#35d}.c5{color:#a3a}.c6{color:#3aa}
.c7{color:#bbb}.c8{color:#bbb}.c9{color:#f93}.c10{color:#6f6}.c11{color:#ff5}.c12{color:#69f}.c13{color:#f6f}
.c14{color:#6ff}.c15{color:#fff}
"""

_JS = r"""
"use strict";
const D = JSON.parse(document.getElementById("episode").textContent);
const M = D.meta, S = D.steps, N = S.length, W = 80, H = 24;
const PALETTE = ["#4a9","#d65","#69f","#dc4","#b6e","#6cc","#e9a","#9b6"];
const $ = (id) => document.getElementById(id);
let cur = -1, chars = null, colors = null, timer = null;

function keyAt(k) { return Math.floor(k / M.key_every) * M.key_every; }
function frame(k) {
  // rebuild the screen of step k: from the step before when sequential, else from its key frame
  let start;
  if (chars !== null && cur >= 0 && k > cur && keyAt(k) === keyAt(cur)) start = cur + 1;
  else { const kf = D.keys[String(keyAt(k))]; chars = kf[0].split(""); colors = kf[1].split(""); start = keyAt(k) + 1; }
  for (let t = start; t <= k; t++) {
    for (const [pos, txt, col] of D.deltas[t]) {
      for (let i = 0; i < txt.length; i++) { chars[pos + i] = txt[i]; colors[pos + i] = col[i]; }
    }
  }
}
function esc(c) { return c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === "&" ? "&amp;" : c; }
function renderScreen() {
  const out = [];
  for (let y = 0; y < H; y++) {
    let line = "", run = "", rc = null;
    for (let x = 0; x < W; x++) {
      const c = colors[y * W + x], ch = esc(chars[y * W + x]);
      if (c !== rc) { if (run) line += '<span class="c' + parseInt(rc, 16) + '">' + run + "</span>"; run = ""; rc = c; }
      run += ch;
    }
    if (run) line += '<span class="c' + parseInt(rc, 16) + '">' + run + "</span>";
    out.push(line);
  }
  $("screen").innerHTML = out.join("\n");
}
function actionName(a) { return a >= 0 && a < M.action_names.length ? M.action_names[a] : "none"; }
function show(k) {
  k = Math.max(0, Math.min(N - 1, k));
  frame(k); cur = k; renderScreen();
  const s = S[k];
  $("step").textContent = String(k);
  $("slider").value = String(k);
  $("score").textContent = String(s.score); $("depth").textContent = String(s.depth);
  $("hp").textContent = s.hp + "/" + s.hpmax; $("reward").textContent = s.r.toFixed(2);
  const al = $("alpha"); al.innerHTML = "";
  s.alpha.forEach((v, i) => {
    const row = document.createElement("div"); row.className = "bar"; row.dataset.expert = M.expert_names[i]; row.dataset.alpha = String(v);
    row.innerHTML = '<span class="name"></span><span class="fill"></span><span class="val"></span>';
    row.children[0].textContent = M.expert_names[i]; row.children[1].style.width = (150 * v) + "px";
    row.children[1].style.background = PALETTE[i % PALETTE.length]; row.children[2].textContent = v.toFixed(3);
    al.appendChild(row);
  });
  const top = $("top"); top.innerHTML = "";
  for (const [a, p] of s.top) {
    const li = document.createElement("li"); li.dataset.action = String(a); li.dataset.prob = String(p);
    li.textContent = actionName(a) + "  " + (100 * p).toFixed(1) + " %"; if (a === s.a) li.className = "taken";
    top.appendChild(li);
  }
  $("taken").textContent = actionName(s.a); $("taken").dataset.action = String(s.a);
  $("hint").textContent = actionName(s.hint);
  $("teacher-row").style.display = M.has_teacher ? "" : "none";
  $("teacher").textContent = actionName(s.teacher); $("teacher").dataset.action = String(s.teacher);
  $("branch").textContent = s.branch ? "(" + s.branch + ")" : "";
}
function argmax(v) { let b = 0; for (let i = 1; i < v.length; i++) if (v[i] > v[b]) b = i; return b; }
function drawStrip() {
  const c = $("strip"); c.width = Math.max(N, 1); const g = c.getContext("2d");
  S.forEach((s, t) => { g.fillStyle = s.alpha.length ? PALETTE[argmax(s.alpha) % PALETTE.length] : "#444"; g.fillRect(t, 0, 1, c.height); });
  $("legend").innerHTML = M.expert_names.map((n, i) => '<span style="color:' + PALETTE[i % PALETTE.length] + '">&#9632; ' + n + "</span>").join("");
}
function stop() { if (timer !== null) { clearInterval(timer); timer = null; $("play").textContent = "play"; } }
function play() {
  if (timer !== null) { stop(); return; }
  if (cur >= N - 1) show(0);
  $("play").textContent = "pause";
  timer = setInterval(() => { if (cur >= N - 1) stop(); else show(cur + 1); }, 400 / Number($("speed").value));
}
$("back").onclick = () => { stop(); show(cur - 1); };
$("fwd").onclick = () => { stop(); show(cur + 1); };
$("play").onclick = play;
$("speed").onchange = () => { if (timer !== null) { stop(); play(); } };
$("slider").max = String(N - 1);
$("slider").oninput = (e) => { stop(); show(Number(e.target.value)); };
$("strip").onclick = (e) => { const r = e.target.getBoundingClientRect(); stop(); show(Math.floor((e.clientX - r.left) / r.width * N)); };
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowRight") { stop(); show(cur + 1); e.preventDefault(); }
  else if (e.key === "ArrowLeft") { stop(); show(cur - 1); e.preventDefault(); }
  else if (e.key === " ") { play(); e.preventDefault(); }
});
$("nsteps").textContent = String(N - 1);
$("routing").textContent = M.routing ? M.routing + ", T = " + M.temperature : "rule player";
$("summary").textContent = M.player + " on seed " + M.seed + (M.greedy ? " (greedy)" : "") + ": score " + M.score + " after " + M.steps + " steps" + (M.died ? ", died" : "");
drawStrip();
if (N > 0) show(0);
"""


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
