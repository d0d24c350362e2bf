#!/usr/bin/env bash
# Second H100 call: the tuned S500 preset's layout scaled to 16 cores (N=256, 15 workers):
# bench train table, then 100 s of a real S500 run to measure its train SPS.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
NM="python3 -m nethack_moe.cli"
$NM bench train --config s500 --max-env-steps 100000 --device cuda --no-env \
   --set ppo.num_envs=256 --set run.num_workers=15 --json $OUT/bench_train_h100_s500.json 2>&1 | grep -v INFO | tail -9
timeout -s INT 100 $NM train --device cuda --workers 15 --set ppo.num_envs=256 \
   --set run.out_dir=runs --set run.progress=false > $OUT/train.log 2>&1
tail -2 $OUT/train.log; cp runs/s500/metrics.jsonl $OUT/metrics_h100_s500.jsonl
