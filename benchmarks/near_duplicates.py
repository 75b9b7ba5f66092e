"""Near-duplicate search, measured: what it finds, what it costs, what it changes in the split.

    python benchmarks/near_duplicates.py $PETALNET_DATA                   # all three, on flower_photos
    python benchmarks/near_duplicates.py ~/.cache/petalnet/large-50k --only cost

- recall: copies made from --sample random photos (resized, recompressed, cropped, flipped, grey, ...) are
  added to the folder's photos; for each kind, the share whose similarity to its original reaches the
  threshold, and the mean and least similarity.
- split: for a few thresholds, the folder's groups and photos in them, and how many groups straddle the
  split made without near-duplicates (seed 0, 10% val) and with them.
- cost: one scan without fingerprints and one with, side by side, then the search alone.
Prints markdown tables (docs/near-duplicates.md); name the machine with the numbers.
"""

import argparse
import platform
import random
import sys
import time
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from petalnet.data.check import scan_photos
from petalnet.data.near_duplicates import DEFAULT_THRESHOLD, fingerprint, near_duplicate_pairs, photo_groups
from petalnet.data.split import group_keys, split_indices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from imagegen import cut, jpeg_again  # noqa: E402  (the copies the tests make)


COPIES = {
    "resized to 1/4": lambda im: im.resize((im.width // 4, im.height // 4), Image.Resampling.BILINEAR),
    "JPEG quality 20": lambda im: jpeg_again(im, 20),
    "5% cut, centred": lambda im: cut(im, 0.025, 0.025, 0.025, 0.025),
    "5% off left and top": lambda im: cut(im, 0.05, 0.05, 0, 0),
    "5% off one side": lambda im: cut(im, 0.05, 0, 0, 0),
    "8% off top and right": lambda im: cut(im, 0, 0.08, 0.08, 0),
    "10% cut, centred": lambda im: cut(im, 0.05, 0.05, 0.05, 0.05),
    "mirrored + 5% off": lambda im: ImageOps.mirror(cut(im, 0.05, 0.05, 0, 0)),
    "upside down": ImageOps.flip,
    "grey": lambda im: im.convert("L").convert("RGB"),
    "contrast x1.3": lambda im: ImageEnhance.Contrast(im).enhance(1.3),
    "5% off, 2/3 size, JPEG 60": lambda im: jpeg_again(cut(im, 0.05, 0, 0, 0.05).resize(
        (im.width * 2 // 3, im.height * 2 // 3), Image.Resampling.BILINEAR), 60),
}


def recall(paths, looks, sample, threshold):
    print(f"\n| copy ({sample} random photos) | found at >= {threshold:g} | mean similarity | least |")
    print("|---|---:|---:|---:|")
    chosen = random.Random(0).sample(range(len(paths)), sample)
    for name, make in COPIES.items():
        extra = [fingerprint(make(Image.open(paths[i]).convert("RGB"))) for i in chosen]
        pairs = near_duplicate_pairs(looks + extra, threshold=0.0)
        score = {(i, j): s for i, j, s in pairs}
        found = [score.get((i, len(looks) + k), 0.0) for k, i in enumerate(chosen)]
        hits = sum(s >= threshold for s in found)
        print(f"| {name} | {hits}/{sample} | {sum(found) / sample:.3f} | {min(found):.3f} |")


def split_effect(scan, thresholds):
    paths, labels, digests, looks = scan.readable()
    classes = len(scan.photos.classes)
    _, before = split_indices(labels, digests, classes, 0.1, 0)
    print("\n| threshold | groups | photos in them | straddling the split without them | with them | val photos "
          "moved | search s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for threshold in thresholds:
        start = time.perf_counter()
        groups, _ = photo_groups(digests, looks, threshold)
        seconds = time.perf_counter() - start
        _, after = split_indices(labels, group_keys(digests, groups), classes, 0.1, 0)

        print(f"| {threshold:g} | {len(groups)} | {sum(map(len, groups))} | {straddling(groups, before)} | "
              f"{straddling(groups, after)} | {len(set(before) - set(after))} | {seconds:.1f} |")


def straddling(groups, val):
    """How many groups have photos on both sides."""
    val = set(val)
    return sum(0 < sum(i in val for i in group) < len(group) for group in groups)


def cost(root):
    start = time.perf_counter()
    plain = scan_photos(root, progress=False)
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    scan = scan_photos(root, progress=False, looks=True)
    looks_s = time.perf_counter() - start
    _, _, digests, looks = scan.readable()
    start = time.perf_counter()
    groups, pairs = photo_groups(digests, looks)
    search_s = time.perf_counter() - start
    print("\n| photos | scan (hash + decode) s | scan + fingerprints s | search s | groups | pairs |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(plain.photos.files)} | {plain_s:.1f} | {looks_s:.1f} | {search_s:.1f} | {len(groups)} | "
          f"{len(pairs)} |")
    return scan


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="a folder of class folders")
    parser.add_argument("--only", choices=["recall", "split", "cost"], help="one measurement only")
    parser.add_argument("--sample", type=int, default=100, help="photos copied for the recall table")
    parser.add_argument("--thresholds", default="0.85,0.9,0.95", help="for the split table, comma-separated")
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
    scan = cost(args.data) if args.only in (None, "cost") else scan_photos(args.data, progress=False, looks=True)
    paths, _, _, looks = scan.readable()
    if args.only in (None, "recall"):
        recall(paths, looks, min(args.sample, len(paths)), DEFAULT_THRESHOLD)
    if args.only in (None, "split"):
        split_effect(scan, [float(t) for t in args.thresholds.split(",")])


if __name__ == "__main__":
    main()
