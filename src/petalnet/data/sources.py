"""What `--data` names, found out once: a folder of class folders, a train/val layout of them, a manifest
(a .csv, .tsv or .jsonl file, or imagefolder's metadata file in the folder), or an archive holding any of them.

    source = open_data("photos/")                   # DataSource(kind="class folders", root=photos/)
    source = open_data("labels.csv")                # kind "manifest": paths relative to the file's folder
    source = open_data("flowers.zip")               # unpacked once (archives.py), then as its content
    photos = source.photos()                        # folders.LabelledPhotos (not for a train/val layout)

A folder is a manifest when it holds metadata.csv or metadata.jsonl (imagefolder's layout), or when train/
and val/ (or validation/, test/) each hold one: then the folder names the split. An archive's content is a
manifest when its top folder holds exactly one .csv, .tsv or .jsonl file.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path

from petalnet.data.archives import SUFFIXES as ARCHIVES, is_archive, unpacked
from petalnet.data.folders import is_split_layout, scan_class_folder
from petalnet.data.manifest import (METADATA, Manifest, is_manifest_file, manifest_photos, metadata_file,
                                    read_manifest)
from petalnet.errors import UserError

SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}  # imagefolder's split names
OUTSIDE_FLAG = "--allow-paths-outside"


@dataclass(frozen=True)
class DataSource:
    kind: str  # "class folders", "train/val" or "manifest"
    root: Path  # the folder photos' paths are relative to (a manifest's folder)
    given: str  # what the user named (a folder, a manifest, an archive)
    manifest: Manifest | None = None
    allow_outside: bool = False  # a manifest's paths may leave its folder
    exclude: frozenset = frozenset()  # absolute paths of photos left out (train --exclude FILE)
    exclude_file: str | None = None

    def photos(self, classes=None):
        """The labelled photos of class folders (only `classes` when given) or of a manifest."""
        if self.kind == "manifest":
            return self.without_excluded(manifest_photos(self.manifest, self.allow_outside, OUTSIDE_FLAG))
        if self.kind == "train/val":
            raise ValueError("a train/val layout has two folders of photos: read root/train and root/val")
        return self.without_excluded(scan_class_folder(self.root, classes))

    def without_excluded(self, photos):
        """LabelledPhotos without the excluded ones, which go to its `dropped` rows with the reason."""
        if not self.exclude:
            return photos
        out = [os.path.abspath(path) in self.exclude for path in photos.files]
        keep = [i for i, excluded in enumerate(out) if not excluded]
        gone = [photos.shown(path) for path, excluded in zip(photos.files, out) if excluded]
        return replace(photos, files=[photos.files[i] for i in keep], labels=[photos.labels[i] for i in keep],
                       parts=None if photos.parts is None else [photos.parts[i] for i in keep],
                       dropped=photos.dropped + [{"path": path, "error": f"excluded ({self.exclude_file})"}
                                                 for path in gone])

    def describe(self):
        return f"{self.manifest.file} (manifest)" if self.kind == "manifest" else f"{self.root} ({self.kind})"


def open_data(path, label_column=None, allow_outside=False, exclude=None):
    """The DataSource `path` names (without the photos the file `exclude` lists); one UserError line when it
    is none of them."""
    path = Path(path)
    if not path.exists():
        named = is_manifest_file(path) or path.name.lower().endswith(ARCHIVES)
        raise UserError(f"no such {'file' if named else 'folder'}: {path}")
    source = _open(unpacked(path) if is_archive(path) else path, label_column, archive=is_archive(path))
    if label_column is not None and source.kind != "manifest":
        raise UserError(f"--label-column is for manifests: {path} is {source.kind}")
    source = replace(source, given=str(path), allow_outside=allow_outside)
    return replace(source, exclude=excluded_paths(exclude, source.root), exclude_file=exclude) if exclude else source


def excluded_paths(file, root):
    """The photos a file lists, one a line (relative to `root`, the folder the data's paths are relative to,
    or absolute; empty lines and lines starting with # skipped), as absolute paths."""
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read --exclude {file}: {getattr(err, 'strerror', None) or err}") from None
    return frozenset(os.path.abspath(Path(root) / line.strip()) for line in lines
                     if line.strip() and not line.lstrip().startswith("#"))


def folder_source(path):
    """A folder of class folders or a train/val layout (no manifest looked for): make_split's and the
    Python API's plain path."""
    return DataSource(kind="train/val" if is_split_layout(path) else "class folders", root=Path(path),
                      given=str(path))


def _open(path, label_column, archive=False):
    if path.is_file():
        if not is_manifest_file(path):
            raise UserError(f"cannot read {path} as photos: give a folder of class folders, a .csv, .tsv or .jsonl "
                            "manifest, or a .zip, .tar or .tar.gz archive")
        return DataSource(kind="manifest", root=path.parent, given=str(path),
                          manifest=read_manifest(path, label_column))
    if not path.is_dir():
        raise UserError(f"not a folder: {path}")
    found = metadata_file(path) or (_only_manifest(path) if archive else None)
    if found is not None:
        return _open(found, label_column)
    split_metadata = _split_metadata(path)
    if split_metadata:
        return DataSource(kind="manifest", root=path, given=str(path),
                          manifest=_merged(path, split_metadata, label_column))
    return folder_source(path)


def _only_manifest(folder):
    """An archive's one manifest file at its top (it wins over folders: `data split` of a manifest writes
    train/ and val/ beside its labels.csv)."""
    files = [p for p in folder.iterdir() if p.is_file() and is_manifest_file(p) and not p.name.startswith(".")]
    return files[0] if len(files) == 1 else None


def _split_metadata(folder):
    """{split: metadata file} of imagefolder's split folders (train/metadata.csv, validation/metadata.jsonl...)."""
    found = {name: metadata_file(folder / name) for name in SPLIT_FOLDERS if (folder / name).is_dir()}
    found = {name: file for name, file in found.items() if file is not None}
    return found if "train" in found else {}


def _merged(folder, files, label_column):
    """One Manifest of imagefolder's split folders: each row's path from `folder`, its split the folder's."""
    rows, manifests = [], [read_manifest(file, label_column) for file in files.values()]
    for name, manifest in zip(files, manifests):
        rows += [replace(row, path=str(Path(name) / row.path), split=SPLIT_FOLDERS[name]) for row in manifest.rows]
    first = manifests[0]
    return Manifest(file=folder / METADATA[0], rows=tuple(rows), label_column=first.label_column,
                    multilabel=any(m.multilabel for m in manifests), has_split=True)
