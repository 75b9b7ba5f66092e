"""Plant wrong labels in a photo folder, then measure what `petalnet data issues` finds and what training on its
corrected.csv wins back.

    python benchmarks/label_noise.py $PETALNET_DATA --out ~/.cache/petalnet/label-noise --rates 0.03 0.10 \
        --recipe sprint

1. Splits the photos as `petalnet train` does (make_split: 10% val, --seed) and writes OUT/clean.csv (path,label,
   split; paths through the link OUT/photos to DATA, which is never written to).
2. For each rate, moves that fraction of the train photos to another class drawn at random (val stays clean) in
   OUT/noisy-<percent>.csv, and lists them in OUT/planted-<percent>.json.
3. Runs `petalnet data issues` on each manifest (and on clean.csv: the folder as it is) into OUT/issues-<name>/,
   timed, and scores its issues.csv: of its first rows, as many as were planted, how many were planted
   (precision; here also recall, the counts being equal), and again without the rows that data issues flags on
   the clean labels too (the folder's own problems, which no planting made); the recall of every row it flags;
   how many planted photos corrected.csv gives back their true class.
4. Trains --recipe on clean.csv, on each noisy manifest and on each corrected.csv, and evaluates each run's
   best.pt on clean.csv's val photos (the same photos and true labels for every run).
Prints a table and writes OUT/results.json. Children run `python -m petalnet`; nothing here imports torch.
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=os.environ.get("PETALNET_DATA"),
                        help="a folder of class folders (default $PETALNET_DATA)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the manifests, results and runs")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.03, 0.10], help="fractions of train photos "
                        "given a wrong label (default 0.03 0.10)")
    parser.add_argument("--recipe", default="sprint", help="recipe trained on each manifest (default sprint)")
    parser.add_argument("--seed", type=int, default=0, help="split, planting and training seed (default 0)")
    parser.add_argument("--no-train", action="store_true", help="measure data issues only")
    parser.add_argument("--train-only", action="store_true", help="train on the manifests of an earlier run's "
                        "OUT/results.json (its data issues measured already)")
    return parser.parse_args(argv)


def petalnet(*args):
    """Run `python -m petalnet ARGS`; (seconds, stdout). Its stderr goes to ours."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "petalnet", *map(str, args)], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    if done.returncode != 0:
        sys.exit(f"petalnet {' '.join(map(str, args))} exited {done.returncode}")
    return time.perf_counter() - started, done.stdout


def write_manifest(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])


def clean_rows(data, out, seed):
    """(rows, classes) of the split train makes: (photos/<relative path>, class, train|val)."""
    from petalnet.data.split import make_split  # the data layer: no torch

    split = make_split(data, 0.1, seed, progress=False)
    link = out / "photos"
    if not link.is_symlink():
        os.symlink(Path(data).absolute(), link, target_is_directory=True)
    rows = [(f"photos/{rel}", split.classes[label], part) for part in ("train", "val")
            for rel, label in split.part(part)]
    return rows, list(split.classes)


def plant(rows, classes, rate, seed):
    """(noisy rows, {path: true class}): round(rate x train rows) train rows given another class at random."""
    rng = random.Random(f"{seed}:{rate}")
    train = [i for i, row in enumerate(rows) if row[2] == "train"]
    chosen = rng.sample(train, round(rate * len(train)))
    noisy, planted = list(rows), {}
    for i in chosen:
        path, label, part = rows[i]
        noisy[i] = (path, rng.choice([c for c in classes if c != label]), part)
        planted[path] = label
    return noisy, planted


def read_issues(folder):
    with open(folder / "issues.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def score_issues(rows, planted, clean_flagged, corrected):
    """What data issues found of the planted labels."""
    n = len(planted)
    first = [row["path"] for row in rows[:n]]
    fresh = [row["path"] for row in rows if row["path"] not in clean_flagged][:n]
    relabelled = sum(corrected.get(path) == true for path, true in planted.items())
    return {"planted": n, "flagged": len(rows), "precision_first_rows": sum(p in planted for p in first) / n,
            "precision_first_rows_without_the_folders_own": sum(p in planted for p in fresh) / n,
            "recall_all_rows": sum(row["path"] in planted for row in rows) / n,
            "given_back_true_class": relabelled / n}


def corrected_labels(folder):
    """{photos/<relative path>: label} of a corrected.csv (its paths go through its own link to OUT, photos/)."""
    with open(folder / "corrected.csv", newline="", encoding="utf-8") as f:
        return {row["path"].removeprefix("photos/"): row["label"] for row in csv.DictReader(f)}


def train_and_evaluate(manifest, run, recipe, seed, clean):
    """(val accuracy of the run's best.pt on clean.csv's val photos, training seconds)."""
    seconds, _ = petalnet("train", "--data", manifest, "--out", run, "--recipe", recipe, "--seed", seed,
                          "--overwrite")
    _, report = petalnet("evaluate", run, "--data", clean, "--json")
    return json.loads(report)["accuracy"], seconds


def main(argv=None):
    args = parse_args(argv)
    if args.data is None:
        sys.exit("give a folder of class folders, or set $PETALNET_DATA")
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    if args.train_only:
        results = json.loads((out / "results.json").read_text())
    else:
        results = measure_issues(args, out)
    if not args.no_train:
        train_all(args, out, results)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def measure_issues(args, out):
    """Steps 1-3: the manifests, data issues on each, its scores; written to OUT/results.json."""
    rows, classes = clean_rows(args.data, out, args.seed)
    write_manifest(out / "clean.csv", rows)
    results = {"data": str(args.data), "recipe": args.recipe, "seed": args.seed, "photos": len(rows), "rates": {}}
    seconds, _ = petalnet("data", "issues", out / "clean.csv", "--out", out / "issues-clean", "--overwrite")
    clean_flagged = {row["path"] for row in read_issues(out / "issues-clean")}
    results["clean"] = {"issues_seconds": seconds, "flagged": len(clean_flagged)}
    for rate in args.rates:
        name = f"{rate * 100:g}"
        noisy, planted = plant(rows, classes, rate, args.seed)
        write_manifest(out / f"noisy-{name}.csv", noisy)
        (out / f"planted-{name}.json").write_text(json.dumps(planted, indent=1))
        seconds, _ = petalnet("data", "issues", out / f"noisy-{name}.csv", "--out", out / f"issues-{name}",
                              "--overwrite")
        found = score_issues(read_issues(out / f"issues-{name}"), planted, clean_flagged,
                             corrected_labels(out / f"issues-{name}"))
        results["rates"][name] = {"issues_seconds": seconds, **found}
        print(f"{name}%: {json.dumps(results['rates'][name])}", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def train_all(args, out, results):
    clean = out / "clean.csv"
    accuracy, seconds = train_and_evaluate(clean, out / "runs" / "clean", args.recipe, args.seed, clean)
    results["clean"].update(val_accuracy=accuracy, train_seconds=seconds)
    print(f"clean: val accuracy {accuracy:.4f} ({seconds:.0f} s)", flush=True)
    for name, found in results["rates"].items():
        for kind, manifest in (("noisy", out / f"noisy-{name}.csv"), ("corrected", out / f"issues-{name}" /
                                                                      "corrected.csv")):
            accuracy, seconds = train_and_evaluate(manifest, out / "runs" / f"{kind}-{name}", args.recipe,
                                                   args.seed, clean)
            found[f"{kind}_val_accuracy"] = accuracy
            print(f"{kind} {name}%: val accuracy {accuracy:.4f} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
