"""Split a folder of class folders into train and val, stratified, reproducible, leak-free.

    petalnet data split ~/.cache/petalnet/flower_photos --out data/flowers --val-fraction 0.1 --seed 0

Each class sends round(n * val_fraction) photos to val (at least 1, at most n - 1). Which ones is
decided by hashing (seed, photo bytes), so the split does not depend on file names or listing order.
Byte-identical photos and near-duplicates (near_duplicates.py: resized, recompressed, slightly cropped,
flipped or grey copies, similarity >= near_threshold) move together, as one group; a group filed under
two classes stays in train, so val never holds a copy of a training photo. `train` splits on the fly
with the same function.
"""

import hashlib
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from petalnet.data.check import check_near_threshold, scan_photos
from petalnet.data.download import data_folder
from petalnet.data.near_duplicates import DEFAULT_THRESHOLD, photo_groups
from petalnet.errors import UserError
from petalnet.data.settings import SplitSettings
from petalnet.utils.fields import check_fields, check_setting
from petalnet.utils.fileio import fsync_dir, write_json


@dataclass(frozen=True)
class Split:
    """Which photos of a folder of class folders went to train and which to val (split.json)."""
    source: str  # the folder, absolute
    classes: tuple[str, ...]  # label i is classes[i]
    train: tuple[tuple[str, int], ...]  # (path relative to source, label) per photo
    val: tuple[tuple[str, int], ...]
    val_fraction: float
    seed: int
    near_threshold: float | None = None  # None: near-duplicates not looked for (and splits before 0.2)
    near_duplicate_groups: int = 0  # groups kept on one side
    left_out: tuple[dict, ...] = ()  # {"path", "error"}: unreadable files, not in either part

    def part(self, name):
        """The (relative path, label) pairs of "train" or "val"."""
        return {"train": self.train, "val": self.val}[name]

    def labels(self, name):
        return [label for _, label in self.part(name)]

    def paths(self, name, root=None):
        """The absolute paths of a part's photos (under `root`, default the source); UserError if some
        are gone."""
        return split_paths(self, name, root or self.source)

    def to_dict(self):
        """split.json's layout, as 0.2.0 wrote it."""
        return {"source": self.source, "val_fraction": self.val_fraction, "seed": self.seed,
                "near_threshold": self.near_threshold, "near_duplicate_groups": self.near_duplicate_groups,
                "classes": list(self.classes), "train": [list(pair) for pair in self.train],
                "val": [list(pair) for pair in self.val], "left_out": list(self.left_out)}

    @classmethod
    def from_dict(cls, saved):
        """From split.json's dict (KeyError/TypeError/ValueError when it is not one)."""
        def pairs(part):
            return tuple((str(rel), int(label)) for rel, label in saved[part])

        return cls(source=saved["source"], classes=tuple(saved["classes"]), train=pairs("train"), val=pairs("val"),
                   val_fraction=saved["val_fraction"], seed=saved["seed"], near_threshold=saved.get("near_threshold"),
                   near_duplicate_groups=saved.get("near_duplicate_groups", 0),
                   left_out=tuple(saved.get("left_out", ())))


def check_fraction(val_fraction):
    check_setting(SplitSettings, "val_fraction", val_fraction)


def split_indices(labels, digests, num_classes, val_fraction, seed):
    """Return (train_idx, val_idx) lists of indices into labels/digests. Photos that share a digest (a
    file's, or the one group_keys gives a near-duplicate group) go to the same side."""
    check_fraction(val_fraction)
    classes_of_digest = defaultdict(set)
    for label, digest in zip(labels, digests):
        classes_of_digest[digest].add(label)
    units = defaultdict(lambda: defaultdict(list))  # label -> digest -> [indices]
    for i, (label, digest) in enumerate(zip(labels, digests)):
        units[label][digest].append(i)
    val = []
    for label in range(num_classes):
        n = sum(len(idx) for idx in units[label].values())
        target = min(max(round(n * val_fraction), 1), n - 1)
        order = sorted(units[label], key=lambda d: _rank(seed, d))
        taken = 0
        for digest in order:
            group = units[label][digest]
            if len(classes_of_digest[digest]) > 1 or taken + len(group) > target:
                continue
            val += group
            taken += len(group)
            if taken == target:
                break
    val_set = set(val)
    return [i for i in range(len(labels)) if i not in val_set], sorted(val)


def _rank(seed, digest):
    return hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()


def group_keys(digests, groups):
    """Each photo's digest, or for a member of a near-duplicate group the group's smallest digest."""
    keys = list(digests)
    for group in groups:
        shared = min(digests[i] for i in group)
        for i in group:
            keys[i] = shared
    return keys


def make_split(root, val_fraction=0.1, seed=0, progress=True, near_threshold=DEFAULT_THRESHOLD):
    """Scan `root` and return the Split that `data split` writes and `train` keeps."""
    check_fraction(val_fraction)
    check_near_threshold(near_threshold)
    scan = scan_photos(root, progress=progress, looks=near_threshold is not None)
    paths, labels, digests, looks = scan.readable()
    classes = scan.folder.classes
    for label, name in enumerate(classes):
        if labels.count(label) < 2:
            raise UserError(f"class '{name}' has {labels.count(label)} readable photo(s) in {root}: "
                            "at least 2 are needed to split it")
    groups = photo_groups(digests, looks, near_threshold)[0] if near_threshold is not None else []
    train_idx, val_idx = split_indices(labels, group_keys(digests, groups), len(classes), val_fraction, seed)
    root = Path(root)

    def entries(idx):
        return tuple((str(paths[i].relative_to(root)), labels[i]) for i in idx)

    return Split(source=str(root.resolve()), classes=tuple(classes), train=entries(train_idx), val=entries(val_idx),
                 val_fraction=val_fraction, seed=seed, near_threshold=near_threshold,
                 near_duplicate_groups=len(groups),
                 left_out=tuple({"path": str(p.relative_to(root)), "error": why} for p, why in scan.unreadable.items()))


def split_paths(split, part, root):
    """The absolute paths of a Split's train or val photos under `root`; UserError if some are gone."""
    paths = [Path(root) / rel for rel, _ in split.part(part)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{len(missing)} {part} photo(s) of the recorded split are missing under {root} "
                        f"(first: {missing[0]}): was the dataset moved? pass --data")
    return paths


def write_split_folders(split, out):
    """Materialize a Split as out/train/<class>/..., out/val/<class>/... (hard links) + out/split.json."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty: choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = Path(split.source)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        copied = 0
        for part in ("train", "val"):
            for rel, _label in split.part(part):
                copied += _link_or_copy(source / rel, tmp / part / rel)
        write_json(tmp / "split.json", split.to_dict())
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return copied


def _link_or_copy(src, dst):
    """Hard-link src to dst; copy when links are not possible. Returns 1 when it copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return 0
    except OSError:
        shutil.copy2(src, dst)
        return 1


def summarize(split):
    classes = split.classes
    lines = []
    for part in ("train", "val"):
        counts = [0] * len(classes)
        for label in split.labels(part):
            counts[label] += 1
        detail = ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
        lines.append(f"{part}: {len(split.part(part))} photos ({detail})")
    if split.near_duplicate_groups:
        lines.append(f"kept {split.near_duplicate_groups} group(s) of near-duplicates (similarity >= "
                     f"{split.near_threshold:g}) on one side each")
    if split.left_out:
        lines.append(f"left out {len(split.left_out)} unreadable file(s):")
        lines += [f"  {r['path']}: {r['error']}" for r in split.left_out]
    return "\n".join(lines)


def run_split(settings):
    """`petalnet data split`: split, write the train/val layout, say what went where. Returns 0."""
    check_fields(settings)
    split = make_split(data_folder(settings.src), settings.val_fraction, settings.seed,
                       near_threshold=settings.near_threshold)
    copied = write_split_folders(split, settings.out)
    print(summarize(split))
    how = f"copied {copied} file(s) where hard links failed" if copied else "hard links, no copies"
    print(f"wrote {settings.out}/train and {settings.out}/val ({how})")
    return 0
