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


def save_variants(photo, folder):
    """Save one RGB photo in every format and mode users' folders hold; returns {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    img = photo.convert("RGB")
    gray = img.convert("L")
    paths = {}

    def save(name, image, **kwargs):
        paths[name] = folder / name
        image.save(paths[name], **kwargs)

    rgba = img.copy()
    rgba.putalpha(255)
    save("rgba_opaque.png", rgba)
    save("palette.png", img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256))
    save("gray.png", gray)
    save("gray16.png", Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257))
    save("cmyk.jpg", img.convert("CMYK"), quality=95)
    save("photo.webp", img, lossless=True)
    save("photo.bmp", img)
    save("photo.tif", img)
    save("first_frame.gif", img.convert("P"), save_all=True,
         append_images=[Image.new("P", img.size, 0)], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("exif_rotated.jpg", img.transpose(Image.Transpose.ROTATE_90), exif=exif, quality=95)
    save("upright.jpg", img, quality=95)
    return paths


def bomb_png(width=30000, height=30000):
    """A tiny PNG whose header claims width x height pixels: Pillow refuses it as a decompression bomb."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


# Five hues, one per class of conftest.CLASSES: a model can tell the made-up classes apart by colour.
CLASS_HUES = ((235, 235, 240), (250, 210, 30), (200, 30, 60), (250, 160, 20), (220, 60, 200))
SHAPES = ((160, 120), (120, 160), (200, 120), (144, 144))  # landscape, portrait, wide, square


def flower_image(label, seed, size=None):
    """A smooth, photo-like made-up picture of class `label`: a soft disc of the class's colour on a
    gradient of two random colours with soft random blobs. Smooth like a photo (resizing it is well defined
    to a grey level or two), unlike noise_image; no two alike (the blobs: data check's near-duplicate search
    would group pictures of nothing but one disc); the size cycles through SHAPES unless given."""
    rng = np.random.default_rng(seed)
    width, height = size or SHAPES[seed % len(SHAPES)]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(20, 200, (2, 3)).astype(np.float32)
    across = (x / width * 0.6 + y / height * 0.4)[..., None]
    blobs = Image.fromarray(rng.integers(0, 256, (6, 8), dtype=np.uint8)).resize((width, height),
                                                                                 Image.Resampling.BICUBIC)
    picture = start * (1 - across) + end * across + (np.asarray(blobs, np.float32)[..., None] - 128) * 0.4
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    radius = rng.uniform(0.2, 0.35) * min(width, height)
    inside = np.clip((radius - np.hypot(y - cy, x - cx)) / 4.0, 0.0, 1.0)[..., None]  # a 4 px soft edge
    colour = np.asarray(CLASS_HUES[label % len(CLASS_HUES)], np.float32) + rng.uniform(-20, 20, 3)
    picture = picture * (1 - inside) + colour * inside
    return Image.fromarray(np.clip(np.rint(picture), 0, 255).astype(np.uint8))


def make_flower_folders(root, classes, per_class, start_seed=0):
    """root/<class>/made_<k>.jpg: `per_class` flower_image photos of each class, all different."""
    for label, name in enumerate(classes):
        for k in range(per_class):
            path = root / name / f"made_{k:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            flower_image(label, start_seed + label * 1000 + k).save(path, quality=92)
    return root


def jpeg_again(image, quality):
    """`image` saved as a JPEG at `quality` and read back: a recompressed copy."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def cut(image, left, top, right, bottom):
    """A copy of `image` with these fractions of its width and height cut off each side."""
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def make_mosaics(photos, folder, count, seed=0, size=64, split=None):
    """folder/m_<k>.jpg: `count` 2x2 mosaics of the class folders' photos under `photos`, each of 1 to 3
    classes, and folder/labels.csv (path,labels[,split]: `split(k)` gives mosaic k's). Returns the rows."""
    import csv
    import random

    rng, classes = random.Random(seed), sorted(p.name for p in photos.iterdir() if p.is_dir())
    files = {name: sorted((photos / name).glob("*.jpg")) for name in classes}
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(count):
        chosen = rng.sample(classes, rng.randint(1, 3))
        tiles = chosen + [rng.choice(chosen) for _ in range(4 - len(chosen))]
        rng.shuffle(tiles)
        mosaic = Image.new("RGB", (size, size))
        for t, name in enumerate(tiles):
            tile = Image.open(rng.choice(files[name])).convert("RGB").resize((size // 2, size // 2))
            mosaic.paste(tile, ((t % 2) * size // 2, (t // 2) * size // 2))
        mosaic.save(folder / f"m_{k:03d}.jpg", quality=92)
        rows.append([f"m_{k:03d}.jpg", ";".join(sorted(chosen))] + ([split(k)] if split else []))
    with open(folder / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "labels"] + (["split"] if split else []), *rows])
    return rows
