"""A multi-label data set made from a folder of class folders: 2x2 mosaics of photos, labelled with their classes.

    python benchmarks/mosaics.py $PETALNET_DATA --out ~/.cache/petalnet/mosaics --train 2000 --val 400

Splits the photos as `petalnet train` does (make_split: --val-fraction, --seed), then makes each train
mosaic from train photos only and each val mosaic from val photos only, so no val mosaic holds a photo (or
a near-duplicate of one) that training saw. A mosaic draws how many distinct classes it shows (1 to
--max-classes, uniformly), which ones, and which of its four tiles each class fills (every drawn class at
least one tile; a class may fill several, with different photos while the class has enough); each tile is
the photo's central square scaled to half of --size. Writes OUT/images/train/00001.jpg ...,
OUT/images/val/..., and OUT/labels.csv (path,labels,split: path relative to OUT, labels the class names
sorted and joined by `;`). The same arguments give the same bytes. Built in a temporary folder beside OUT
and renamed to OUT at the end; an OUT that exists and is not empty is refused.
"""

import argparse
import csv
import io
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

TILES = 4  # 2x2
QUALITY = 90


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=os.environ.get("PETALNET_DATA"),
                        help="a folder of class folders (default $PETALNET_DATA)")
    parser.add_argument("--out", type=Path, required=True, help="the new folder (must not exist, or be empty)")
    parser.add_argument("--train", type=int, default=2000, metavar="N", help="train mosaics to make (default 2000)")
    parser.add_argument("--val", type=int, default=400, metavar="N", help="val mosaics to make (default 400)")
    parser.add_argument("--size", type=int, default=224, metavar="PX", help="a mosaic's side in pixels (default 224)")
    parser.add_argument("--max-classes", type=int, default=3, metavar="K",
                        help=f"most distinct classes in one mosaic, 1 to {TILES} (default 3)")
    parser.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                        help="the photos' val share, as `petalnet train` splits them (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="the split's seed and the mosaics' (default 0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), metavar="N",
                        help="threads decoding and encoding (default: one per core)")
    args = parser.parse_args(argv)
    problem = check_args(args)
    if problem:
        parser.exit(2, f"mosaics.py: error: {problem}\n")
    return args


def check_args(args):
    """One line saying what is wrong with the arguments, or None."""
    if args.data is None:
        return "pass a folder of class folders or set PETALNET_DATA"
    if args.train < 0 or args.val < 0 or args.train + args.val == 0:
        return "--train and --val must be at least 0, and not both 0"
    if args.size < 16:
        return "--size must be at least 16"
    if not 1 <= args.max_classes <= TILES:
        return f"--max-classes must be 1 to {TILES}"
    if args.workers < 1:
        return "--workers must be at least 1"
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        return f"--out {args.out} exists and is not an empty folder: choose another or remove it"
    return None


def plan_part(split, part, count, max_classes, seed):
    """The mosaics of one part: [(sorted class names, [the source photo of each tile, in tile order])], drawn
    from a random.Random of (seed, part) and from that part's photos only."""
    rng = random.Random(f"mosaics:{seed}:{part}")
    by_class = [[] for _ in split.classes]
    for path, label in zip(split.paths(part), split.labels(part)):
        by_class[label].append(path)
    present = [label for label, paths in enumerate(by_class) if paths]
    plans = []
    for _ in range(count):
        labels = rng.sample(present, rng.randint(1, min(max_classes, len(present))))
        tiles = labels + [rng.choice(labels) for _ in range(TILES - len(labels))]
        rng.shuffle(tiles)
        sources = dict(zip(labels, (photos_of(by_class[label], tiles.count(label), rng) for label in labels)))
        plans.append((sorted(split.classes[label] for label in labels), [sources[label].pop() for label in tiles]))
    return plans


def photos_of(paths, n, rng):
    """n photos of one class: all different when the class has that many."""
    return rng.sample(paths, n) if len(paths) >= n else [rng.choice(paths) for _ in range(n)]


def render(sources, size):
    """JPEG bytes of one mosaic: tile k (row-major) is sources[k]'s central square, scaled to fit its quarter."""
    from petalnet.data.images import open_photo

    mosaic = Image.new("RGB", (size, size))
    cuts = [0, size // 2, size]
    for k, path in enumerate(sources):
        row, col = divmod(k, 2)
        box = (cuts[col], cuts[row], cuts[col + 1], cuts[row + 1])
        tile_size = (box[2] - box[0], box[3] - box[1])
        photo = open_photo(path, reduce_to=max(tile_size))
        mosaic.paste(ImageOps.fit(photo, tile_size, Image.Resampling.BICUBIC), box[:2])
    buffer = io.BytesIO()
    mosaic.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def write_part(folder, part, plans, size, pool):
    """Render one part's mosaics into folder/images/<part>/; returns its labels.csv rows."""
    (folder / "images" / part).mkdir(parents=True)
    width = max(5, len(str(len(plans))))
    names = [f"images/{part}/{k:0{width}d}.jpg" for k in range(1, len(plans) + 1)]
    for name, data in zip(names, pool.map(lambda plan: render(plan[1], size), plans)):
        (folder / name).write_bytes(data)
    return [(name, ";".join(labels), part) for name, (labels, _) in zip(names, plans)]


def build(out, plans, size, workers):
    """Write every part's mosaics and labels.csv into a temporary folder beside `out`, then rename it to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become OUT's
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = [row for part, part_plans in plans.items() for row in write_part(tmp, part, part_plans, size, pool)]
        with open(tmp / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["path", "labels", "split"])
            writer.writerows(rows)
        if out.exists():
            out.rmdir()  # empty: checked before
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows


def summary(out, split, plans, seconds):
    """One line: mosaics and photos per part, how many mosaics show 1, 2, ... classes, the time taken."""
    parts = ", ".join(f"{len(p)} {part} (from {len(split.part(part))} photos)" for part, p in plans.items())
    sizes = Counter(len(labels) for p in plans.values() for labels, _ in p)
    histogram = " ".join(f"{n}:{sizes[n]}" for n in sorted(sizes))
    return f"{out}: {parts} mosaics; classes per mosaic {histogram}; {seconds:.1f} s"


def main(argv=None):
    args = parse_args(argv)
    from petalnet.data.split import make_split
    from petalnet.errors import UserError

    start = time.perf_counter()
    try:
        split = make_split(args.data, args.val_fraction, args.seed, progress=False)
        plans = {part: plan_part(split, part, count, args.max_classes, args.seed)
                 for part, count in (("train", args.train), ("val", args.val))}
    except UserError as err:
        print(f"mosaics.py: error: {err}", file=sys.stderr)
        return 2
    build(args.out, plans, args.size, args.workers)
    print(summary(args.out, split, plans, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
