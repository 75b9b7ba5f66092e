"""Accuracy at every time budget (an Imagenette-style table): val top-1 after 2, 5, 10 and 30 minutes on the
machine at hand, per recipe, mean and spread of 3 seeds; each budget its own run, its schedule fitted to it.

    PETALNET_DATA=~/flower_photos python benchmarks/budgets.py --out runs/budgets        # all: ~9.5 h on 2 cores
    python benchmarks/budgets.py --out runs/budgets --recipes sprint fast --budgets 2 5 --seeds 0 1 2
    python benchmarks/budgets.py --out runs/budgets --reuse     # the table and picture from finished runs only
    python benchmarks/budgets.py --recipes sprint --flags "--image-size 144"   # train flags for every run

Fitting a schedule to a budget: per recipe, one calibration run (`train --epochs 2`, OUT/RECIPE/calibration)
measures the start-up (reading and decoding the photos), each epoch's training seconds and validation
seconds. A training epoch's cost is modelled as a + b x size^2 (the two epochs of a progressively resized
recipe are at two sizes; an AlexNet's classifier costs the same at any size), and head-only epochs
(finetune's first) cost what the calibration's first epoch did. A budget's run gets the most epochs whose
predicted wall time fits it; every other setting is the recipe's, so warmup, cosine decay, progressive
resizing and EMA all stretch or shrink with the epochs. The table reports each run's last epoch (not
its best: choosing the best epoch on val would flatter it) and its actual wall time.

Time to 0.69 (the tutorial's accuracy) and 0.85: per seed, the first epoch of any of the recipe's runs
whose val accuracy reaches it, in wall seconds from the start of `train`; the mean over seeds.
Writes OUT/budgets.json and OUT/budgets.png (final val top-1 against wall time, one line per recipe).
Run nothing else on the machine meanwhile: the numbers are wall-clock times.
"""

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

RECIPES = ("seed", "fast", "sprint", "finetune")
TARGETS = (0.69, 0.85)


def train(data, folder, recipe, flags, reuse):
    """`petalnet train` into `folder` (skipped if `reuse` and it finished); its metrics.csv rows."""
    if not (reuse and (folder / "best.pt").is_file() and (folder / "metrics.csv").is_file()):
        command = [sys.executable, "-m", "petalnet", "train", "--data", data, "--out", str(folder), "--overwrite",
                   "--recipe", recipe, *flags]
        print("$ " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "TQDM_DISABLE": "1"}, stdout=subprocess.DEVNULL)
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def recipe_config(recipe, epochs, flags=()):
    """The config `train --recipe RECIPE --epochs EPOCHS FLAGS` would run with."""
    from petalnet.cli import build_parser
    from petalnet.config.train import TrainConfig, resolve_config
    from petalnet.utils.fields import given

    args = build_parser().parse_args(["train", "--out", "x", "--recipe", recipe, "--epochs", str(epochs), *flags])
    return resolve_config(recipe, given(TrainConfig, args))


def cost_model(rows, recipe, flags=()):
    """Seconds per training epoch as a function of (epoch, epochs), start-up and validation seconds, from
    the two epochs of a calibration run."""
    from petalnet.config.sizes import train_image_size

    config = recipe_config(recipe, 2, flags)
    first, second = rows[0], rows[1]
    validation = second["elapsed_s"] - first["elapsed_s"] - second["epoch_seconds"]
    startup = first["elapsed_s"] - first["epoch_seconds"] - validation
    s1, s2 = (train_image_size(e, config) ** 2 for e in (1, 2))
    head = config.head_epochs >= 1
    if s1 == s2 or head:
        a, b = second["epoch_seconds"], 0.0
    else:
        b = (second["epoch_seconds"] - first["epoch_seconds"]) / (s2 - s1)
        a = second["epoch_seconds"] - b * s2

    def epoch_seconds(epoch, fitted):
        if epoch <= fitted.head_epochs:
            return first["epoch_seconds"]
        return max(a + b * train_image_size(epoch, fitted) ** 2, 0.0)

    return epoch_seconds, startup, max(validation, 0.0)


def predicted_seconds(recipe, epochs, model, flags=()):
    """The wall time the cost model predicts for an `epochs`-epoch run."""
    epoch_seconds, startup, validation = model
    config = recipe_config(recipe, epochs, flags)
    return startup + sum(epoch_seconds(e, config) + validation for e in range(1, epochs + 1))


def fit_epochs(recipe, budget_s, model, flags=()):
    """The most epochs whose predicted wall time fits `budget_s` (at least 1)."""
    low, high = 1, 2
    while predicted_seconds(recipe, high, model, flags) <= budget_s and high < 4096:
        low, high = high, high * 2
    while high - low > 1:  # predicted time grows with the epochs: bisect
        middle = (low + high) // 2
        low, high = (middle, high) if predicted_seconds(recipe, middle, model, flags) <= budget_s else (low, middle)
    return low


def summary(values):
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def time_to(curves, target):
    """Mean over seeds of the first wall second any of a seed's runs reached `target` (None: never)."""
    firsts = []
    for runs in curves.values():
        times = [row["elapsed_s"] for rows in runs for row in rows if row["val_acc"] >= target - 1e-9]
        firsts.append(min(times) if times else None)
    reached = [t for t in firsts if t is not None]
    return {"mean_s": statistics.fmean(reached) if reached else None, "reached": len(reached), "seeds": len(firsts)}


def run_all(args):
    out, results = Path(args.out), []
    for recipe in args.recipes:
        flags = shlex.split(args.flags)
        calibration = train(args.data, out / recipe / "calibration", recipe, ["--epochs", "2", *flags], args.reuse)
        model = cost_model(calibration, recipe, flags)
        curves = {}
        for budget in args.budgets:
            epochs = fit_epochs(recipe, budget * 60, model, flags)
            finals, walls = [], []
            for seed in args.seeds:
                folder = out / recipe / f"{budget:g}-min" / f"seed-{seed}"
                rows = train(args.data, folder, recipe, ["--epochs", str(epochs), "--seed", str(seed), *flags],
                             args.reuse)
                curves.setdefault(seed, []).append(rows)
                finals.append(rows[-1]["val_acc"])
                walls.append(rows[-1]["elapsed_s"])
            results.append({"recipe": recipe, "budget_min": budget, "epochs": epochs, "final_acc": summary(finals),
                            "wall_s": summary(walls), "finals": finals})
            print(f"{recipe} {budget:g} min: {epochs} epochs, final val acc {summary(finals)['mean']:.4f}", flush=True)
        for target in TARGETS:
            results.append({"recipe": recipe, "target": target, **time_to(curves, target)})
    return results


def print_table(results, budgets):
    print("| recipe | " + " | ".join(f"{b:g} min" for b in budgets) + " | time to 0.69 | time to 0.85 |")
    print("| --- |" + " --- |" * (len(budgets) + 2))
    for recipe in dict.fromkeys(r["recipe"] for r in results):
        cells = []
        for budget in budgets:
            r = next((r for r in results if r["recipe"] == recipe and r.get("budget_min") == budget), None)
            f = r and r["final_acc"]
            cells.append(f"{f['mean']:.3f} ({f['min']:.3f}-{f['max']:.3f}), {r['epochs']} ep, "
                         f"{r['wall_s']['mean'] / 60:.1f} min" if r else "-")
        for target in TARGETS:
            t = next(r for r in results if r["recipe"] == recipe and r.get("target") == target)
            cells.append(f"{t['mean_s']:.0f} s ({t['reached']}/{t['seeds']})" if t["mean_s"] else "not reached")
        print(f"| {recipe} | " + " | ".join(cells) + " |")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for recipe in dict.fromkeys(r["recipe"] for r in results):
        rows = [r for r in results if r["recipe"] == recipe and "budget_min" in r]
        x = [r["wall_s"]["mean"] / 60 for r in rows]
        y = [r["final_acc"]["mean"] for r in rows]
        spread = [[m - r["final_acc"]["min"] for r, m in zip(rows, y)],
                  [r["final_acc"]["max"] - m for r, m in zip(rows, y)]]
        ax.errorbar(x, y, yerr=spread, marker="o", capsize=3, label=recipe)
    for target in TARGETS:
        ax.axhline(target, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("wall time of the run, minutes (log; decoding included)")
    ax.set_ylabel("val top-1 at the last epoch")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("PETALNET_DATA"), help="the photos (default $PETALNET_DATA)")
    parser.add_argument("--out", default="runs/budgets", help="where the runs, budgets.json and budgets.png go")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help="recipes to run")
    parser.add_argument("--budgets", nargs="+", type=float, default=[2, 5, 10, 30], help="budgets in minutes")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per budget")
    parser.add_argument("--flags", default="", help="more train flags for every run, e.g. \"--device cpu\"")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs already in --out")
    args = parser.parse_args()
    if not args.data:
        parser.error("pass --data DIR or set PETALNET_DATA")
    results = run_all(args)
    print_table(results, args.budgets)
    out = Path(args.out)
    (out / "budgets.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "budgets.png")
    print(f"wrote {out / 'budgets.json'} and {out / 'budgets.png'}")


if __name__ == "__main__":
    main()
