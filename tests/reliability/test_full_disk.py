"""Fault 5 (full disk): the disk fills while a checkpoint is written, in the real trainer run through
the CLI in this process. The write is made to fail half-way with ENOSPC (only the checkpoint
module's file writes are affected). Expected: one clear error line and exit status 2, every
checkpoint already on disk intact and loadable, no temporary file left, and ``--resume`` later
continues from the last complete checkpoint."""

from __future__ import annotations

import errno
import hashlib
import os

from rel_helpers import episodes, records, train_args

import nethack_moe.core.io as ckpt_mod
from nethack_moe import cli
from nethack_moe.runs.checkpoint import load_checkpoint


class _FullFile:
    """A file whose big write stops half-way with ENOSPC."""

    def __init__(self, f, on_full):
        self.f, self.on_full = f, on_full

    def write(self, data):
        self.on_full()
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


class _OsWithFullDisk:
    """``os`` for the checkpoint module: the ``fail_at``-th checkpoint file write hits a full disk."""

    def __init__(self, fail_at, on_full):
        self.calls, self.fail_at, self.on_full = 0, fail_at, on_full

    def fdopen(self, fd, *a, **k):
        f = os.fdopen(fd, *a, **k)
        self.calls += 1
        return _FullFile(f, self.on_full) if self.calls == self.fail_at else f

    def __getattr__(self, name):
        return getattr(os, name)


def _digests(ck_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ck_dir.glob("*.pt")}


def test_disk_full_during_checkpoint_keeps_previous_checkpoints(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    run_dir = out / "smoke"
    ck_dir = run_dir / "checkpoints"
    before: dict[str, str] = {}
    fake = _OsWithFullDisk(3, lambda: before.update(_digests(ck_dir)))
    monkeypatch.setattr(ckpt_mod, "os", fake)
    args = train_args(out, "run.num_workers=0")
    rc = cli.main(args)

    err = capsys.readouterr().err.strip().splitlines()
    assert fake.calls == 3, "the third checkpoint write was the failing one"
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith("nethack-moe: error: [Errno 28] cannot write checkpoint")
    assert "No space left on device" in err[0] and "unchanged" in err[0]

    assert len(before) == 2, before  # two complete checkpoints existed when the disk filled
    assert _digests(ck_dir) == before, "a checkpoint on disk was changed by the failed write"
    assert not [p for p in ck_dir.iterdir() if not p.name.endswith(".pt")], "temp file left"
    for name in before:
        load_checkpoint(ck_dir / name)

    # space is back: the run continues from the last complete checkpoint
    monkeypatch.setattr(ckpt_mod, "os", os)
    assert cli.main(args + ["--resume", str(run_dir)]) == 0
    eps = episodes(records(run_dir))
    assert eps == list(range(1, len(eps) + 1)) and len(eps) >= 12
