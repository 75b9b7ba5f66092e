"""Imbalanced classes: what `--class-weights balanced` and `--sampler balanced` do for a small class.

    python benchmarks/imbalance.py $PETALNET_DATA --work /tmp/imbalance --small roses --keep 0.1 \\
        -- --recipe finetune --epochs 3

Builds a train/val layout of links (nothing copied) from a folder of class folders: the split `petalnet
train` would make (seed 0, 10% val), with the --small class's train photos cut to --keep of them; val
keeps every class whole, so the small class is judged on as many photos as before. Then trains once per
variant (none, class weights, balanced sampler; the arguments after `--` go to every run), evaluates
each best.pt on val, and prints accuracy, macro F1 (mean of the per-class F1) and the small class's
recall and precision.
"""

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

VARIANTS = {"none": [], "class weights": ["--class-weights", "balanced"], "balanced sampler": ["--sampler", "balanced"]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a folder of class folders (e.g. $PETALNET_DATA)")
    parser.add_argument("--work", type=Path, required=True, help="a folder for the layout and the runs")
    parser.add_argument("--small", default="roses", help="the class to cut")
    parser.add_argument("--keep", type=float, default=0.1, help="fraction of its train photos kept")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: arguments for every `petalnet train`
    args = parser.parse_args(argv[:cut])
    args.train_args = argv[cut + 1:]
    return args


def build_layout(data, out, small, keep):
    """out/train/<class>/ and out/val/<class>/ as symbolic links to the photos; returns the train counts."""
    from petalnet.data.split import make_split

    split = make_split(data, 0.1, 0, progress=False)
    counts = {}
    for part in ("train", "val"):
        rows = split.part(part)
        for name in split.classes:
            paths = [rel for rel, label in rows if split.classes[label] == name]
            if part == "train" and name == small:
                paths = paths[:max(1, round(len(paths) * keep))]
            folder = out / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for rel in paths:
                os.symlink(Path(data).resolve() / rel, folder / Path(rel).name)
            if part == "train":
                counts[name] = len(paths)
    return counts


def petalnet(*args):
    """One petalnet command in this process: PyTorch is imported once for every run, not once per command."""
    from petalnet.cli import main as petalnet_main

    with contextlib.redirect_stdout(io.StringIO()):
        code = petalnet_main([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"petalnet {args[0]} exited with {code}")


def run(args, name, extra):
    out = args.work / "runs" / name.replace(" ", "-")
    petalnet("train", "--data", args.work / "layout", "--out", out, "--overwrite", *args.train_args, *extra)
    petalnet("evaluate", out, "--out", out / "eval")
    report = json.loads((out / "eval" / "report.json").read_text())
    per_class = report["per_class"]
    return {"variant": name, "accuracy": report["accuracy"],
            "macro_f1": sum(c["f1"] for c in per_class.values()) / len(per_class),
            "small_recall": per_class[args.small]["recall"], "small_precision": per_class[args.small]["precision"]}


def main(argv=None):
    args = parse_args(argv)
    layout = args.work / "layout"
    if not layout.is_dir():
        counts = build_layout(args.data, layout, args.small, args.keep)
        print("train photos per class: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    rows = [run(args, name, extra) for name, extra in VARIANTS.items()]
    print(f"\n| variant | val accuracy | macro F1 | {args.small} recall | {args.small} precision |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['small_recall']:.4f} | "
              f"{r['small_precision']:.4f} |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
