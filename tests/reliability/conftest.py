"""Fixtures of the reliability suite (see rel_helpers for the subprocess plumbing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rel_helpers import Run, train_args


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A complete, uninterrupted smoke run (24 episodes) made by the real CLI: its run dir."""
    out = tmp_path_factory.mktemp("finished")
    run = Run(train_args(out, "curriculum.total_episodes=24"), out / "logs")
    rc = run.wait(timeout=240)
    assert rc == 0, run.stderr
    return out / "smoke"
