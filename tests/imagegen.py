"""Images the tests make: distinct noise photos in any format, and broken files."""

import io

import numpy as np
from PIL import Image


def noise_image(seed, size=(48, 40), mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": None}[mode]
    shape = (size[1], size[0]) if channels is None else (size[1], size[0], channels)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))


def jpeg_bytes(seed, size=(48, 40)):
    buffer = io.BytesIO()
    noise_image(seed, size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_photo(path, seed, size=(48, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(seed, size))
    return path


def make_class_folders(root, counts, start_seed=0):
    """root/<class>/img_<k>.jpg with distinct noise photos; counts maps class -> how many."""
    seed = start_seed
    for name, n in counts.items():
        for k in range(n):
            write_photo(root / name / f"img_{k:03d}.jpg", seed)
            seed += 1
    return root


def truncated_jpeg(seed=999):
    data = jpeg_bytes(seed, size=(200, 160))
    return data[: len(data) // 2]
