"""Decoded photos: each decoded once, packed as uint8 (store.py), kept in memory or in a store folder on disk.

    train, val = decoded_photos(data, short_side=256, eval_size=224, eval_resize="squash", workers=2,
                                cache_dir=None, memory_budget=8 * 2**30)      # two store.PackedPhotos
    val = decode_eval_photos(paths, labels, size=224, resize="squash")        # PackedPhotos, in memory

Train photos are shrunk (never enlarged) so their short side is at most `short_side` and their long
side at most twice that, and stored upright at that size; augmentation cuts crops out of them.
Val photos are stored as preprocess.eval_tensor makes them: exactly what `petalnet evaluate` feeds the
model, so the run's val accuracy and `petalnet evaluate RUN` agree to the photo.

Where they are kept is decided before decoding, from an estimate of their bytes (a sample of the
photos' headers) and the memory budget (`--cache-memory`):

    memory   it fits, no --cache-dir: packed in this process's memory
    folder   --cache-dir, or it does not fit (then $PETALNET_HOME/decoded): a store folder named by a
             hash of the photos' bytes and the settings, written photo by photo while decoding, then
             memory-mapped; kept resident when it fits the budget, else each batch's pages are let go
             after use. The next run with the same photos and settings opens it instead of decoding.

A store folder that fails its checks (store.open_store) is rebuilt. Runs that share a cache folder take
a lock per store: one decodes, the others wait and then open its work. A folder that cannot be written
(a full disk) leaves nothing behind and stops the run in one line, unless the photos fit in memory.
"""

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from petalnet.data.download import petalnet_home
from petalnet.data.images import UnreadableImage
from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.pipeline.decode import decode_photo, resize_uint8
from petalnet.pipeline.preprocess import eval_tensor, open_eval_photo
from petalnet.pipeline.store import STORE_VERSION, BrokenStore, StoreWriter, open_store
from petalnet.utils.fileio import UMASK, fsync_dir
from petalnet.utils.memory import free_disk
from petalnet.utils.progress import progress_bar

MAX_ASPECT = 2  # long side kept at most this many times the short side
HEADER_SAMPLES = 256  # photos whose headers estimate the store's size
SPARE_DISK = 256 * 2**20  # bytes a store leaves free on its disk


@dataclass(frozen=True)
class Decoding:
    """How photos are decoded for a run (the settings part of a store's key, and the threads)."""
    short_side: int
    eval_size: int
    eval_resize: str
    workers: int = 0
    progress: bool = True

    def key_settings(self):
        return {"short_side": self.short_side, "image_size": self.eval_size, "eval_resize": self.eval_resize}


def fitted_size(height, width, short_side):
    """Stored (h, w) of a photo: short side <= short_side, long side <= MAX_ASPECT * short_side."""
    short, long = min(height, width), max(height, width)
    scale = min(1.0, short_side / short, MAX_ASPECT * short_side / long)
    return max(1, round(height * scale)), max(1, round(width * scale))


def train_photo(path, short_side):
    """A train photo fitted to short_side (fitted_size), upright: uint8 (h, w, 3)."""
    image = decode_photo(path, reduce_to=short_side)
    h, w = fitted_size(image.shape[1], image.shape[2], short_side)
    if (h, w) != tuple(image.shape[1:]):
        image = resize_uint8(image, (h, w))
    return image.permute(1, 2, 0).contiguous()


def eval_photo(path, size, resize):
    """A val photo as preprocess.eval_tensor shows it to a model: uint8 (S, S, 3)."""
    return eval_tensor(open_eval_photo(path, size, resize), size, resize).permute(1, 2, 0).contiguous()


def in_order(items, fn, workers, window=None):
    """fn(item) for every item, in order; `workers` threads at once (0: this thread), at most `window`
    results ahead of the reader (bounded memory for any number of photos). Pillow's decoder, torch's
    resize and hashlib let go of the GIL, and threads skip the start-up and copies of processes."""
    if not workers:
        yield from map(fn, items)
        return
    pool, pending, items = ThreadPoolExecutor(max_workers=workers), deque(), iter(items)
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= (window or 4 * workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)  # a photo that cannot be decoded stops the rest


def _decoded(paths, decode, workers, desc, progress):
    """decode(path) for every photo, in order; UserError naming the first one that cannot be decoded."""
    def one(path):
        try:
            return decode(path), None
        except UnreadableImage as err:
            return None, str(err)

    results = progress_bar(in_order(paths, one, workers), progress, total=len(paths), desc=desc, unit="img",
                           leave=False)
    for path, (image, error) in zip(paths, results):
        if image is None:
            raise UserError(f"cannot decode {path} ({error}); run 'petalnet data check'")
        yield image


def _fill(writer, data, how):
    """Decode data's train and val photos into the writer."""
    parts = {"train": functools.partial(train_photo, short_side=how.short_side),
             "val": functools.partial(eval_photo, size=how.eval_size, resize=how.eval_resize)}
    for part, decode in parts.items():
        paths, labels = data[part]
        for image, label in zip(_decoded(paths, decode, how.workers, f"decoding {part} photos", how.progress),
                                labels):
            writer.add(part, image, label)


def decode_eval_photos(paths, labels, size, resize, workers=0, progress=True):
    """PackedPhotos (in memory) of the photos as preprocess.eval_tensor shows them to a model."""
    writer = StoreWriter(parts=("val",))
    decode = functools.partial(eval_photo, size=size, resize=resize)
    for image, label in zip(_decoded(list(paths), decode, workers, "decoding val photos", progress), labels):
        writer.add("val", image, label)
    return writer.finish()["val"]


def estimate_bytes(data, short_side, eval_size, samples=HEADER_SAMPLES):
    """Bytes the decoded photos will take: train from a sample of headers (+5%), val exactly."""
    paths = list(data["train"][0])
    picks = paths[:: max(1, len(paths) // samples)][:samples]
    per_photo = [_stored_bytes(path, short_side) for path in picks]
    train = sum(per_photo) / len(per_photo) * len(paths) * 1.05 if per_photo else 0
    return int(train) + len(data["val"][0]) * 3 * eval_size ** 2


def _stored_bytes(path, short_side):
    try:
        with Image.open(path) as image:
            h, w = fitted_size(image.height, image.width, short_side)
    except Exception:  # noqa: BLE001 - unreadable here: count it at the largest size a photo can take
        h, w = short_side, MAX_ASPECT * short_side
    return 3 * h * w


def cache_key(data, how):
    """sha256 of the store's version, the settings and every photo's bytes and label, in order."""
    digest = hashlib.sha256(json.dumps({"version": STORE_VERSION, **how.key_settings()}, sort_keys=True).encode())

    def file_hash(path):
        try:
            with open(path, "rb") as f:
                return hashlib.file_digest(f, "sha256").digest()
        except OSError as err:
            raise UserError(f"cannot read {path}: {describe_os_error(err)}; run 'petalnet data check'") from None

    for part in ("train", "val"):
        paths, labels = data[part]
        digest.update(f"{part}:{len(paths)}".encode())
        hashes = progress_bar(in_order(paths, file_hash, how.workers), how.progress and len(paths) > 5000,
                              total=len(paths), desc=f"hashing {part} photos", unit="img", leave=False)
        for file_digest, label in zip(hashes, labels):
            digest.update(file_digest + str(label).encode())
    return digest.hexdigest()


def default_store_dir():
    return petalnet_home() / "decoded"


def gib(n):
    return f"{n / 2**30:.2f} GiB"


def decoded_photos(data, short_side, eval_size, eval_resize, workers=0, cache_dir=None, memory_budget=None,
                   progress=True, log=print):
    """(train, val) PackedPhotos, kept as the module docstring says.

    data = {"train": (paths, labels), "val": (paths, labels)}; memory_budget in bytes (None: no limit).
    """
    how = Decoding(short_side, eval_size, eval_resize, workers, progress)
    need, started = estimate_bytes(data, short_side, eval_size), time.perf_counter()
    resident = memory_budget is None or need <= memory_budget
    if cache_dir is None and resident:
        return _in_memory(data, how, started, log)
    root = Path(cache_dir) if cache_dir is not None else default_store_dir()
    if cache_dir is None:
        log(f"the decoded photos (about {gib(need)}) exceed the memory budget ({gib(memory_budget)}, "
            f"--cache-memory): keeping them on disk in {root}")
    key = cache_key(data, how)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return _through_folder(root, key, data, how, need, resident, log)
    except (OSError, BrokenStore) as err:
        problem = f"cannot keep the decoded photos in {root}: " + (
            describe_os_error(err) if isinstance(err, OSError) else str(err))
    if resident:
        log(f"note: {problem}; keeping them in memory instead")
        return _in_memory(data, how, time.perf_counter(), log)
    raise StorageError(f"{problem} (nothing was left there; the photos are untouched); free some space or pass "
                       "--cache-dir on another disk")


def _in_memory(data, how, started, log):
    writer = StoreWriter()
    _fill(writer, data, how)
    parts = writer.finish()
    log(f"{_decoded_line(parts, started)}: {gib(_bytes(parts))} in memory")
    return parts["train"], parts["val"]


def _decoded_line(parts, started):
    """The line that says how many photos were decoded, and how long it took."""
    return f"decoded {len(parts['train']) + len(parts['val'])} photos in {time.perf_counter() - started:.1f} s"


def _bytes(parts):
    return parts["train"].nbytes + parts["val"].nbytes


def _through_folder(root, key, data, how, need, resident, log):
    name, started = f"decoded-{key[:24]}", time.perf_counter()
    with _locked(root / f"{name}.lock", log):
        folder = root / name
        if folder.is_dir():
            try:
                parts = open_store(folder, key, resident)
                log(f"decoded photos from {folder}: {gib(_bytes(parts))}{_where(resident)}")
                return parts["train"], parts["val"]
            except BrokenStore as err:
                log(f"note: rebuilding the decoded photos in {folder}: {err}")
                shutil.rmtree(folder)
        free = free_disk(root)
        if free < need + SPARE_DISK:
            raise OSError(errno.ENOSPC, f"not enough free space (the decoded photos need about {gib(need)}, "
                          f"{gib(free)} is free)")
        _build(root, name, key, data, how)
        parts = open_store(folder, key, resident, check=False)
    log(f"{_decoded_line(parts, started)} into {folder}: {gib(_bytes(parts))}{_where(resident)}")
    return parts["train"], parts["val"]


def _where(resident):
    return "" if resident else "; read from disk: more than the memory budget"


def _build(root, name, key, data, how):
    """Decode into a hidden folder, then rename it into place: a store folder that exists is complete."""
    for stale in root.glob(f".{name}.*"):  # left by a run that died while building (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        tmp.chmod(0o777 & ~UMASK)  # mkdtemp makes it private; give it the mode mkdir would
        writer = StoreWriter(tmp)
        try:
            _fill(writer, data, how)
            writer.finish(key)
        finally:
            writer.close()
        os.replace(tmp, root / name)
        fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _locked(path, log):
    """Hold an exclusive lock on `path` (fcntl; where there is none, only the atomic rename protects)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another run that is decoding the same photos ({path.name})")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield
