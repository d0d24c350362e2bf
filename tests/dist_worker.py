"""One rank of a test training (run by torchrun, or by tests/test_distributed.py with torchrun's
environment variables): the real trainer, which also writes a digest of its parameters after
every update, and can die at a given update to play a dead rank.

``python tests/dist_worker.py OUT_DIR [--die-at-update K] [--stop-after-updates K] KEY=VALUE ...``
(smoke preset; a stop is an interruption with a checkpoint, as SIGINT, and exits 0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from nethack_moe.config.train import make_config
from nethack_moe.ppo.trainer import Trainer, TrainingInterrupted
from nethack_moe.ppo.update import UpdateStats


class DigestTrainer(Trainer):
    """The trainer, with the digest of its parameters recorded after every update."""

    digests: list[str]
    die_at: int | None = None

    def after_update(self, stats: UpdateStats) -> None:
        h = hashlib.sha256()
        for p in self.model.parameters():
            h.update(p.detach().cpu().numpy().tobytes())
        self.digests.append(h.hexdigest())
        if self.die_at is not None and self.C.updates >= self.die_at:
            os._exit(7)  # a rank that dies without a word
        super().after_update(stats)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--die-at-update", type=int)
    ap.add_argument("--stop-after-updates", type=int)
    ap.add_argument("sets", nargs="*")
    a = ap.parse_intermixed_args()
    t = DigestTrainer(make_config("smoke", a.sets), stop_after_updates=a.stop_after_updates)
    t.digests, t.die_at = [], a.die_at_update
    try:
        t.run()
    except TrainingInterrupted:
        pass
    out = Path(a.out) / f"digests_rank{t.dist.rank}.json"
    out.write_text(json.dumps({"rank": t.dist.rank, "world_size": t.dist.world_size,
                               "digests": t.digests}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
