"""pipeline/cache.py: photos decoded once, kept in memory or in a store folder; the folder is keyed by content,
checked before it is trusted, shared safely by runs, and never left half-written."""

import dataclasses
import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import SMALL, shown
from imagegen import make_class_folders, write_photo
from petalnet.config.train import TrainConfig
from petalnet.devices.settings import DeviceSettings
from petalnet.errors import StorageError, UserError
from petalnet.pipeline import store
from petalnet.pipeline.loaders import CachedTrainBatches
from petalnet.pipeline.cache import decode_eval_photos, decoded_photos, estimate_bytes, fitted_size, train_photo
from petalnet.pipeline.preprocess import eval_tensor, open_eval_photo
from petalnet.data.images import open_photo

SHORT, EVAL = 40, 32  # the train photos' short side and the val size, in pixels
TINY = 1  # bytes of memory budget: nothing fits, the store is read from disk


def photo_lists(root):
    paths = sorted(root.rglob("*.jpg"))
    labels = [0 if p.parent.name == "a" else 1 for p in paths]
    return {"train": (paths[:-2], labels[:-2]), "val": (paths[-2:], labels[-2:])}


def decoded(data, **kwargs):
    return decoded_photos(data, SHORT, EVAL, "squash", progress=False, **kwargs)


def images(photos):
    return [photos.image(k).clone() for k in range(len(photos))]


def same_photos(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(images(a), images(b))) and \
        torch.equal(a.labels, b.labels)


def built(line):
    """The line a store folder built by this run ends with."""
    return re.match(r"decoded \d+ photos in [\d.]+ s into .*decoded-[0-9a-f]{24}: ", line)


def store_folders(cache):
    return sorted(p for p in cache.iterdir() if p.is_dir())


@pytest.fixture
def data(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 5, "b": 5})
    return photo_lists(tmp_path / "photos")


def test_store_folder_is_reused_and_keyed_by_content_and_settings(data, tmp_path):
    logs, cache = [], tmp_path / "cache"
    first = decoded(data, cache_dir=cache, log=logs.append)
    assert len(store_folders(cache)) == 1 and built(logs[-1])
    second = decoded(data, cache_dir=cache, log=logs.append)
    assert logs[-1].startswith("decoded photos from")
    assert same_photos(first[0], second[0]) and same_photos(first[1], second[1])
    data["train"][0][0].write_bytes(data["train"][0][1].read_bytes())  # one photo's content changes
    decoded(data, cache_dir=cache, log=logs.append)
    assert len(store_folders(cache)) == 2 and built(logs[-1])
    decoded_photos(data, SHORT, EVAL, "center_crop", cache_dir=cache, progress=False, log=logs.append)
    assert len(store_folders(cache)) == 3  # another eval transform: another store
    fewer = {"train": (data["train"][0][1:], data["train"][1][1:]), "val": data["val"]}  # a photo deleted
    assert len(decoded(fewer, cache_dir=cache, log=logs.append)[0]) == 7 and built(logs[-1])
    assert len(store_folders(cache)) == 4


def test_memory_and_disk_stores_hold_the_same_photos_and_disk_mode_lets_pages_go(data, tmp_path):
    in_memory = decoded(data)
    on_disk = decoded(data, cache_dir=tmp_path / "cache", memory_budget=TINY)
    assert on_disk[0].mapping is not None and not on_disk[0].resident
    assert same_photos(in_memory[0], on_disk[0]) and same_photos(in_memory[1], on_disk[1])
    assert [tuple(p.shape) for p in images(in_memory[0])] == [(3, *fitted_size(40, 48, SHORT))] * 8


def mapped_kib(path):
    """This process's resident KiB of the mapping of `path` (/proc/self/smaps)."""
    lines, total, inside = open("/proc/self/smaps").read().splitlines(), 0, False
    for line in lines:
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", line.split()[0]):  # a mapping's first line
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.slow
def test_disk_mode_holds_only_the_photos_in_use(tmp_path):
    try:
        open("/proc/self/smaps").close()
    except OSError:
        pytest.skip("no /proc/self/smaps here: resident pages cannot be counted")
    make_class_folders(tmp_path / "photos", {"a": 20, "b": 20})
    big = {"train": (sorted((tmp_path / "photos").rglob("*.jpg")), [0] * 40), "val": ([], [])}
    for path in big["train"][0]:  # 400 x 600 photos: 40 of them take 28 MiB at short side 400
        open_photo(path).resize((600, 400)).save(path, format="JPEG")
    train, _ = decoded_photos(big, 400, EVAL, "squash", cache_dir=tmp_path / "cache", memory_budget=TINY,
                              progress=False)
    data_file = store_folders(tmp_path / "cache")[0] / "train.u8"
    for k in range(len(train)):
        train.image(k).sum()
    touched = mapped_kib(data_file)
    train.release()
    assert touched > 20_000 and mapped_kib(data_file) < touched / 10, (touched, mapped_kib(data_file))
    config = dataclasses.replace(TrainConfig(), image_size=32, batch_size=8)
    batches = CachedTrainBatches(train, config, "cpu", DeviceSettings())
    batches.set_epoch(1)
    for _ in batches:  # a training epoch lets each batch's pages go: at most a batch's worth stays
        assert mapped_kib(data_file) < touched / 4, mapped_kib(data_file)


@pytest.mark.parametrize("damage", ["truncated", "one byte", "index", "version"])
@pytest.mark.parametrize("budget", [None, TINY])
def test_a_damaged_or_foreign_store_is_rebuilt_not_trusted(data, tmp_path, damage, budget):
    logs, cache = [], tmp_path / "cache"
    decoded(data, cache_dir=cache, memory_budget=budget, log=logs.append)
    (folder,) = store_folders(cache)
    train_file = folder / "train.u8"
    if damage == "truncated":
        train_file.write_bytes(train_file.read_bytes()[:-10])
    elif damage == "one byte":
        raw = bytearray(train_file.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        train_file.write_bytes(raw)
    elif damage == "index":
        (folder / "index.pt").write_bytes(b"not an index")
    else:
        index = torch.load(folder / "index.pt", weights_only=True)
        torch.save({**index, "version": store.STORE_VERSION - 1}, folder / "index.pt")
    again, _ = decoded(data, cache_dir=cache, memory_budget=budget, log=logs.append)
    assert any("rebuilding the decoded photos" in line for line in logs), logs
    assert built(logs[-1]) and same_photos(decoded(data)[0], again)


def test_runs_sharing_a_cache_folder_wait_for_one_another(data, tmp_path):
    """One run holds the store's lock (it is decoding): another waits, then opens the finished store."""
    import fcntl

    cache = tmp_path / "cache"
    decoded(data, cache_dir=cache)  # learn the store's name
    (folder,) = store_folders(cache)
    lock = open(cache / f"{folder.name}.lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    logs, results = [], []
    waiter = threading.Thread(target=lambda: results.append(decoded(data, cache_dir=cache, log=logs.append)))
    waiter.start()
    deadline = time.monotonic() + 30
    while not logs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logs and logs[0].startswith("waiting for another run") and waiter.is_alive()
    lock.close()  # the other run is done
    waiter.join(30)
    assert results and logs[-1].startswith("decoded photos from")


def test_two_runs_decoding_the_same_photos_at_once_build_one_store(data, tmp_path):
    logs, cache = [], tmp_path / "cache"
    runs = [threading.Thread(target=decoded, args=(data,), kwargs={"cache_dir": cache, "memory_budget": TINY,
                                                                  "log": logs.append}) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert sum(bool(built(line)) for line in logs) == 1, logs
    assert sum(line.startswith("decoded photos from") for line in logs) == 1, logs
    assert len(store_folders(cache)) == 1 and not [p for p in cache.iterdir() if p.name.startswith(".")]


def fingerprint(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_a_disk_that_fills_while_writing_stops_in_one_line_and_leaves_nothing(data, tmp_path, monkeypatch):
    before, written = fingerprint(data["train"][0]), []

    def add(self, part, image, label):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(part)

    monkeypatch.setattr(store.StoreWriter, "add", add)
    cache = tmp_path / "cache"
    with pytest.raises(StorageError, match="cannot keep the decoded photos in .*No space left on device"):
        decoded(data, cache_dir=cache, memory_budget=TINY)
    assert store_folders(cache) == [] and not [p for p in cache.iterdir() if p.name.startswith(".")]
    assert fingerprint(data["train"][0]) == before


def test_too_little_free_disk_is_refused_before_decoding_unless_memory_will_do(data, tmp_path, monkeypatch):
    monkeypatch.setattr("petalnet.pipeline.cache.free_disk", lambda folder: 1000)
    with pytest.raises(StorageError, match="not enough free space .* need about"):
        decoded(data, cache_dir=tmp_path / "cache", memory_budget=TINY)
    logs = []
    train, _ = decoded(data, cache_dir=tmp_path / "cache", log=logs.append)  # fits in memory: goes on
    assert len(train) == 8 and "keeping them in memory instead" in logs[-2] and logs[-1].endswith("in memory")


def test_the_estimate_is_close_to_what_the_store_takes(tmp_path):
    sizes = [(30, 30), (60, 45), (48, 96), (200, 120), (35, 80)] * 30  # (w, h): some under the short side
    paths = [write_photo(tmp_path / f"{k}.jpg", k, size) for k, size in enumerate(sizes)]
    data = {"train": (paths[:-10], [0] * 140), "val": (paths[-10:], [0] * 10)}
    need, (train, val) = estimate_bytes(data, SHORT, EVAL, samples=20), decoded(data)
    assert train.nbytes + val.nbytes <= need <= 1.1 * (train.nbytes + val.nbytes)


def test_decoding_threads_give_the_same_photos_in_order_and_stop_at_a_broken_one(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 9, "b": 9})
    data = photo_lists(tmp_path / "photos")
    alone, threads = decoded(data, workers=0), decoded(data, workers=3)
    assert same_photos(alone[0], threads[0]) and same_photos(alone[1], threads[1])
    broken = data["train"][0][5]
    broken.write_bytes(broken.read_bytes()[:200])  # truncated after the check, before training decodes it
    with pytest.raises(UserError, match=f"cannot decode {broken}"):
        decoded(data, workers=3)
    with pytest.raises(UserError, match=f"cannot decode {broken}"):
        decoded(data, workers=3, cache_dir=tmp_path / "cache", memory_budget=TINY)
    assert store_folders(tmp_path / "cache") == []  # the half-built store is gone


@pytest.mark.parametrize("resize", ["squash", "center_crop"])
def test_val_photos_are_kept_exactly_as_evaluate_shows_them(sample_photos, resize):
    val = decode_eval_photos(sample_photos, range(len(sample_photos)), 48, resize, progress=False)
    assert len(val) == len(sample_photos) and val.labels.tolist() == list(range(len(sample_photos)))
    for k, path in enumerate(sample_photos):
        assert torch.equal(val.image(k), eval_tensor(open_eval_photo(path, 48, resize), 48, resize))


def test_train_photos_are_shrunk_never_enlarged_and_kept_within_twice_the_short_side(sample_photos):
    assert fitted_size(480, 640, 240) == (240, 320)
    assert fitted_size(100, 150, 240) == (100, 150)  # smaller already: kept
    assert fitted_size(300, 1200, 200) == (100, 400)  # a panorama: long side at most 2x the short side
    photo = open_photo(sample_photos[0])
    assert tuple(train_photo(sample_photos[0], 30).shape) == (*fitted_size(photo.height, photo.width, 30), 3)


def test_a_store_moved_to_another_device_keeps_every_photo(data, tmp_path, monkeypatch):
    """What CUDA runs do when the photos fit in GPU memory (here: to the CPU, a page a block)."""
    monkeypatch.setattr(store, "CHUNK", 10_000)  # in memory: a chunk per photo or two
    in_memory = decoded(data)[0]
    assert len(in_memory.buffers) >= 4
    for train in (in_memory, decoded(data, cache_dir=tmp_path / "cache", memory_budget=TINY)[0]):
        moved = train.to("cpu", block=store.PAGE)
        assert len(moved.buffers) == 1 and same_photos(train, moved)


FILE_LIMIT = """import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
from petalnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_store_that_cannot_be_written_stops_train_with_exit_3_and_leaves_nothing(made_photos, tmp_path):
    """A real failed write: files may not grow past 200 kB in this process (the store needs about 2 MB)."""
    cache, before = tmp_path / "cache", fingerprint(sorted(made_photos.rglob("*.jpg")))
    done = subprocess.run([sys.executable, "-c", FILE_LIMIT, "train", "--data", str(made_photos), "--out",
                           str(tmp_path / "run"), *SMALL, "--cache-dir", str(cache), "--cache-memory", "0.0015"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 3, shown(done)
    assert done.stderr.strip().splitlines() == [
        f"petalnet: error: cannot keep the decoded photos in {cache}: File too large (nothing was left there; "
        "the photos are untouched); free some space or pass --cache-dir on another disk"], shown(done)
    assert store_folders(cache) == [] and not [p for p in cache.iterdir() if p.name.startswith(".")]
    assert fingerprint(sorted(made_photos.rglob("*.jpg"))) == before
