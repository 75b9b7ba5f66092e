#!/usr/bin/env bash
# A CUDA machine's numbers in one command: the training benchmark, then a short real training run.
#
#   benchmarks/gpu_check.sh PHOTOS_DIR [OUT_DIR]        # PHOTOS_DIR: class folders or a train/val layout
#
# petalnet runs from this checkout (PYTHONPATH) with the Python on PATH (or $PYTHON), so a machine with
# PyTorch, torchvision, Pillow, tqdm and matplotlib needs nothing installed. Everything measured is written
# to OUT_DIR (default $OUT, else gpu-check/): machine.txt, bench.json, train logs, metrics.
set -euo pipefail
DATA=${1:?usage: benchmarks/gpu_check.sh PHOTOS_DIR [OUT_DIR]}
RESULTS=${2:-${OUT:-gpu-check}}
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
PY=${PYTHON:-python3}
$PY -c "import torch, torchvision, PIL, tqdm, matplotlib; assert torch.cuda.is_available(), 'no CUDA GPU'"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  echo "cpus $(nproc)"
} | tee "$RESULTS/machine.txt"

# 1. The benchmark: (a) model alone, (b) petalnet, (c) the tutorial's pipeline, (d) inference.
$PY benchmarks/bench_train.py --data "$DATA" --json | tee "$RESULTS/bench.json"

# 2. Real training: 3 epochs with the defaults (cache pipeline, bf16, channels_last), then 1 with the
#    tutorial's pipeline for comparison; seconds per epoch and images/s are in each metrics.csv.
$PY -m petalnet train --data "$DATA" --out "$RESULTS/run-cache" --epochs 3 --overwrite 2>&1 | tee "$RESULTS/train-cache.log"
$PY -m petalnet train --data "$DATA" --out "$RESULTS/run-pil" --epochs 1 --pipeline pil --amp off \
    --channels-last off --overwrite 2>&1 | tee "$RESULTS/train-pil.log"
cp "$RESULTS/run-cache/metrics.csv" "$RESULTS/metrics-cache.csv"
cp "$RESULTS/run-pil/metrics.csv" "$RESULTS/metrics-pil.csv"
rm -rf "$RESULTS/run-cache" "$RESULTS/run-pil"  # keep the numbers, not the checkpoints
echo "gpu check done: $RESULTS"
