"""Folders of photos: a folder of class folders, or a `train/` + `val/` layout of them.

    photos/daisy/1.jpg, photos/roses/2.jpg, ...             -> one pool, split by petalnet
    photos/train/daisy/1.jpg, photos/val/daisy/3.jpg, ...   -> used as is

Class names are the sorted folder names (as torchvision's ImageFolder); hidden folders are skipped.
Non-image files are ignored here; `data check` lists them.

    list_photos(["a.jpg", "inbox/"])      # files as given, folders expanded to their image files

Every folder is walked the same way (walk_folder): recursively, sorted, hidden files and folders skipped,
folder links followed, but each real folder once: a link back up (`daisy/deeper/up -> ..`) or a second
link to a folder already walked is skipped, so no photo is listed twice.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from petalnet.errors import UserError
from petalnet.data.images import is_image_name


@dataclass
class LabelledPhotos:
    """Photos with their labels, from a folder of class folders (scan_class_folder) or a manifest
    (manifest.py): `files[i]` is labelled `classes[labels[i]]`; with `multilabel`, `labels[i]` is a tuple of
    class indices (empty: none of the classes)."""

    root: Path  # the folder the photos' paths are shown relative to
    classes: list
    files: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    other_files: list = field(default_factory=list)  # non-image files in class folders (ignored)
    parts: list | None = None  # a manifest's split column: "train", "val" or "test" per photo; None: none
    dropped: list = field(default_factory=list)  # {"path", "error"}: manifest rows not used (missing, repeated...)
    multilabel: bool = False
    form: str = "class folders"  # or "manifest"
    links_skipped: list = field(default_factory=list)  # folder links not followed: a loop, or a folder seen before

    def label_sets(self):
        """Each photo's labels as a tuple of class indices (one for single-label photos)."""
        return [tuple(label) if self.multilabel else (label,) for label in self.labels]

    def counts(self):
        """{class: photos that carry it}."""
        counts = {name: 0 for name in self.classes}
        for labels in self.label_sets():
            for label in labels:
                counts[self.classes[label]] += 1
        return counts

    def shown(self, path):
        """`path` as reports show it: relative to root when under it, else absolute."""
        return shown_path(path, self.root)


def shown_path(path, root):
    """`path` relative to `root` when under it (lexically), else as it is."""
    relative = os.path.relpath(path, root)
    return str(path) if relative.startswith("..") else relative


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


def walk_folder(root, skipped=None, seen=None):
    """(folder, sorted file names) for `root` and every folder below it, depth first, sorted; hidden folders
    skipped; a link to a folder above it (a loop) or to one reached before (its real path already walked,
    or in the set `seen` shared between walks) is not walked and its path is added to the list `skipped` when
    one is given."""
    seen = set() if seen is None else seen
    seen.add(os.path.realpath(root))
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        kept, here = [], os.path.realpath(dirpath)
        for name in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, name))
            if real in seen or here == real or here.startswith(real.rstrip(os.sep) + os.sep):  # seen, or a loop
                if skipped is not None:
                    skipped.append(Path(dirpath) / name)
                continue
            seen.add(real)
            kept.append(name)
        dirnames[:] = kept
        yield Path(dirpath), sorted(filenames)


def list_photos(paths, skipped=None):
    """Files as given, folders expanded to their image files (walk_folder: recursive, sorted, hidden files
    and folders skipped, each real folder once; the links not followed are added to `skipped`)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [folder / name for folder, names in walk_folder(path, skipped) for name in names
                      if is_image_name(name)]
        else:
            found.append(path)
    return found


def scan_class_folder(root, classes=None):
    """List image files under each class folder (recursively), sorted, with their labels."""
    root = require_folder(root)
    classes = classes or find_classes(root)
    found = LabelledPhotos(root=root, classes=list(classes))
    seen = {os.path.realpath(root / name) for name in classes}  # a link into another class: not followed
    for label, name in enumerate(classes):
        class_dir = root / name
        if not class_dir.is_dir():
            continue
        for folder, filenames in walk_folder(class_dir, found.links_skipped, seen):
            for filename in filenames:
                path = folder / filename
                if is_image_name(filename):
                    found.files.append(path)
                    found.labels.append(label)
                else:
                    found.other_files.append(path)
    empty = [name for name, n in found.counts().items() if n == 0 and (root / name).is_dir()]
    if empty:
        raise UserError(f"class folder with no images in {root}: {', '.join(empty)}")
    return found
