"""The self-contained HTML replay page: the frames' encoding and the page's template, CSS and script.

:func:`encode_episode` stores the screens as key frames every :data:`KEY_EVERY` steps plus
per-step deltas (runs of changed cells), so 500 steps stay well under 2 MB; :func:`write_html`
puts them into one HTML file that makes no network request (play/pause, step back/forward, a
slider, a speed choice, the arrow keys, and a strip of the argmax expert over the episode), and
:func:`write_episode_json` writes the same data as JSON.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nethack_moe.evaluation.frames import EpisodeMeta, Frame

#: Steps between full screens in the HTML (the others are deltas against the previous step).
KEY_EVERY = 50


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
