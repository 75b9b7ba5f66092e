"""Time to accuracy: train recipes on the same split, one after another on this machine, and print per
recipe the wall time at which val accuracy first reached the first recipe's best, and its final accuracy.

    PETALNET_DATA=~/flower_photos python benchmarks/time_to_accuracy.py --out runs/time_to_accuracy
    python benchmarks/time_to_accuracy.py --run "seed=seed" --run "fast=fast" --run "seed-pil=seed --pipeline pil"
    python benchmarks/time_to_accuracy.py --reuse      # read finished runs in --out instead of training again

Every run is `python -m petalnet train --recipe R [flags]` into OUT/<name> (the split comes from the
data and --seed, the same for every recipe). Wall time is metrics.csv's elapsed_s: from the start of
`train` (reading and decoding the photos included) to the end of each epoch's validation. Writes
OUT/time_to_accuracy.json and OUT/time_to_accuracy.png (val accuracy against wall time, every run).
Run nothing else on the machine meanwhile: the numbers are wall-clock times.
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path


def parse_run(text):
    name, _, spec = text.partition("=")
    words = shlex.split(spec or name)
    return {"name": name, "recipe": words[0], "flags": words[1:]}


def train(run, data, out, reuse):
    folder = out / run["name"]
    if reuse and (folder / "metrics.csv").is_file():
        return folder
    command = [sys.executable, "-m", "petalnet", "train", "--data", data, "--out", str(folder), "--overwrite",
               "--recipe", run["recipe"], *run["flags"]]
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return folder


def read_curve(folder):
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def first_reaching(curve, target):
    """(wall seconds, epoch) of the first epoch whose val accuracy is >= target, or (None, None)."""
    for row in curve:
        if row["val_acc"] >= target - 1e-9:
            return row["elapsed_s"], int(row["epoch"])
    return None, None


def report(runs, curves):
    target = max(row["val_acc"] for row in curves[0])
    reference_time, _ = first_reaching(curves[0], target)
    results = []
    for run, curve in zip(runs, curves):
        seconds, epoch = first_reaching(curve, target)
        best = max(curve, key=lambda row: row["val_acc"])
        results.append({**run, "target": target, "seconds_to_target": seconds, "epoch_at_target": epoch,
                        "speedup": reference_time / seconds if seconds else None, "best_acc": best["val_acc"],
                        "best_epoch": int(best["epoch"]), "final_acc": curve[-1]["val_acc"],
                        "epochs": len(curve), "total_seconds": curve[-1]["elapsed_s"],
                        "curve": [[row["elapsed_s"], row["val_acc"]] for row in curve]})
    return results


def print_table(results):
    target = results[0]["target"]
    print(f"target: val accuracy {target:.4f} (the best of '{results[0]['name']}')")
    print("| run | recipe | time to target | epoch | speed-up | best val acc (epoch) | final | wall time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        reached = f"{r['seconds_to_target']:.0f} s" if r["seconds_to_target"] else "not reached"
        speedup = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        print(f"| {r['name']} | {' '.join([r['recipe'], *r['flags']])} | {reached} | {r['epoch_at_target'] or '-'} "
              f"| {speedup} | {r['best_acc']:.4f} ({r['best_epoch']}) | {r['final_acc']:.4f} "
              f"| {r['total_seconds'] / 60:.1f} min |")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        seconds, accs = zip(*r["curve"])
        ax.plot([s / 60 for s in seconds], accs, marker=".", label=f"{r['name']} (best {r['best_acc']:.3f})")
    ax.axhline(results[0]["target"], color="gray", linestyle=":", label=f"target {results[0]['target']:.3f}")
    ax.set_xlabel("wall time, minutes (data decoding included)")
    ax.set_ylabel("val accuracy")
    ax.set_ylim(0.3, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("PETALNET_DATA"))
    parser.add_argument("--out", default="runs/time_to_accuracy")
    parser.add_argument("--run", action="append", help="NAME=RECIPE [FLAGS]; the first sets the target "
                                                      "(default: seed, then fast)")
    parser.add_argument("--reuse", action="store_true", help="use finished runs already in --out")
    args = parser.parse_args()
    runs = [parse_run(text) for text in (args.run or ["seed", "fast"])]
    if not args.data and not args.reuse:
        parser.error("pass --data DIR or set PETALNET_DATA")
    out = Path(args.out)
    curves = [read_curve(train(run, args.data, out, args.reuse)) for run in runs]
    results = report(runs, curves)
    print_table(results)
    (out / "time_to_accuracy.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "time_to_accuracy.png")
    print(f"wrote {out / 'time_to_accuracy.json'} and {out / 'time_to_accuracy.png'}")


if __name__ == "__main__":
    main()
