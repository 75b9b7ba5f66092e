#!/usr/bin/env bash
# Run the distributed test's torchrun training N times in a row and count the runs that fail.
#
#     benchmarks/stress_torchrun.sh 100                 # 20 photos per class from $PETALNET_DATA
#     PHOTOS=DIR LOGS=runs/stress benchmarks/stress_torchrun.sh 20
#     LOAD=2 benchmarks/stress_torchrun.sh 100          # with 2 busy processes competing for the cores
#
# Each run: 2 CPU processes (gloo), recipe seed, 2 epochs at 64 px, batch 8: the command of
# tests/test_distributed.py's fixture, ~11 s on a 2-core CPU. A failed run's stdout and stderr are kept
# in $LOGS/fail-K.{out,err}; the last line printed is "failures F of N". Exit status 1 when F > 0.
# LOAD=K keeps K busy-looping processes running meanwhile: a race between threads shows up more often on
# a crowded machine (as on a shared CI runner). Not part of `make test`.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
PY=${PY:-.venv/bin/python}
LOGS=${LOGS:-runs/stress-torchrun}
mkdir -p "$LOGS"
work=$(mktemp -d)
busy=()
trap 'kill "${busy[@]}" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 "${LOAD:-0}"); do
  (while :; do :; done) &
  busy+=($!)
done
if [ -z "${PHOTOS:-}" ]; then
  [ -n "${PETALNET_DATA:-}" ] || { echo "set PETALNET_DATA (or PHOTOS) to a folder of class folders"; exit 2; }
  PHOTOS="$work/photos"
  for class in "$PETALNET_DATA"/*/; do
    name=$(basename "$class")
    mkdir -p "$PHOTOS/$name"
    find "$class" -maxdepth 1 -type f | sort | head -n 20 | while read -r photo; do
      ln -s "$photo" "$PHOTOS/$name/"
    done
  done
fi
failures=0
for k in $(seq 1 "$N"); do
  rm -rf "$work/run"
  start=$(date +%s.%N)
  TQDM_DISABLE=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 -m petalnet train \
    --data "$PHOTOS" --out "$work/run" --recipe seed --epochs 2 --image-size 64 --batch-size 8 --device cpu \
    >"$work/out" 2>"$work/err"
  code=$?
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  if [ "$code" -ne 0 ]; then
    failures=$((failures + 1))
    cp "$work/out" "$LOGS/fail-$k.out"
    cp "$work/err" "$LOGS/fail-$k.err"
    echo "run $k: FAILED (exit $code, ${seconds%.*} s): $(grep -m1 -E 'terminate|Error|error|Signal' "$work/err")"
  else
    echo "run $k: ok (${seconds%.*} s)"
  fi
done
echo "failures $failures of $N"
[ "$failures" -eq 0 ]
