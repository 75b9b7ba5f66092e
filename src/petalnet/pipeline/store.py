"""Decoded photos packed one after another, each at its own size: in memory, or in a folder read memory-mapped.

    writer = StoreWriter(folder=None)        # None: in memory (64 MiB chunks); a folder: one file per part
    writer.add("train", hwc_uint8, label)    # photo by photo, as they are decoded
    parts = writer.finish()                  # {"train": PackedPhotos, "val": PackedPhotos}
    parts = open_store(folder, resident)     # a finished folder, memory-mapped
    photos.image(k)                          # uint8 (3, h, w), channels_last strides, a view
    photos.release()                         # disk mode: drop the pages read so far from this process

A photo is stored as its h x w x 3 bytes (HWC, what Pillow decodes), with no padding. The folder holds
`<part>.u8` (the bytes) and `index.pt` (offsets, sizes, labels, byte counts, CRC-32 of each part); the
index is written last, into a folder that is renamed into place only when complete, so a folder that
exists was finished. `open_store` checks its version, its byte counts (a truncated file) and its CRC-32
(a changed byte) before anything is trusted.

Resident memory: a memory-mapped photo occupies this process's memory once read. `resident=True` keeps it
(the folder fits the memory budget: pages stay, and processes on one machine share them through the page
cache); `resident=False` drops the pages after each batch (MADV_DONTNEED), so the process holds about
one batch of photos whatever the folder's size, and the kernel's page cache serves what it can.
"""

import contextlib
import io
import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

STORE_VERSION = 2  # 1: the padded canvas in one .pt file (petalnet <= 0.3)
CHUNK = 64 * 2**20  # bytes per in-memory chunk
INDEX = "index.pt"
PAGE = mmap.PAGESIZE


class BrokenStore(Exception):
    """A store folder that cannot be trusted: it is rebuilt."""


@dataclass
class PackedPhotos:
    """Photos of any sizes packed in flat uint8 buffers: photo k is buffers[place[k, 0]] from place[k, 1]."""
    buffers: list  # 1-D uint8 tensors
    place: torch.Tensor  # int64 (N, 2): buffer, byte offset
    sizes: torch.Tensor  # int64 (N, 2): height, width
    labels: torch.Tensor  # int64 (N,)
    mapping: mmap.mmap | None = None  # the memory-mapped file behind buffers[0], if any
    resident: bool = True  # False: release() drops pages after use

    def __len__(self):
        return len(self.labels)

    @property
    def nbytes(self):
        return int((self.sizes[:, 0] * self.sizes[:, 1]).sum()) * 3

    def image(self, k):
        """Photo k as uint8 (3, h, w): a view (HWC bytes, so channels_last strides)."""
        (buffer, offset), (h, w) = self.place[k].tolist(), self.sizes[k].tolist()
        return self.buffers[buffer][offset:offset + h * w * 3].view(h, w, 3).permute(2, 0, 1)

    def release(self):
        """Disk mode: let go of the pages read so far (they are read again from the file when needed).

        The whole mapping, once a batch: the kernel maps a few pages around each page read (fault-around),
        so dropping only the batch's photos leaves their neighbours' pages behind, and those add up with
        the folder's size (benchmarks/bench_stores.py measured it). An madvise over pages that are not
        mapped costs next to nothing.
        """
        if self.mapping is not None and not self.resident:
            self.mapping.madvise(mmap.MADV_DONTNEED)

    def to(self, device, block=256 * 2**20):
        """These photos in one buffer on `device` (CUDA: the whole store in GPU memory), copied a block at a
        time; a memory-mapped file's pages are let go after each block (disk mode stays within its budget)."""
        sizes = [len(b) for b in self.buffers]
        flat = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
        start = 0
        for buffer, size in zip(self.buffers, sizes):
            for at in range(0, size, block):
                end = min(at + block, size)
                flat[start + at:start + end].copy_(buffer[at:end])
                if self.mapping is not None and not self.resident:
                    self.mapping.madvise(mmap.MADV_DONTNEED, at, end - at)  # block: a multiple of the page size
            start += size
        starts = torch.tensor([0, *sizes], dtype=torch.long).cumsum(0)
        place = torch.stack([torch.zeros(len(self), dtype=torch.long), starts[self.place[:, 0]] + self.place[:, 1]], 1)
        return PackedPhotos([flat], place, self.sizes, self.labels)


def stacked(photos, index):
    """Photos `index` of equal size (val) as one uint8 (N, 3, S, S) batch."""
    return torch.stack([photos.image(k) for k in index.tolist()])


class StoreWriter:
    """Appends photos part by part, in memory or into a folder's files; finish() gives the PackedPhotos."""

    def __init__(self, folder=None, parts=("train", "val")):
        self.folder = Path(folder) if folder is not None else None
        self.rows = {part: ([], [], []) for part in parts}  # place, sizes, labels
        self.chunks = {part: [] for part in parts}  # in memory: list of [tensor, used bytes]
        self.files = {part: open(self.folder / f"{part}.u8", "wb") for part in parts} if self.folder else {}
        self.written = {part: 0 for part in parts}
        self.crc = {part: 0 for part in parts}

    def add(self, part, image, label):
        """Append one photo: uint8 HWC (h, w, 3), contiguous."""
        data = image.reshape(-1)
        place, sizes, labels = self.rows[part]
        sizes.append(tuple(image.shape[:2]))
        labels.append(int(label))
        if self.folder is None:
            place.append(self._into_chunk(part, data))
        else:
            place.append((0, self.written[part]))
            view = memoryview(data.numpy())
            self.files[part].write(view)
            self.crc[part] = zlib.crc32(view, self.crc[part])
        self.written[part] += len(data)

    def _into_chunk(self, part, data):
        chunks = self.chunks[part]
        if not chunks or chunks[-1][1] + len(data) > len(chunks[-1][0]):
            self._trim(part)
            chunks.append([torch.empty(max(CHUNK, len(data)), dtype=torch.uint8), 0])
        chunk = chunks[-1]
        chunk[0][chunk[1]:chunk[1] + len(data)] = data
        chunk[1] += len(data)
        return len(chunks) - 1, chunk[1] - len(data)

    def _trim(self, part):
        if self.chunks[part] and self.chunks[part][-1][1] < len(self.chunks[part][-1][0]):
            last = self.chunks[part][-1]
            last[0] = last[0][:last[1]].clone()

    def finish(self, key=None):
        """The PackedPhotos of every part (in memory); into a folder: the index too, then the parts mapped."""
        if self.folder is None:
            for part in self.rows:
                self._trim(part)
            return {part: _packed([c for c, _ in self.chunks[part]], *self._tables(part)) for part in self.rows}
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        index = {"version": STORE_VERSION, "key": key, "parts": {}}
        for part in self.rows:
            place, sizes, labels = self._tables(part)
            index["parts"][part] = {"offsets": place[:, 1], "sizes": sizes, "labels": labels,
                                    "bytes": self.written[part], "crc32": self.crc[part]}
        buffer = io.BytesIO()  # torch.save reports a full disk as a RuntimeError: write the bytes ourselves
        torch.save(index, buffer)
        with open(self.folder / INDEX, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        return None

    def close(self):
        for f in self.files.values():
            with contextlib.suppress(OSError):  # a full disk fails the last flush: close the others anyway
                f.close()

    def _tables(self, part):
        place, sizes, labels = self.rows[part]
        return (torch.tensor(place, dtype=torch.long).reshape(-1, 2),
                torch.tensor(sizes, dtype=torch.long).reshape(-1, 2), torch.tensor(labels, dtype=torch.long))


def _packed(buffers, place, sizes, labels, mapping=None, resident=True):
    return PackedPhotos(buffers, place, sizes, labels, mapping, resident)


def open_store(folder, key=None, resident=True, check=True):
    """{part: PackedPhotos} of a finished store folder, memory-mapped; BrokenStore if it cannot be trusted.

    check: compare each part's CRC-32 (a full read of the files: through the mapping when `resident`,
    so the photos are in memory afterwards; else with plain reads, which leave this process's memory alone).
    """
    folder = Path(folder)
    try:
        index = torch.load(folder / INDEX, weights_only=True)
        parts = index["parts"]
    except Exception as err:  # noqa: BLE001 - any unreadable index: the folder is rebuilt
        raise BrokenStore(f"unreadable index ({type(err).__name__})") from None
    if index.get("version") != STORE_VERSION or (key is not None and index.get("key") != key):
        raise BrokenStore(f"built by another version ({index.get('version')}) or for other photos")
    return {part: _open_part(folder / f"{part}.u8", meta, resident, check) for part, meta in parts.items()}


def _open_part(path, meta, resident, check):
    try:
        size = path.stat().st_size
    except OSError as err:
        raise BrokenStore(f"{path.name}: {err.strerror}") from None
    if size != meta["bytes"]:
        raise BrokenStore(f"{path.name} holds {size} bytes, its index says {meta['bytes']} (truncated?)")
    place = torch.stack([torch.zeros_like(meta["offsets"]), meta["offsets"]], dim=1)
    if size == 0:
        return _packed([], place, meta["sizes"], meta["labels"])
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # private: never written back
    if check and _crc32(path, mapping, resident) != meta["crc32"]:
        raise BrokenStore(f"{path.name} does not match its checksum")
    if resident:
        mapping.madvise(mmap.MADV_WILLNEED)
    buffer = torch.frombuffer(mapping, dtype=torch.uint8)
    return _packed([buffer], place, meta["sizes"], meta["labels"], mapping, resident)


def _crc32(path, mapping, resident, block=16 * 2**20):
    crc = 0
    if resident:
        view = memoryview(mapping)
        for start in range(0, len(mapping), block):
            crc = zlib.crc32(view[start:start + block], crc)
        view.release()
        return crc
    buffer = bytearray(block)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            crc = zlib.crc32(memoryview(buffer)[:n], crc)
    return crc
