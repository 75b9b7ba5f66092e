"""Copy a photo folder as WebP with a smaller short side, so that it fits the 64 MiB a lent GPU call carries.

    python benchmarks/shrink_photos.py runs/flowers-split gpudata256                 # short side <= 256, q80
    python benchmarks/shrink_photos.py runs/flowers-split gpudata --short-side 192 --quality 85

The folder layout (class folders, or train/ and val/ of class folders) is kept, each photo becoming
NAME.webp. Photos already smaller keep their size. 256 px is what the cache keeps for 224 px training
(cache.py), so training on the copy differs from the original only by the re-encoding: the seed-0 split
of flower_photos (3303 photos, 208 MB of JPEGs) becomes 51 MiB at quality 80.
"""

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from PIL import Image

from petalnet.data.images import IMAGE_EXTENSIONS


def shrink_one(source, target, short_side, quality):
    image = Image.open(source).convert("RGB")
    width, height = image.size
    scale = short_side / min(width, height)
    if scale < 1:
        image = image.resize((round(width * scale), round(height * scale)), Image.LANCZOS)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = target + ".tmp"
    image.save(temporary, "WEBP", quality=quality, method=4)
    os.replace(temporary, target)
    return os.path.getsize(target)


def photo_pairs(source_root, target_root):
    for folder, _, names in sorted(os.walk(source_root)):
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                relative = os.path.relpath(os.path.join(folder, name), source_root)
                yield os.path.join(folder, name), os.path.join(target_root, os.path.splitext(relative)[0] + ".webp")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args()
    sources, targets = zip(*photo_pairs(args.source, args.target))
    work = partial(shrink_one, short_side=args.short_side, quality=args.quality)
    with ProcessPoolExecutor() as pool:
        total = sum(pool.map(work, sources, targets, chunksize=64))
    print(f"{len(sources)} photos, {total / 2**20:.1f} MiB in {args.target}")


if __name__ == "__main__":
    main()
