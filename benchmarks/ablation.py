"""Ablation: train recipe variants side by side, several seeds each; best val accuracy, mean and spread.

    # docs/ablation.md's tables (on a GPU: all variants at once)
    python benchmarks/ablation.py --plan fast --data DIR --seeds 0 1 --parallel 16 --out runs/ablation
    # the same levers at a CPU-sized budget (two runs at a time, ~4 min per variant on 2 cores; --only=a,b picks some)
    python benchmarks/ablation.py --plan cpu --data DIR --seeds 0 1 --out runs/ablation-cpu --deadline 2640
    # a quick look that everything runs
    python benchmarks/ablation.py --plan smoke --data DIR --parallel 1 --out /tmp/ablation

Each variant is a recipe plus flag overrides (PLANS below, plain data). Every run is a real
`python -m petalnet train` into OUT/runs/<variant>-s<seed>; this script reads their metrics.csv and
writes OUT/results.json (every run's curve) and OUT/table.md:

    | variant | what changes | best val acc (mean ± half-range) | final | seeds | epochs | s/epoch |

With a train/val layout (DIR/train, DIR/val) every seed sees the same val photos; with a folder of class
folders the seed also changes the split. --deadline stops runs still going after that many seconds
(SIGINT: their last finished epoch counts, and the table says how many epochs each had).
"""

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

LEAVE_ONE_OUT = [  # (variant, what changes, recipe, flags)
    ("fast", "the fast recipe", "fast", []),
    ("+trivialaugment", "TrivialAugment per photo", "fast", ["--auto-augment", "trivial"]),
    ("-ema", "no weight averaging", "fast", ["--ema-decay", "0"]),
    ("-label-smoothing", "no label smoothing", "fast", ["--label-smoothing", "0"]),
    ("-eval-up", "evaluate at the training size (208)", "fast", ["--eval-image-size", "208"]),
    ("adamw", "AdamW lr 1e-3, wd 0.05 instead of SGD", "fast", ["--optimizer", "adamw", "--lr", "1e-3",
                                                                "--weight-decay", "0.05"]),
    ("+mixup-cutmix", "MixUp 0.2 / CutMix 1.0", "fast", ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0"]),
    ("seed", "the tutorial's recipe", "seed", []),
]
ALTERNATIVES = [  # other ways to spend the same CPU half hour, and the GPU recipe
    ("fast-176px", "112 -> 176 px, eval 208 (less compute)", "fast",
     ["--min-image-size", "112", "--image-size", "176", "--eval-image-size", "208"], 1),
    ("fast-112px", "112 px throughout, eval 128, 180 epochs (about the same compute)", "fast",
     ["--image-size", "112", "--min-image-size", "112", "--eval-image-size", "128", "--epochs", "180"], 1),
    ("best", "the best recipe", "best", []),
    ("fast-bn", "fast, alexnet_half_bn (not the tutorial's model)", "fast", ["--model", "alexnet_half_bn"], 1),
]  # a 5th value: run only that many of the seeds
# The same levers at a CPU-sized budget: 20 epochs at 96 px (eval 128), ~3 min a run on 2 cores. With
# TrivialAugment, as fast had when docs/ablation.md's tables were measured (fast dropped it on 2026-11-26).
SHORT = ["--epochs", "20", "--warmup-epochs", "1", "--image-size", "96", "--min-image-size", "96",
         "--eval-image-size", "128", "--auto-augment", "trivial"]
CPU_LEAVE_ONE_OUT = [
    ("fast-short", "fast, 20 epochs at 96 px, eval 128", "fast", SHORT),
    ("-trivialaugment", "no TrivialAugment", "fast", SHORT + ["--auto-augment", "none"]),
    ("-ema", "no weight averaging", "fast", SHORT + ["--ema-decay", "0"]),
    ("-label-smoothing", "no label smoothing", "fast", SHORT + ["--label-smoothing", "0"]),
    ("-eval-up", "evaluate at the training size (96)", "fast", SHORT + ["--eval-image-size", "96"]),
    ("+adamw", "AdamW lr 1e-3, wd 0.05 instead of SGD (fast's optimizer until 2026-11-26)", "fast",
     SHORT + ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05"]),
    ("+mixup-cutmix", "MixUp 0.2 / CutMix 1.0", "fast", SHORT + ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0"]),
    ("+tta-flip", "test-time flip", "fast", SHORT + ["--tta-flip", "on"]),
    ("+randaugment", "RandAugment (2 ops, magnitude 9) instead of TrivialAugment", "fast",
     SHORT + ["--auto-augment", "randaugment"]),
    ("+color-jitter", "color jitter 0.4 (brightness, contrast, saturation)", "fast", SHORT + ["--color-jitter", "0.4"]),
    ("+random-erasing", "random erasing, p 0.25", "fast", SHORT + ["--random-erasing", "0.25"]),
    ("constant-lr", "no warmup, no cosine: lr 0.02 throughout", "fast",
     SHORT + ["--scheduler", "constant", "--warmup-epochs", "0"]),
    ("+progressive", "progressive resizing 64 -> 96 px (10% -> 75% of the epochs)", "fast",
     SHORT + ["--min-image-size", "64", "--resize-ramp", "0.1", "0.75"]),
    ("batch-64", "batch 64, lr 0.04 (linear scaling)", "fast", SHORT + ["--batch-size", "64", "--lr", "0.04"]),
    ("40-epochs", "40 epochs instead of 20", "fast", SHORT + ["--epochs", "40"]),
    ("bn", "alexnet_half_bn (BatchNorm; not the tutorial's model)", "fast", SHORT + ["--model", "alexnet_half_bn"]),
]
PLANS = {
    "fast": LEAVE_ONE_OUT + ALTERNATIVES,
    "cpu": CPU_LEAVE_ONE_OUT,
    "smoke": [("fast", "the fast recipe, 2 epochs", "fast", ["--epochs", "2", "--warmup-epochs", "1"]),
              ("seed", "the seed recipe, 1 epoch", "seed", ["--epochs", "1"])],
}


def launch(variant, seed, args, runs):
    name, _, recipe, flags = variant[:4]
    out = runs / f"{name}-s{seed}"
    command = [sys.executable, "-m", "petalnet", "train", "--data", args.data, "--out", str(out), "--overwrite",
               "--recipe", recipe, "--seed", str(seed), *args.train_flags, *flags]  # the variant's flags win
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads)}
    log = open(runs / f"{name}-s{seed}.log", "w")
    return {"variant": name, "seed": seed, "out": out, "log": log, "started": time.time(),
            "process": subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=_take_sigint)}


def _take_sigint():
    """A shell's background job starts with SIGINT ignored; the runs must stop (cleanly) at --deadline."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_all(variants, args):
    runs = Path(args.out) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    waiting = [(v, s) for v in variants for s in args.seeds[:v[4] if len(v) > 4 else None]]
    waiting.sort(key=lambda item: (item[0][2] != "best", args.seeds.index(item[1])))  # the longest first
    running, finished, start = [], [], time.time()
    while waiting or running:
        while waiting and len(running) < args.parallel:
            running.append(launch(*waiting.pop(0), args, runs))
        time.sleep(2)
        for job in list(running):
            late = args.deadline and time.time() - start > args.deadline
            if late and job["process"].poll() is None:
                job["process"].send_signal(signal.SIGINT)
                job["stopped"] = True
            if job["process"].poll() is not None or late:
                job["process"].wait()
                job["log"].close()
                running.remove(job)
                finished.append(summarize(job))
                print(json.dumps({k: v for k, v in finished[-1].items() if k != "curve"}), flush=True)
        if args.deadline and time.time() - start > args.deadline:
            waiting = []
    return finished


def summarize(job):
    rows = []
    metrics = job["out"] / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
    accs = [float(r["val_acc"]) for r in rows]
    result = {"variant": job["variant"], "seed": job["seed"], "returncode": job["process"].returncode,
              "stopped_at_deadline": job.get("stopped", False), "epochs_done": len(rows),
              "best_acc": max(accs) if accs else None, "best_epoch": accs.index(max(accs)) + 1 if accs else None,
              "final_acc": accs[-1] if accs else None,
              "seconds_per_epoch": statistics.median(float(r["epoch_seconds"]) for r in rows) if rows else None,
              "curve": [{k: float(r[k]) for k in ("epoch", "val_acc", "elapsed_s", "image_size") if r.get(k)}
                        for r in rows]}
    if not rows:
        result["log_tail"] = Path(job["log"].name).read_text()[-600:]
    return result


def table(variants, results):
    lines = ["| variant | what changes | best val acc, mean ± half-range | final val acc | seeds | epochs | s/epoch |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, what, *_ in variants:
        mine = [r for r in results if r["variant"] == name and r["best_acc"] is not None]
        if not mine:
            lines.append(f"| {name} | {what} | failed | | 0 | | |")
            continue
        best, final = [r["best_acc"] for r in mine], [r["final_acc"] for r in mine]
        spread = (max(best) - min(best)) / 2
        epochs = "/".join(str(r["epochs_done"]) for r in mine)
        lines.append(f"| {name} | {what} | {statistics.mean(best):.3f} ± {spread:.3f} | {statistics.mean(final):.3f} "
                     f"| {len(mine)} | {epochs} | {statistics.median(r['seconds_per_epoch'] for r in mine):.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="fast", choices=sorted(PLANS))
    parser.add_argument("--data", default=os.environ.get("PETALNET_DATA"))
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parallel", type=int, default=2,
                        help="runs at a time (default 2, one thread each: per-photo augmentation is one thread)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--deadline", type=float, default=0, help="stop every run after this many seconds")
    parser.add_argument("--only", type=lambda text: text.split(","),
                        help="variants to run, comma-separated, e.g. --only=fast-short,-ema (default: the whole plan)")
    parser.add_argument("train_flags", nargs=argparse.REMAINDER, help="after --: flags for every run")
    args = parser.parse_args()
    if not args.data:
        parser.error("pass --data DIR or set PETALNET_DATA")
    args.train_flags = [f for f in args.train_flags if f != "--"]
    variants = [v for v in PLANS[args.plan] if not args.only or v[0] in args.only]
    results = run_all(variants, args)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    text = table(variants, results)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
