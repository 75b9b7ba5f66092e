"""Split a folder of class folders into train and val, stratified, reproducible, leak-free.

    petalnet data split ~/.cache/petalnet/flower_photos --out data/flowers --val-fraction 0.1 --seed 0

Each class sends round(n * val_fraction) photos to val (at least 1, at most n - 1). Which ones is
decided by hashing (seed, photo bytes), so the split does not depend on file names or listing order.
Byte-identical photos and near-duplicates (near_duplicates.py: resized, recompressed, slightly cropped,
flipped or grey copies, similarity >= near_threshold) move together, as one group; a group filed under
two classes stays in train, so val never holds a copy of a training photo. `train` splits on the fly
with the same function.
"""

import csv
import hashlib
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from petalnet.data.check import check_near_threshold, scan_listing
from petalnet.data.download import data_folder
from petalnet.data.folders import require_folder, shown_path
from petalnet.data.sources import DataSource, folder_source, open_data
from petalnet.data.near_duplicates import DEFAULT_THRESHOLD, photo_groups
from petalnet.errors import UserError
from petalnet.data.settings import SplitSettings
from petalnet.utils.fields import check_fields, check_setting
from petalnet.utils.fileio import fsync_dir, write_json


LINK_NOT_FOLLOWED = "folder link not followed: a loop, or a folder already listed (no photo counted twice)"


@dataclass(frozen=True)
class Split:
    """Which photos of a folder of class folders went to train and which to val (split.json)."""
    source: str  # the folder, absolute
    classes: tuple[str, ...]  # label i is classes[i]
    train: tuple[tuple[str, int], ...]  # (path relative to source, label) per photo
    val: tuple[tuple[str, int], ...]
    val_fraction: float | None  # None: a manifest's split column decided, or folds (fold, folds)
    seed: int
    near_threshold: float | None = None  # None: near-duplicates not looked for (and splits before 0.2)
    near_duplicate_groups: int = 0  # groups kept on one side
    left_out: tuple[dict, ...] = ()  # {"path", "error"}: unreadable files (and unusable manifest rows)
    manifest: str | None = None  # the manifest the photos came from, absolute (None: class folders)
    test: tuple[tuple[str, int], ...] = ()  # a manifest's test rows: in neither part, for evaluate
    multilabel: bool = False  # labels are tuples of class indices (a manifest's labels column)
    fold: int | None = None  # k-fold cross-validation (data/folds.py): val is fold `fold` (1..folds) of `folds`
    folds: int | None = None

    def part(self, name):
        """The (relative path, label) pairs of "train", "val" or "test"."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def labels(self, name):
        return [label for _, label in self.part(name)]

    def paths(self, name, root=None):
        """The absolute paths of a part's photos (under `root`, default the source); UserError if some
        are gone."""
        return split_paths(self, name, root or self.source)

    def to_dict(self):
        """split.json's layout, as 0.2.0 wrote it (with a manifest: its path and its test rows besides; a fold
        of cross-validation: fold and folds)."""
        saved = {"source": self.source, "val_fraction": self.val_fraction, "seed": self.seed,
                 "near_threshold": self.near_threshold, "near_duplicate_groups": self.near_duplicate_groups,
                 "classes": list(self.classes), "train": [list(pair) for pair in self.train],
                 "val": [list(pair) for pair in self.val], "left_out": list(self.left_out)}
        if self.manifest:
            saved.update(manifest=self.manifest, test=[list(pair) for pair in self.test])
        if self.folds:
            saved.update(fold=self.fold, folds=self.folds)
        if self.multilabel:
            saved["multilabel"] = True
            for part in ("train", "val", "test"):
                if part in saved:
                    saved[part] = [[rel, list(labels)] for rel, labels in self.part(part)]
        return saved

    @classmethod
    def from_dict(cls, saved):
        """From split.json's dict (KeyError/TypeError/ValueError when it is not one)."""
        def pairs(part):
            return tuple((str(rel), tuple(map(int, label)) if isinstance(label, list) else int(label))
                         for rel, label in saved[part])

        return cls(source=saved["source"], classes=tuple(saved["classes"]), train=pairs("train"), val=pairs("val"),
                   val_fraction=saved["val_fraction"], seed=saved["seed"], near_threshold=saved.get("near_threshold"),
                   near_duplicate_groups=saved.get("near_duplicate_groups", 0),
                   left_out=tuple(saved.get("left_out", ())), manifest=saved.get("manifest"),
                   test=pairs("test") if "test" in saved else (), multilabel=bool(saved.get("multilabel")),
                   fold=saved.get("fold"), folds=saved.get("folds"))


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
        order = sorted(units[label], key=lambda d: seeded_rank(seed, d))
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


def split_label_sets(label_sets, keys, num_classes, val_fraction, seed):
    """(train_idx, val_idx) for photos with several labels: iterative stratification (Sechidis, Tsoumakas and
    Vlahavas, 2011) over units of photos that share a key (copies, near-duplicate groups), so each class's share
    of val is near val_fraction and no unit is cut in two; a unit whose photos differ in labels stays in train.
    The rarest class left is placed first, each of its units going where it is wanted most (the seed orders ties)."""
    check_fraction(val_fraction)
    units = defaultdict(list)
    for i, key in enumerate(keys):
        units[key].append(i)
    fraction = {"train": 1 - val_fraction, "val": val_fraction}
    counts = [sum(label in labels for labels in label_sets) for label in range(num_classes)]
    wanted = {part: [share * n for n in counts] for part, share in fraction.items()}
    room = {part: share * len(label_sets) for part, share in fraction.items()}
    side, left = {}, sorted(units, key=lambda key: seeded_rank(seed, key))
    for key in [key for key in left if len({label_sets[i] for i in units[key]}) > 1]:
        side[key] = "train"
    left = [key for key in left if key not in side]
    while left:
        present = [(sum(label in label_sets[units[key][0]] for key in left), label) for label in range(num_classes)]
        rarest = min(((n, label) for n, label in present if n), default=None)
        batch = [key for key in left if rarest is None or rarest[1] in label_sets[units[key][0]]]
        for key in batch:
            labels = label_sets[units[key][0]]
            part = max(("val", "train"), key=lambda p: (wanted[p][rarest[1]] if rarest else 0, room[p], p == "train"))
            side[key] = part
            room[part] -= len(units[key])
            for label in labels:
                wanted[part][label] -= len(units[key])
        left = [key for key in left if key not in side]
    free = [key for key in sorted(units, key=lambda key: seeded_rank(seed, key))
            if len({label_sets[i] for i in units[key]}) == 1]
    if "val" not in side.values() and len(free) > 1:  # too few photos for any class's share: one unit, as single-label
        side[free[0]] = "val"
    val = sorted(i for key, part in side.items() if part == "val" for i in units[key])
    if not val:
        raise UserError("too few photos to hold some out for val: add photos or raise --val-fraction")
    chosen = set(val)
    return [i for i in range(len(label_sets)) if i not in chosen], val


def seeded_rank(seed, digest):
    return hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()


def group_keys(digests, groups):
    """Each photo's digest, or for a member of a near-duplicate group the group's smallest digest."""
    keys = list(digests)
    for group in groups:
        shared = min(digests[i] for i in group)
        for i in group:
            keys[i] = shared
    return keys


@dataclass(frozen=True)
class ScannedPhotos:
    """One read of a source's photos (scan_source): what make_split and data/folds.py's make_folds build their
    Splits from. The lists are over the readable photos, in listing order."""
    source: DataSource
    classes: tuple[str, ...]
    multilabel: bool
    paths: list
    labels: list  # class indices (multilabel: tuples of them)
    digests: list  # sha256 of each photo's bytes
    looks: list  # near_duplicates.Look per photo (None: not looked at)
    parts: list | None  # a manifest's split column per photo ("train", "val", "test"); None: none
    left_out: tuple[dict, ...]  # {"path", "error"}: unreadable files, unusable rows, links not followed

    def near_groups(self, near_threshold):
        """Near-duplicate groups (lists of indices, byte copies included) at `near_threshold`; [] when None."""
        return photo_groups(self.digests, self.looks, near_threshold)[0] if near_threshold is not None else []

    def check_class_sizes(self, least, why, indices=None):
        """UserError naming the first class with fewer than `least` photos (among `indices`: all by default)."""
        counts = [0] * len(self.classes)
        for i in range(len(self.paths)) if indices is None else indices:
            for label in self.labels[i] if self.multilabel else (self.labels[i],):
                counts[label] += 1
        short = next((label for label, n in enumerate(counts) if n < least), None)
        if short is not None:
            raise UserError(f"class '{self.classes[short]}' has {counts[short]} readable photo(s) in "
                            f"{self.source.describe()}: {why}")

    def split(self, train_idx, val_idx, **fields):
        """The Split of these photos with `train_idx` in train and `val_idx` in val (a manifest's test rows in
        test); `fields`: val_fraction, seed, near_threshold, near_duplicate_groups, fold, folds."""
        def entries(idx):
            return tuple((shown_path(self.paths[i], self.source.root), self.labels[i]) for i in idx)

        manifest = self.source.manifest
        return Split(source=str(Path(self.source.root).resolve()), classes=self.classes, train=entries(train_idx),
                     val=entries(val_idx), left_out=self.left_out, multilabel=self.multilabel,
                     manifest=str(manifest.file.absolute()) if manifest else None,
                     test=entries([i for i, part in enumerate(self.parts or ()) if part == "test"]), **fields)


def as_source(data):
    """`data` as a DataSource: a folder of class folders (or a train/val layout) named by its path, or as it is."""
    return data if isinstance(data, DataSource) else folder_source(require_folder(data))


def scan_source(data, near_threshold=DEFAULT_THRESHOLD, progress=True, split_column=True):
    """Read every photo of `data` (a folder of class folders, or a DataSource of class folders or a manifest)
    once: hashed, decoded, and fingerprinted when near-duplicates are to be looked for (near_threshold not
    None, and with `split_column` only when no manifest split column decides the split)."""
    check_near_threshold(near_threshold)
    source = as_source(data)
    photos = source.photos()
    given = split_column and photos.parts is not None
    scan = scan_listing(photos, progress=progress, looks=near_threshold is not None and not given)
    paths, labels, digests, looks = scan.readable()
    left_out = [{"path": photos.shown(p), "error": why} for p, why in scan.unreadable.items()] + photos.dropped
    left_out += [{"path": photos.shown(link), "error": LINK_NOT_FOLLOWED} for link in photos.links_skipped]
    parts = [photos.parts[i] for i in scan.readable_indices()] if photos.parts is not None else None
    return ScannedPhotos(source=source, classes=tuple(photos.classes), multilabel=photos.multilabel, paths=paths,
                         labels=labels, digests=digests, looks=looks, parts=parts, left_out=tuple(left_out))


def make_split(data, val_fraction=0.1, seed=0, progress=True, near_threshold=DEFAULT_THRESHOLD):
    """Scan `data` (a folder of class folders, or a DataSource of class folders or a manifest) and return the
    Split that `data split` writes and `train` keeps. A manifest's split column is used as it is."""
    check_fraction(val_fraction)
    scanned = scan_source(data, near_threshold, progress)
    if scanned.parts is not None:
        return scanned.split(_given_split(scanned.source, scanned.parts),
                             _given_split(scanned.source, scanned.parts, "val"), val_fraction=None, seed=seed)
    if not scanned.multilabel:
        scanned.check_class_sizes(2, "at least 2 are needed to split it")
    groups = scanned.near_groups(near_threshold)
    stratified = split_label_sets if scanned.multilabel else split_indices
    train_idx, val_idx = stratified(scanned.labels, group_keys(scanned.digests, groups), len(scanned.classes),
                                    val_fraction, seed)
    return scanned.split(train_idx, val_idx, val_fraction=val_fraction, seed=seed, near_threshold=near_threshold,
                         near_duplicate_groups=len(groups))


def _given_split(source, parts, name="train"):
    """The indices of a manifest's rows whose split column says `name`; UserError when there are none."""
    found = [i for i, part in enumerate(parts) if part == name]
    if not found:
        raise UserError(f"{source.manifest.file} has no readable {name} photos in its split column: give some "
                        f"rows split {name}, or drop the column to let petalnet split them")
    return found


def split_paths(split, part, root):
    """The absolute paths of a Split's train or val photos under `root`; UserError if some are gone."""
    paths = [Path(root) / rel for rel, _ in split.part(part)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{len(missing)} {part} photo(s) of the recorded split are missing under {root} "
                        f"(first: {missing[0]}): was the dataset moved? pass --data")
    return paths


def write_split_folders(split, out):
    """Materialize a Split as out/train/..., out/val/... (hard links) + out/split.json; from a manifest, also
    out/test/... and out/labels.csv (path, label, split: a manifest `train --data` takes as it is)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty: choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = Path(split.source)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        copied, rows = 0, []
        for part in ("train", "val", "test"):
            for rel, label in split.part(part):
                placed = Path(part) / _inside(rel)
                copied += _link_or_copy(source / rel, tmp / placed)
                rows.append((placed.as_posix(), split.classes[label], part))
        write_json(tmp / "split.json", split.to_dict())
        if split.manifest:
            with open(tmp / "labels.csv", "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows([("path", "label", "split"), *rows])
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return copied


def _inside(rel):
    """A photo's place under a part's folder: its path, or for a photo outside the manifest's folder (an
    absolute path) `_outside/` and its path without the root."""
    path = Path(rel)
    return Path("_outside", *path.parts[1:]) if path.is_absolute() else path


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
    for part in ("train", "val", "test") if split.test else ("train", "val"):
        counts = [0] * len(classes)
        for labels in split.labels(part):
            for label in labels if split.multilabel else (labels,):
                counts[label] += 1
        detail = ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
        lines.append(f"{part}: {len(split.part(part))} photos ({detail})")
    if split.near_duplicate_groups:
        lines.append(f"kept {split.near_duplicate_groups} group(s) of near-duplicates (similarity >= "
                     f"{split.near_threshold:g}) on one side each")
    if split.left_out:
        lines.append(left_out_title(split.left_out, unreadable_only=not split.manifest))
        lines += [f"  {r['path']}: {r['error']}" for r in split.left_out]
    return "\n".join(lines)


def left_out_title(rows, unreadable_only):
    """The line above the photos a split or a run left out: `unreadable_only` when the photos came from folders
    without an --exclude (then only a skipped folder link is anything but an unreadable file)."""
    if unreadable_only and all(row["error"] != LINK_NOT_FOLLOWED for row in rows):
        return f"left out {len(rows)} unreadable file(s):"
    return f"left out {len(rows)} photo(s), row(s) or link(s): unreadable, excluded, unusable or loops:"


def run_split(settings):
    """`petalnet data split`: split, write the train/val layout, say what went where. Returns 0."""
    check_fields(settings)
    source = open_data(data_folder(settings.src), settings.label_column, settings.allow_paths_outside)
    if source.kind == "train/val":
        raise UserError(f"{source.root} is split already (train/ and val/)")
    split = make_split(source, settings.val_fraction, settings.seed, near_threshold=settings.near_threshold)
    copied = write_split_folders(split, settings.out)
    print(summarize(split))
    how = f"copied {copied} file(s) where hard links failed" if copied else "hard links, no copies"
    made = (f"{settings.out}/train, {settings.out}/val, {settings.out}/test and {settings.out}/labels.csv"
            if split.manifest else f"{settings.out}/train and {settings.out}/val")
    print(f"wrote {made} ({how})")
    return 0
