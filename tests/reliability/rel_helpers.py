"""Helpers of the reliability suite: real ``nethack-moe train`` subprocesses, their env workers,
and reading a run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The smoke preset made cheap for 2 shared cores: the real trainer, envs and checkpoints, with
#: the smallest model variant and no TensorBoard.
FAST = (
    "model.variant=mlp_single",
    "run.tensorboard=false",
    "run.device=cpu",
    "run.torch_threads=1",
)


def train_args(out: Path, *sets: str, config: str = "smoke") -> list[str]:
    """CLI arguments of ``nethack-moe train`` (without the program name)."""
    args = ["train", "--config", config, "--set", f"run.out_dir={out}"]
    for s in (*FAST, *sets):
        args += ["--set", s]
    return args


class Run:
    """A ``nethack-moe train`` subprocess in its own session (so a signal can go to its group)."""

    def __init__(self, args: list[str], log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.out_path = log_dir / "stdout.txt"
        self.err_path = log_dir / "stderr.txt"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.out_path, "wb") as o, open(self.err_path, "wb") as e:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nethack_moe.cli", *args],
                stdout=o,
                stderr=e,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.cleanup()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def error_lines(self) -> list[str]:
        """The lines the CLI printed itself (not log records)."""
        return [ln for ln in self.stderr.splitlines() if ln.startswith("nethack-moe:")]

    def cleanup(self) -> None:
        """Kill what is left of this run: the trainer and its descendants (by pid)."""
        pids = [self.pid, *descendants(self.pid)]
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def _ps() -> list[tuple[int, int, str, str]]:
    """(pid, ppid, state, command) of every process (POSIX ``ps``)."""
    out = subprocess.run(
        ["ps", "-ww", "-A", "-o", "pid=,ppid=,stat=,command="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for ln in out.splitlines():
        parts = ln.split(None, 3)
        if len(parts) >= 3:
            rows.append(
                (int(parts[0]), int(parts[1]), parts[2], parts[3] if len(parts) > 3 else "")
            )
    return rows


def descendants(pid: int) -> list[int]:
    rows = _ps()
    kids: dict[int, list[int]] = {}
    for p, pp, _, _ in rows:
        kids.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def worker_pids(trainer_pid: int) -> list[int]:
    """Live env workers of a trainer: the children of its multiprocessing forkserver."""
    rows = _ps()
    servers = {p for p, pp, _, cmd in rows if pp == trainer_pid and "forkserver" in cmd}
    return [p for p, pp, st, _ in rows if pp in servers and not st.startswith("Z")]


def learner_pids(trainer_pid: int) -> list[int]:
    """A trainer's live learner process (``ppo.learner=process``): its child started by spawn."""
    return [p for p, pp, st, cmd in _ps()
            if pp == trainer_pid and "spawn_main" in cmd and not st.startswith("Z")]  # fmt: skip


def wait_for(
    pred: Callable[[], object], timeout: float, what: str, run: Run | None = None
) -> object:
    """Poll ``pred`` until truthy; fail early if ``run`` exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if run is not None and run.proc.poll() is not None:
            raise AssertionError(
                f"trainer exited ({run.proc.returncode}) while waiting for {what}:\n{run.stderr}"
            )
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def records(run_dir: Path) -> list[dict]:
    """Every record of metrics.jsonl (each line must be complete JSON)."""
    text = (run_dir / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "metrics.jsonl ends with a torn line"
    return [json.loads(ln) for ln in text.splitlines()]


def records_so_far(run_dir: Path) -> list[dict]:
    """The complete lines of a metrics.jsonl that is being written."""
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return []
    text = p.read_text()
    return [json.loads(ln) for ln in text[: text.rfind("\n") + 1].splitlines()]


def episodes(recs: list[dict]) -> list[int]:
    return [r["episode"] for r in recs if r["type"] == "episode"]


def events(recs: list[dict], kind: str) -> list[dict]:
    return [r for r in recs if r["type"] == "event" and r["kind"] == kind]
