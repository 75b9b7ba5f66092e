#!/bin/sh
# Train a recipe on a CUDA machine within a time limit, then evaluate; run it again to resume.
#
#   RECIPE=best LIMIT=500 benchmarks/gpu_recipe.sh DATA [TRAIN FLAGS...]   # DATA: class folders or train/val
#
# petalnet runs from this checkout (PYTHONPATH) with the Python on PATH. Training stops after LIMIT
# seconds (default: no limit) and the next call resumes the run from RUN/last.pt. Writes to OUT (default
# gpu-recipe/): log.txt (machine, train and evaluate output), metrics.csv, config.json, curves.png and
# eval/ (report.json, confusion.png, mistakes.png). To move photos cheaply, shrink them first:
# `python benchmarks/shrink_photos.py SPLIT_DIR SMALL_DIR` (WebP, short side <= 256).
set -u
DATA=${1:?usage: benchmarks/gpu_recipe.sh DATA [TRAIN FLAGS...]}; shift
RECIPE=${RECIPE:-best}; OUT=${OUT:-gpu-recipe}; LIMIT=${LIMIT:-0}; RUN=${RUN:-runs/gpu-$RECIPE}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
LOG="$OUT/log.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  echo "cpus $(nproc)"; } >> "$LOG" 2>&1
if [ -e "$RUN/last.pt" ]; then MODE=--resume; else MODE=--overwrite; fi
start=$(date +%s)
timeout "$LIMIT" python3 -m petalnet train --data "$DATA" --out "$RUN" --recipe "$RECIPE" $MODE "$@" >> "$LOG" 2>&1
echo "train: exit $? after $(( $(date +%s) - start )) s" >> "$LOG"
cp "$RUN/metrics.csv" "$RUN/config.json" "$RUN/curves.png" "$OUT"/
python3 -m petalnet evaluate "$RUN" --out "$OUT/eval" >> "$LOG" 2>&1
echo "total: $(( $(date +%s) - start )) s" >> "$LOG"
tail -4 "$OUT/metrics.csv"; tail -25 "$LOG"
