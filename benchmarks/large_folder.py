"""A large folder of class folders made from a small one, for memory and speed measurements at scale.

    python benchmarks/large_folder.py $PETALNET_DATA ~/.cache/petalnet/large-12k --count 12000
    python benchmarks/large_folder.py $PETALNET_DATA ~/.cache/petalnet/large-50k --count 50000

Photo k is a random crop (25-100% of the area, aspect 3:4 to 4:3) of source photo k mod N of the same
class layout, its long side capped at --max-side, re-encoded as JPEG at a random quality (80-95): no two
files are byte-identical (petalnet's duplicate checks would otherwise fold them), and decoding costs what
real photos of that size cost. Classes keep their shares of the source. Built once: photos already there
are kept, and OUT/large_folder.json records what was made, so a second call with the same arguments
returns at once. Keep OUT outside the repository.
"""

import argparse
import io
import json
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def source_photos(root):
    """(class, path) of every photo in a folder of class folders, sorted."""
    return [(folder.name, path) for folder in sorted(Path(root).iterdir()) if folder.is_dir()
            for path in sorted(folder.iterdir()) if path.suffix.lower() in SUFFIXES]


def variant(path, seed, max_side):
    """JPEG bytes of a random crop of the photo at `path`, drawn from `seed`."""
    rng = random.Random(seed)
    with Image.open(path) as image:
        image = image.convert("RGB")
    width, height = image.size
    area = width * height * rng.uniform(0.25, 1.0)
    aspect = rng.uniform(3 / 4, 4 / 3)
    w = max(16, min(width, round((area * aspect) ** 0.5)))
    h = max(16, min(height, round((area / aspect) ** 0.5)))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    crop = image.crop((left, top, left + w, top + h))
    scale = min(1.0, max_side / max(w, h))
    if scale < 1.0:
        crop = crop.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=rng.randint(80, 95))
    return buffer.getvalue()


def make_one(job):
    k, label, path, out, seed, max_side = job
    target = Path(out) / label / f"{Path(path).stem}_{k:06d}.jpg"
    if not target.exists():
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(variant(path, seed * 1_000_003 + k, max_side))
        os.replace(tmp, target)  # a killed build leaves no half photo
    return target


def build(source, out, count, seed=0, max_side=500, workers=None):
    out, record = Path(out), {"source": str(Path(source).resolve()), "count": count, "seed": seed,
                              "max_side": max_side}
    done_file = out / "large_folder.json"
    if done_file.is_file() and json.loads(done_file.read_text()) == record:
        return out
    photos = source_photos(source)
    if not photos:
        raise SystemExit(f"no class folders with photos in {source}")
    for label in {label for label, _ in photos}:
        (out / label).mkdir(parents=True, exist_ok=True)
    jobs = [(k, *photos[k % len(photos)], str(out), seed, max_side) for k in range(count)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        for _ in pool.map(make_one, jobs, chunksize=64):
            pass
    done_file.write_text(json.dumps(record))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a folder of class folders (e.g. $PETALNET_DATA)")
    parser.add_argument("out", help="the new folder (outside the repository)")
    parser.add_argument("--count", type=int, default=12000, help="photos to make")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-side", type=int, default=500, help="long side cap in pixels (flower_photos: 500)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    args = parser.parse_args()
    if args.count < 1 or args.max_side < 16:
        sys.exit("--count must be at least 1 and --max-side at least 16")
    out = build(args.source, args.out, args.count, args.seed, args.max_side, args.workers)
    print(f"{out}: {args.count} photos")


if __name__ == "__main__":
    main()
