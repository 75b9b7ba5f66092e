"""Folders of photos: a folder of class folders, or a `train/` + `val/` layout of them.

    photos/daisy/1.jpg, photos/roses/2.jpg, ...             -> one pool, split by petalnet
    photos/train/daisy/1.jpg, photos/val/daisy/3.jpg, ...   -> used as is

Class names are the sorted folder names (as torchvision's ImageFolder); hidden folders are skipped.
Non-image files are ignored here; `data check` lists them.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from petalnet.errors import UserError
from petalnet.data.images import is_image_name


@dataclass
class ClassFolder:
    """The photos of one folder of class folders: `files[i]` is labelled `classes[labels[i]]`."""

    root: Path
    classes: list
    files: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    other_files: list = field(default_factory=list)

    def counts(self):
        return {name: self.labels.count(i) for i, name in enumerate(self.classes)}


def is_split_layout(root):
    root = Path(root)
    return (root / "train").is_dir() and (root / "val").is_dir()


def require_folder(root):
    root = Path(root)
    if not root.exists():
        raise UserError(f"no such folder: {root}")
    if not root.is_dir():
        raise UserError(f"not a folder: {root}")
    return root


def find_classes(root):
    root = require_folder(root)
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except PermissionError:
        raise UserError(f"cannot read folder: {root}") from None
    if not names:
        raise UserError(f"no class folders in {root}: expected one subfolder of photos per class")
    return names


def scan_class_folder(root, classes=None):
    """List image files under each class folder (recursively), sorted, with their labels."""
    root = require_folder(root)
    classes = classes or find_classes(root)
    found = ClassFolder(root=root, classes=list(classes))
    for label, name in enumerate(classes):
        class_dir = root / name
        if not class_dir.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if is_image_name(filename):
                    found.files.append(path)
                    found.labels.append(label)
                else:
                    found.other_files.append(path)
    empty = [name for name, n in found.counts().items() if n == 0 and (root / name).is_dir()]
    if empty:
        raise UserError(f"class folder with no images in {root}: {', '.join(empty)}")
    return found
