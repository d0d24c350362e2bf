#!/usr/bin/env bash
# The GPU check of issue 23: bench train at N = 256 and N = 1,024 and bench model on one GPU, in
# under 5 minutes, each result as JSON in $OUT (or benchmarks/gpu_check/ without $OUT).
#
#   here (with network):  bash experiments/gpu_check.sh fetch   # wheels a bare GPU machine lacks -> .whl/
#   on the GPU machine:   bash experiments/gpu_check.sh         # from the repository root, .whl/ carried
#
# With the device tool: run(command="bash experiments/gpu_check.sh", carry=[".whl"], timeout_s=420).
# The GPU image has torch, numpy, scipy, numba, yaml, tqdm, tensorboard and matplotlib
# (../.library/device/KINDS.md); it lacks nle, gymnasium and entmax.
set -u -o pipefail
WHEELS="nle==1.3.0 gymnasium==1.2.0 farama-notifications==0.0.4 entmax==1.3"

if [ "${1:-}" = "fetch" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
  for w in $WHEELS; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$w" || exit 1
  done
  ls .whl
  exit 0
fi

OUT=${OUT:-benchmarks/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
NM="python3 -m nethack_moe.cli"
DAY=$(date +%F)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cores', os.cpu_count())" | tee -a "$OUT/gpu.txt"

# the model alone: fwd and fwd+bwd per batch on visited states (launch-bound below ~1,024)
timeout 60 $NM bench model --device cuda --batch-sizes 128,256,1024,4096 --json "$OUT/bench_model_gpu_$DAY.json" 2>&1 | grep -v INFO | tail -8
# the training loop at N = 256 (issue 23: >= 12,000 SPS) and the GPU preset at N = 1,024 (>= 50,000)
timeout 120 $NM bench train --config s500 --max-env-steps 150000 --device cuda --set ppo.num_envs=256 \
  --set run.num_workers=15 --json "$OUT/bench_train_gpu_n256_$DAY.json" 2>&1 | grep -v INFO | tail -9
timeout 120 $NM bench train --config s500_gpu --max-env-steps 400000 --device cuda --no-env \
  --json "$OUT/bench_train_gpu_n1024_$DAY.json" 2>&1 | grep -v INFO | tail -9
ls "$OUT"
