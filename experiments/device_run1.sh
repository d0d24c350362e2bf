#!/usr/bin/env bash
# One call on the lent H100 machine (16 cores): H100 throughput table, then three S500 runs side by
# side (4 workers each) and an E200 evaluation of each final checkpoint. Results go to $OUT.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
NM="python3 -m nethack_moe.cli"
nvidia-smi -L; nproc
$NM bench train --config s500 --max-env-steps 200000 --device cuda \
   --set ppo.num_envs=256 --set ppo.rollout_steps=32 --set run.num_workers=15 \
   --json $OUT/bench_train_h100.json 2>&1 | grep -v INFO | tail -12
train() {  # $1 experiment; falls back to the CPU if the CUDA run fails at once
  local t0=$SECONDS
  timeout -s INT ${TRAIN_S:-300} $NM train --config experiments/$1.yaml --device cuda --workers 4 \
     --set run.out_dir=runs --set run.progress=false > $OUT/train_$1.log 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 130 ] && [ $((SECONDS - t0)) -lt 60 ]; then
    echo "CUDA run of $1 failed ($rc); CPU fallback" >> $OUT/train_$1.log
    timeout -s INT $((${TRAIN_S:-300} - SECONDS + t0)) $NM train --config experiments/$1.yaml --device cpu \
       --workers 4 --set run.out_dir=runs --set run.progress=false --overwrite >> $OUT/train_$1.log 2>&1
  fi
}
for e in s500_ref_shaped s500_tuned s500_tuned_noshape; do train $e & done
wait
for e in s500_ref_shaped s500_tuned s500_tuned_noshape; do
  ck=runs/$e/checkpoints/final.pt; [ -f $ck ] || ck=$(ls runs/$e/checkpoints/ep_*.pt | tail -1)
  $NM evaluate $ck --workers 5 --num-envs 20 --device cuda --out $OUT/eval_$e.json > $OUT/eval_$e.log 2>&1 &
done
wait
tail -3 $OUT/train_*.log; grep -h -A3 "mean" $OUT/eval_*.log | head -40
tar czf $OUT/runs.tgz runs/*/metrics.jsonl runs/*/config.yaml runs/*/eval runs/s500_tuned/checkpoints/final.pt runs/s500_ref_shaped/checkpoints/final.pt 2>/dev/null
ls -la $OUT
