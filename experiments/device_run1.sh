#!/usr/bin/env bash
# One call on the lent H100 machine (16 cores): H100 throughput table, then three S500 runs side by
# side (4 workers each) and an E200 evaluation of each final checkpoint. Results go to $OUT.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
NM="python3 -m nethack_moe.cli"
nvidia-smi -L; nproc
$NM bench train --config s500 --max-env-steps 300000 --device cuda \
   --set ppo.num_envs=256 --set ppo.rollout_steps=32 --set run.num_workers=15 \
   --json $OUT/bench_train_h100.json 2>&1 | grep -v INFO | tail -12
for e in s500_ref_shaped s500_tuned s500_tuned_noshape; do
  timeout -s INT ${TRAIN_S:-330} $NM train --config experiments/$e.yaml --device cuda --workers 4 \
     --set run.out_dir=runs --set run.progress=false > $OUT/train_$e.log 2>&1 &
done
wait
for e in s500_ref_shaped s500_tuned s500_tuned_noshape; do
  ck=runs/$e/checkpoints/final.pt; [ -f $ck ] || ck=$(ls runs/$e/checkpoints/ep_*.pt | tail -1)
  $NM evaluate $ck --workers 5 --num-envs 20 --device cuda --out $OUT/eval_$e.json > $OUT/eval_$e.log 2>&1 &
done
wait
tail -3 $OUT/train_*.log; grep -h -A3 "mean" $OUT/eval_*.log | head -40
tar czf $OUT/runs.tgz runs/*/metrics.jsonl runs/*/config.yaml runs/*/eval runs/s500_tuned/checkpoints/final.pt runs/s500_ref_shaped/checkpoints/final.pt 2>/dev/null
ls -la $OUT
