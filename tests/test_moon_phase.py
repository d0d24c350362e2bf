"""A seeded game does not depend on the date (PROTOCOL.md, E200: ``fix_moon_phase=True``).

NetHack reads the clock for the moon phase (luck +1 at full moon, "Be careful! New moon tonight.")
and for Friday the 13th. With ``fix_moon_phase`` NLE derives them from the game seeds instead:
seed 100000 always has a full moon, 100002 a new moon, whatever the date. The games run under
libfaketime at a full-moon and a new-moon date; without the fix the same seeds see the date's moon
(which shows that the fake clock reaches the game, so this test can fail)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FULL_MOON, NEW_MOON = "2026-12-24 03:00:00", "2026-12-09 12:00:00"

_GAME = """
import hashlib, json, sys
import numpy as np
from nethack_moe.envs.factory import EnvConfig, make_env, seed_env
env = make_env(EnvConfig(fix_moon_phase=sys.argv[1] == "1"))
out = {}
for seed in (100000, 100002):
    seed_env(env, seed, seed)
    obs, _ = env.reset()
    lines = [bytes(r).decode("latin-1").strip() for r in obs["tty_chars"]]
    moon = [ln for ln in lines if "moon tonight" in ln]
    h = hashlib.sha1(obs["tty_chars"].tobytes())
    rng = np.random.default_rng(0)
    for _ in range(150):
        obs, _r, term, trunc, _i = env.step(int(rng.integers(0, 23)))
        h.update(obs["tty_chars"].tobytes() + obs["blstats"].tobytes())
        if term or trunc:
            break
    out[seed] = [moon[0] if moon else "", h.hexdigest()]
print(json.dumps(out))
"""


def _faketime_lib() -> str:
    for d in ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime",
              "/usr/lib/faketime"):  # fmt: skip
        p = Path(d) / "libfaketime.so.1"
        if p.is_file():
            return str(p)
    if os.environ.get("CI"):
        pytest.fail("libfaketime is missing in CI: .ci/system-deps.sh should have installed it")
    pytest.skip("faketime not installed (bash .ci/system-deps.sh installs it)")


def _play(date: str, fix: bool) -> dict[str, list[str]]:
    env = {**os.environ, "FAKETIME": f"@{date}", "LD_PRELOAD": _faketime_lib(),
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # fmt: skip
    r = subprocess.run([sys.executable, "-c", _GAME, "1" if fix else "0"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_seeded_game_is_the_same_on_any_date():
    full, new = _play(FULL_MOON, fix=True), _play(NEW_MOON, fix=True)
    assert full == new  # messages and 150 steps of screens and stats, bit for bit
    assert full["100000"][0] == "You are lucky!  Full moon tonight."  # the seed's own moon
    assert full["100002"][0] == "Be careful!  New moon tonight."
    # control: without the fix the game sees the (fake) date's moon
    free_full, free_new = _play(FULL_MOON, fix=False), _play(NEW_MOON, fix=False)
    assert free_full["100002"][0] == "You are lucky!  Full moon tonight."
    assert free_new["100000"][0] == "Be careful!  New moon tonight."
