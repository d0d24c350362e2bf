"""The HTML replay in a real browser: Chromium from the Debian packages, driven by Playwright for
Python through ``executable_path`` (``.ci/system-deps.sh`` installs it where it is missing).

Set ``REPLAY_SCREENSHOT=docs/replay.png`` to keep the screenshot the README shows."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nethack_moe.evaluation.replay import record_episode
from nethack_moe.evaluation.replay_page import KEY_EVERY, write_episode_json, write_html

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "checkpoints" / "s500_final.pt"
STEPS = 60  # crosses a key frame (every 50 steps)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/system-deps.sh should have installed it")
        pytest.skip("chromium not installed (bash .ci/system-deps.sh installs it)")
    return path


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay")
    frames, meta = record_episode(checkpoint=CKPT, seed=100003, steps=STEPS)
    page = write_html(frames, meta, out / "episode.html")
    data = json.loads(write_episode_json(frames, meta, out / "episode.json").read_text())
    return page, data, frames


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


def _screen_lines(chars: np.ndarray) -> list[str]:
    return [bytes(r).decode("latin-1").rstrip() for r in chars]


def test_replay_page_in_chromium(replay, browser, tmp_path):
    page_path, data, frames = replay
    assert len(frames) == STEPS and len(data["steps"]) == STEPS
    page = browser.new_page(viewport={"width": 1300, "height": 720})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_path.as_uri())

    def step() -> int:
        return int(page.inner_text("#step"))

    def check(k: int) -> None:
        assert step() == k
        s = data["steps"][k]
        bars = page.eval_on_selector_all(
            "#alpha .bar", "els => els.map(e => Number(e.dataset.alpha))"
        )
        assert bars == pytest.approx(s["alpha"], abs=1e-9) and len(bars) == 4
        top = page.eval_on_selector_all(
            "#top li", "els => els.map(e => [Number(e.dataset.action), Number(e.dataset.prob)])"
        )
        assert top == [[a, pytest.approx(p, abs=1e-9)] for a, p in s["top"]]
        assert int(page.get_attribute("#taken", "data-action")) == s["a"] == frames[k].action
        assert page.is_visible("#teacher")  # the diver's advice beside the policy's
        assert (
            int(page.get_attribute("#teacher", "data-action")) == s["teacher"] == frames[k].teacher
        )
        assert page.inner_text("#branch") == f"({frames[k].branch})" and frames[k].branch
        shown = [ln.rstrip() for ln in page.inner_text("#screen").split("\n")]
        assert shown == _screen_lines(frames[k].chars)  # key frames and deltas rebuild the screen

    check(0)
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    check(3)
    page.keyboard.press("ArrowLeft")
    check(2)
    for k in (KEY_EVERY + 5, KEY_EVERY - 1, 12, STEPS - 1):  # the slider jumps, both ways
        page.eval_on_selector(
            "#slider", f"el => {{ el.value = '{k}'; el.dispatchEvent(new Event('input')); }}"
        )
        check(k)
    page.keyboard.press("ArrowRight")  # at the end it stays at the end
    check(STEPS - 1)
    shot = Path(os.environ.get("REPLAY_SCREENSHOT") or tmp_path / "replay.png")
    page.eval_on_selector(
        "#slider", "el => { el.value = '40'; el.dispatchEvent(new Event('input')); }"
    )
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert requests == [page_path.as_uri()], f"the page made requests: {requests}"
    assert errors == []
    page.close()


def test_replay_size_is_within_the_bound(replay):
    page_path, _, _ = replay
    per_step = page_path.stat().st_size / STEPS
    assert per_step * 500 < 2_000_000  # 500 steps <= 2 MB (measured: ~0.18 MB for 500)
