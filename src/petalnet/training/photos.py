"""The photos of a run: a train/val layout as it is, or class folders or a manifest split on the fly.

    source = open_data("photos/")                    # data/sources.py: class folders, train/val, manifest
    split = shared_split(source, config, processes)   # under torchrun: rank 0's split, on every rank
    photos = load_data(source, config, split)  # TrainData: classes, train and val paths and labels
    check_same_photos(photos, source.root, processes)   # under torchrun: every machine lists the same photos
"""

import hashlib
import json
import os
from dataclasses import dataclass, field

from petalnet.data.check import scan_listing
from petalnet.data.folders import find_classes, require_folder, scan_class_folder
from petalnet.data.split import Split, make_split
from petalnet.devices import distributed
from petalnet.errors import UserError


@dataclass
class TrainData:
    classes: list
    train_paths: list
    train_labels: list
    val_paths: list
    val_labels: list
    layout: str
    left_out: list = field(default_factory=list)  # [{"path", "error"}] unreadable photos
    split: Split | None = None  # data/split.py's Split of class folders or a manifest
    multilabel: bool = False  # labels are tuples of class indices (a manifest's labels column)


def load_data(source, config, saved_split=None, progress=True):
    """Find the photos of a DataSource (data/sources.py): a train/val layout as is; class folders or a
    manifest split on the fly (a manifest's split column as it says)."""
    if source.kind == "train/val":
        return _load_split_layout(source, progress)
    split = saved_split or make_split(source, config.val_fraction, config.seed, progress=progress)
    return TrainData(classes=list(split.classes), train_paths=split.paths("train", source.root),
                     val_paths=split.paths("val", source.root), train_labels=split.labels("train"),
                     val_labels=split.labels("val"), layout=source.kind, left_out=list(split.left_out),
                     split=split, multilabel=split.multilabel)


def shared_split(source, config, processes, progress=True):
    """Under torchrun, rank 0's split of class folders or a manifest, on every rank (None otherwise): one
    process reads and compares every photo, and all ranks train on one split even when machines' float
    arithmetic differs at a near-duplicate threshold's edge."""
    if not processes.active:
        return None

    def split_here():
        return None if source.kind == "train/val" else make_split(source, config.val_fraction, config.seed,
                                                                  progress=progress)

    return distributed.on_rank0(split_here, processes)


def _load_split_layout(source, progress):
    """A train/val layout as it is (its photos listed in --exclude left out)."""
    root = require_folder(source.root)
    classes = find_classes(root / "train")
    extra = sorted(set(find_classes(root / "val")) - set(classes))
    if extra:
        raise UserError(f"val has classes that train lacks: {', '.join(extra)} (train has {', '.join(classes)})")
    scans = [scan_listing(source.without_excluded(scan_class_folder(root / part, classes)), progress,
                          f"checking {part} photos") for part in ("train", "val")]
    (train_paths, train_labels, _, _), (val_paths, val_labels, _, _) = (scan.readable() for scan in scans)
    if not val_paths:
        raise UserError(f"no readable photos in {root / 'val'}")
    left_out = [{"path": os.path.relpath(p, root), "error": why}
                for scan in scans for p, why in scan.unreadable.items()]
    left_out += [{**row, "path": f"{part}/{row['path']}"} for part, scan in zip(("train", "val"), scans)
                 for row in scan.photos.dropped]
    return TrainData(classes=classes, train_paths=train_paths, train_labels=train_labels, val_paths=val_paths,
                     val_labels=val_labels, layout="train/val", left_out=left_out)


def check_same_photos(photos, data, processes):
    """Under torchrun on several machines each lists its own copy of the photos: they must agree."""
    listing = [photos.classes, *([os.path.relpath(p, data) for p in paths] for paths in (photos.train_paths,
               photos.val_paths)), photos.train_labels, photos.val_labels]
    digest = hashlib.sha256(json.dumps(listing, default=str).encode()).hexdigest()
    differ = distributed.ranks_that_differ(digest, processes)
    if differ:
        raise UserError(f"rank {differ[0]} sees other photos in {data} than rank 0 ({len(photos.train_paths)} train "
                        f"/ {len(photos.val_paths)} val here): every machine needs the same photos at the same path")
