"""Decoded photos: each decoded once, kept as uint8 tensors in memory (optionally in one cache file).

    train = decode_train_photos(paths, labels, short_side=256, workers=2)   # DecodedPhotos
    val = decode_eval_photos(paths, labels, size=224, resize="squash")      # uint8 (N, 3, S, S), labels

Train photos are shrunk (never enlarged) so their short side is at most `short_side` and their long
side at most twice that, and laid on one canvas (N, 3, short_side, long_side); a portrait photo is
stored transposed so that one canvas fits all. Augmentation later cuts crops out of the canvas.
Val photos are stored as preprocess.eval_tensor makes them: exactly what `petalnet evaluate` feeds the
model, so the run's val accuracy and `petalnet evaluate RUN` agree to the photo.

With a cache folder, the tensors are saved to one file named by a hash of the photos' bytes and the
settings; the next run with the same photos loads it (memory-mapped) instead of decoding.
"""

import functools
import hashlib
from concurrent.futures import ThreadPoolExecutor
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from petalnet.data.images import UnreadableImage, open_photo
from petalnet.pipeline.decode import decode_photo, resize_uint8
from petalnet.pipeline.preprocess import eval_tensor
from petalnet.errors import UserError
from petalnet.utils.fileio import atomic_path
from petalnet.utils.progress import progress_bar

CACHE_VERSION = 1
MAX_ASPECT = 2  # long side kept at most this many times the short side


@dataclass
class DecodedPhotos:
    canvas: torch.Tensor  # uint8 (N, 3, S, L), channels_last; photo k in canvas[k, :, :h, :w]
    sizes: torch.Tensor  # int64 (N, 2): (h, w) as stored on the canvas
    transposed: torch.Tensor  # bool (N,): stored transposed (the photo is portrait)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self):
        return len(self.labels)

    def upright_sizes(self):
        """(heights, widths) of the photos as they are seen (not as stored)."""
        h, w = self.sizes.unbind(dim=1)
        return torch.where(self.transposed, w, h), torch.where(self.transposed, h, w)

    def to(self, device):
        return DecodedPhotos(self.canvas.to(device), self.sizes, self.transposed, self.labels)


def fitted_size(height, width, short_side):
    """Stored (h, w) of a photo: short side <= short_side, long side <= MAX_ASPECT * short_side."""
    short, long = min(height, width), max(height, width)
    scale = min(1.0, short_side / short, MAX_ASPECT * short_side / long)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _train_photo(path, short_side):
    """A train photo fitted to short_side (fitted_size), stored transposed when portrait: (image, portrait)."""
    image = decode_photo(path, reduce_to=short_side)
    h, w = fitted_size(image.shape[1], image.shape[2], short_side)
    if (h, w) != tuple(image.shape[1:]):
        image = resize_uint8(image, (h, w))
    portrait = h > w
    return (image.transpose(1, 2) if portrait else image).contiguous(), portrait


def _decoded(paths, decode, workers, desc, progress):
    """Yield (i, uint8 tensor, transposed) for every photo, in order, from decode(path) -> (image, transposed);
    UserError if one cannot be decoded.

    `workers` threads decode at once (0: this thread): Pillow's decoder and torch's resize let go of the
    GIL, and threads skip the start-up and copies of worker processes.
    """
    def one(i):
        try:
            return i, decode(paths[i]), None
        except UnreadableImage as err:
            return i, None, str(err)

    pool = ThreadPoolExecutor(max_workers=workers) if workers else None
    try:
        results = (pool.map if pool else map)(one, range(len(paths)))
        for i, decoded, error in progress_bar(results, progress, total=len(paths), desc=desc, unit="img",
                                              leave=False):
            if decoded is None:
                raise UserError(f"cannot decode {paths[i]} ({error}); run 'petalnet data check'")
            yield i, *decoded
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)  # a photo that cannot be decoded stops the rest


def decode_train_photos(paths, labels, short_side, workers=0, progress=True):
    """DecodedPhotos for training: see the module docstring."""
    images, transposed = [None] * len(paths), torch.zeros(len(paths), dtype=torch.bool)
    decode = functools.partial(_train_photo, short_side=short_side)
    for i, image, portrait in _decoded(paths, decode, workers, "decoding train photos", progress):
        images[i], transposed[i] = image, portrait
    long_side = max(image.shape[2] for image in images)
    try:
        canvas = torch.zeros(len(images), short_side, long_side, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
    except RuntimeError:  # the allocator's "not enough memory"
        size = len(images) * 3 * short_side * long_side / 2**30
        raise UserError(f"not enough memory for the decoded photos ({size:.1f} GiB): use --pipeline pil, or a "
                        "smaller --cache-size") from None
    sizes = torch.zeros(len(images), 2, dtype=torch.long)
    for k, image in enumerate(images):
        h, w = image.shape[1:]
        canvas[k, :, :h, :w] = image
        sizes[k, 0], sizes[k, 1] = h, w
    return DecodedPhotos(canvas, sizes, transposed, torch.as_tensor(list(labels), dtype=torch.long))


def decode_eval_photos(paths, labels, size, resize, workers=0, progress=True):
    """(uint8 (N, 3, S, S), int64 labels): the photos as preprocess.eval_tensor shows them to a model."""
    images = torch.zeros(len(paths), 3, size, size, dtype=torch.uint8)

    def decode(path):
        return eval_tensor(open_photo(path), size, resize), False

    for i, image, _ in _decoded(paths, decode, workers, "decoding val photos", progress):
        images[i] = image
    return images, torch.as_tensor(list(labels), dtype=torch.long)


def cache_key(data, settings):
    """sha256 of the settings and every photo's bytes and label, in order."""
    digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for part in ("train", "val"):
        paths, labels = data[part]
        digest.update(f"{part}:{len(paths)}".encode())
        for path, label in zip(paths, labels):
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest() + str(label).encode())
    return digest.hexdigest()


def decoded_photos(data, short_side, eval_size, eval_resize, workers=0, cache_dir=None, progress=True, log=print):
    """(DecodedPhotos for train, (val images, val labels)); through the cache file when cache_dir is set.

    data = {"train": (paths, labels), "val": (paths, labels)}
    """
    path = None
    if cache_dir is not None:
        settings = {"short_side": short_side, "image_size": eval_size, "eval_resize": eval_resize}
        path = Path(cache_dir) / f"decoded-{cache_key(data, settings)[:24]}.pt"
        if path.is_file():
            try:
                saved = torch.load(path, weights_only=True, mmap=True)
                log(f"decoded photos from {path}")
                return DecodedPhotos(**saved["train"]), (saved["val"]["images"], saved["val"]["labels"])
            except Exception as err:  # noqa: BLE001 - a bad cache file is rebuilt, never trusted
                log(f"note: ignoring unreadable cache file {path} ({type(err).__name__}); decoding again")
    train = decode_train_photos(*data["train"], short_side, workers, progress)
    val = decode_eval_photos(*data["val"], eval_size, eval_resize, workers, progress)
    if path is not None:
        _save_cache(path, train, val, log)
    return train, val


def _save_cache(path, train, val, log):
    state = {"version": CACHE_VERSION, "train": {"canvas": train.canvas, "sizes": train.sizes,
                                                 "transposed": train.transposed, "labels": train.labels},
             "val": {"images": val[0], "labels": val[1]}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        log(f"saved decoded photos to {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    except OSError as err:
        log(f"note: could not save the decoded photos to {path} ({err.strerror or err}); training goes on")
