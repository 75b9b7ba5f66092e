#!/bin/sh
# The full-length ablation (ablation.py --plan fast) on a GPU machine with the image's own torch (petalnet
# not installed: PYTHONPATH). DATA: a train/val layout (e.g. the CPU runs' split, re-encoded as WebP at
# short side 192 to fit a 64 MiB transfer). Writes OUT/table.md, OUT/results.json, OUT/ablation.log.
# Measured on one H200 (2026-11-26): one run alone trains ~1800 img/s (the per-photo TrivialAugment loop
# and Python are the limit, not the GPU); 16 runs at once took 12.5 s per epoch each (~3800 img/s in
# all), so the whole plan (23 runs, ~3400 epochs) needs ~45 minutes, not the 8 a lent session has.
set -u
DATA=${1:-gpudata}; OUT=${OUT:-/tmp/out}; DEADLINE=${DEADLINE:-450}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi -L; python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())"
start=$(date +%s)
python3 -m petalnet train --data "$DATA" --out /tmp/smoke --overwrite --recipe best --epochs 2 --warmup-epochs 1 --workers 8 || exit 1
echo "smoke: $(( $(date +%s) - start )) s"
python3 benchmarks/ablation.py --plan fast --data "$DATA" --seeds 0 1 --parallel 16 --deadline "$DEADLINE" \
    --out /tmp/ablation -- --workers 2 > "$OUT/ablation.log" 2>&1
cp /tmp/ablation/table.md /tmp/ablation/results.json "$OUT"/
cat "$OUT/table.md"; tail -3 "$OUT/ablation.log"
echo "total: $(( $(date +%s) - start )) s"
