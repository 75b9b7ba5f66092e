"""The photos of a run: a train/val layout as it is, or a folder of class folders split on the fly.

    split = shared_split(root, config, processes)   # under torchrun: rank 0's split, on every rank
    photos = load_data(root, config, split)  # TrainData: classes, train and val paths and labels
    check_same_photos(photos, root, processes)   # under torchrun: every machine lists the same photos
"""

import hashlib
import json
import os
from dataclasses import dataclass, field

from petalnet.data.check import scan_photos
from petalnet.data.folders import find_classes, is_split_layout, require_folder
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
    split: Split | None = None  # data/split.py's Split when petalnet split a folder of class folders


def load_data(root, config, saved_split=None, progress=True):
    """Find the photos: a train/val layout as is, or a folder of class folders split on the fly."""
    root = require_folder(root)
    if is_split_layout(root):
        return _load_split_layout(root, progress)
    split = saved_split or make_split(root, config.val_fraction, config.seed, progress=progress)
    return TrainData(classes=list(split.classes), train_paths=split.paths("train", root),
                     val_paths=split.paths("val", root), train_labels=split.labels("train"),
                     val_labels=split.labels("val"), layout="class folders", left_out=list(split.left_out),
                     split=split)


def shared_split(root, config, processes, progress=True):
    """Under torchrun, rank 0's split of a folder of class folders, on every rank (None otherwise): one
    process reads and compares every photo, and all ranks train on one split even when machines' float
    arithmetic differs at a near-duplicate threshold's edge."""
    if not processes.active:
        return None

    def split_here():
        folder = require_folder(root)
        return None if is_split_layout(folder) else make_split(folder, config.val_fraction, config.seed,
                                                               progress=progress)

    return distributed.on_rank0(split_here, processes)


def _load_split_layout(root, progress):
    classes = find_classes(root / "train")
    extra = sorted(set(find_classes(root / "val")) - set(classes))
    if extra:
        raise UserError(f"val has classes that train lacks: {', '.join(extra)} (train has {', '.join(classes)})")
    train_scan = scan_photos(root / "train", classes, progress=progress, desc="checking train photos")
    val_scan = scan_photos(root / "val", classes, progress=progress, desc="checking val photos")
    train_paths, train_labels, _, _ = train_scan.readable()
    val_paths, val_labels, _, _ = val_scan.readable()
    if not val_paths:
        raise UserError(f"no readable photos in {root / 'val'}")
    left_out = [{"path": str(p.relative_to(root)), "error": why}
                for scan in (train_scan, val_scan) for p, why in scan.unreadable.items()]
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
