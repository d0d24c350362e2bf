"""``nethack-moe replay``: the episode file, NLE's ttyrec turned into a plain one, bad input.
(The page itself is tested in Chromium: tests/test_replay_browser.py.)"""

from __future__ import annotations

import bz2
import json
import struct

import pytest

from nethack_moe.cli.app import main
from nethack_moe.evaluation.replay import ttyrec3_to_ttyrec


def _rec(sec: int, usec: int, data: bytes, channel: int | None) -> bytes:
    head = struct.pack("<iii", sec, usec, len(data))
    return head + (b"" if channel is None else bytes([channel])) + data


def test_ttyrec3_becomes_a_plain_ttyrec_of_the_output_records(tmp_path):
    src = tmp_path / "nle.1.0.ttyrec3.bz2"
    records = [
        (1, 5, b"\x1b[2Jhello", 0),
        (1, 9, b"k", 1),
        (2, 0, b"\x00\x00", 2),
        (3, 1, b"world", 0),
    ]
    src.write_bytes(bz2.compress(b"".join(_rec(*r) for r in records)))
    out = ttyrec3_to_ttyrec(src, tmp_path / "plain.ttyrec")
    assert out.read_bytes() == _rec(1, 5, b"\x1b[2Jhello", None) + _rec(3, 1, b"world", None)
    src.write_bytes(bz2.compress(_rec(1, 5, b"hello", 0)[:-2]))
    with pytest.raises(ValueError, match="truncated record"):
        ttyrec3_to_ttyrec(src, tmp_path / "x.ttyrec")


def test_replay_of_a_baseline_writes_page_json_and_ttyrec(tmp_path, capsys):
    out, js, tty = tmp_path / "ep.html", tmp_path / "ep.json", tmp_path / "tty"
    rc = main(["replay", "--baseline", "hint-follower", "--seed", "100004", "--steps", "25",
               "--out", str(out), "--json", str(js), "--ttyrec", str(tty)])  # fmt: skip
    assert rc == 0
    data = json.loads(js.read_text())
    assert data["meta"]["player"] == "hint-follower" and len(data["steps"]) == 25
    assert all(s["alpha"] == [] and s["top"] == [[s["a"], 1.0]] for s in data["steps"])
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "http://" not in page and "https://" not in page
    plain = sorted(tty.glob("*.ttyrec"))
    assert len(plain) == 1 and b"NetHack" in plain[0].read_bytes()[:4000]
    assert "plain, for any ttyrec player" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["replay"], ["replay", "x.pt", "--baseline", "random"]])
def test_replay_needs_exactly_one_player(argv, capsys):
    assert main(argv) == 2
    assert "give a checkpoint or --baseline NAME" in capsys.readouterr().err


def test_evaluate_replays_are_the_evaluation_episodes(tmp_path, capsys):
    """``evaluate --replays 1``: the best, median and worst episode of each player, replayed in
    process, end with the score the evaluation recorded for their seed (the same episodes)."""
    from pathlib import Path

    ckpt = Path(__file__).resolve().parents[1] / "checkpoints" / "s500_final.pt"
    out = tmp_path / "eval.json"
    rc = main(["evaluate", str(ckpt), "--baseline", "random", "--episodes", "3", "--max-steps", "40",
               "--workers", "0", "--num-envs", "3", "--out", str(out), "--replays", "1",
               "--ttyrec", str(tmp_path / "tty")])  # fmt: skip
    assert rc == 0
    index = (tmp_path / "replays" / "index.html").read_text()
    assert "differs" not in index
    ev = json.loads(out.read_text())
    rows = index.split("<tr>")[2:]
    assert len(rows) == 3 * 3  # s500_final sampled, greedy, random: best, median, worst
    for label, entry in (("s500_final", ev["checkpoints"]["s500_final"]),
                         ("random", ev["checkpoints"]["random"])):  # fmt: skip
        scores = {e["seed"]: e["score"] for e in entry["episodes"]}
        for row in rows:
            cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
            if cells[0] == label:
                assert int(cells[3]) == scores[int(cells[2])]
    assert len(list((tmp_path / "tty").rglob("*.ttyrec"))) == 9
