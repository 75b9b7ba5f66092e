#!/bin/sh
# The `best` recipe on a lent GPU machine, in one call, with the machine's own torch (petalnet on
# PYTHONPATH; those machines have no internet). Writes to OUT: log.txt (machine, train and evaluate
# output), metrics.csv, config.json, curves.png, eval/ (report.json, confusion.png, mistakes.png).
#
#   benchmarks/gpu_best.sh [DATA] [TRAIN FLAGS...]      # DATA: class folders or a train/val layout
#
# DATA defaults to gpudata256, made here by `python benchmarks/shrink_photos.py runs/flowers-split
# gpudata256`: the CPU runs' seed-0 split as WebP quality 80 at short side <= 256 (the cache's size for
# 224 px training), 51 MiB, so that it fits the 64 MiB a call may carry (`carry: ["gpudata256"]`).
# Training stops after LIMIT seconds (default 500) so that what was measured still comes back; called
# again on the same warm machine, the script resumes the run from last.pt. On one H200 (2026-11-26)
# `LIMIT=540 benchmarks/gpu_best.sh` took 403 s: 200 epochs in 388 s, then evaluate.
set -u
DATA=${1:-gpudata256}; [ $# -gt 0 ] && shift
OUT=${OUT:-gpu-best}; LIMIT=${LIMIT:-500}; RUN=${RUN:-/tmp/best}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
LOG="$OUT/log.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  echo "cpus $(nproc)"; } >> "$LOG" 2>&1
if [ -e "$RUN/last.pt" ]; then MODE=--resume; else MODE=--overwrite; fi
start=$(date +%s)
timeout "$LIMIT" python3 -m petalnet train --data "$DATA" --out "$RUN" --recipe best $MODE "$@" >> "$LOG" 2>&1
echo "train: exit $? after $(( $(date +%s) - start )) s" >> "$LOG"
cp "$RUN/metrics.csv" "$RUN/config.json" "$RUN/curves.png" "$OUT"/
python3 -m petalnet evaluate "$RUN" --out "$OUT/eval" >> "$LOG" 2>&1
echo "total: $(( $(date +%s) - start )) s" >> "$LOG"
tail -4 "$OUT/metrics.csv"; tail -25 "$LOG"
