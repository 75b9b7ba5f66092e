"""Which labelled photos a checkpoint is scored on: its run's own val photos, or a folder the user names.

    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data=None)    # the run's val split
    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data="new/")  # class folders or train/val
    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data="labels.csv")  # its test (or val) rows
"""

import sys
from pathlib import Path

from petalnet.config.run import RunFolder, saved_facts
from petalnet.data.check import scan_listing, scan_photos
from petalnet.data.folders import LabelledPhotos, find_classes, require_folder
from petalnet.data.sources import open_data
from petalnet.errors import UserError


def own_val_photos(ckpt, model_path, flag="--data"):
    """The val photos of the run that wrote this checkpoint: (name, paths, labels); else one line that
    says to pass `flag` (the command's option for a folder of photos)."""
    return own_photos(ckpt, model_path, "val", flag)


def own_photos(ckpt, model_path, part, flag):
    """The `part` ("train" or "val") photos of the run that wrote this checkpoint, as own_val_photos."""
    run = RunFolder.of_model(model_path)
    split = run.read_split()
    if split is not None:
        return part, split.paths(part), split.labels(part)
    facts = saved_facts(ckpt.config)
    if facts is not None and facts.layout == "train/val":
        return part, *folder_photos(Path(facts.data) / part, ckpt.spec.classes)
    raise UserError(f"cannot find the {part} photos of {run}: pass {flag} DIR")


def folder_photos(root, classes):
    """Readable photos of a folder of class folders, labelled with the checkpoint's class indices."""
    root = require_folder(root)
    found = find_classes(root)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise UserError(f"class names differ: {root} has {{{', '.join(found)}}}, the model knows "
                        f"{{{', '.join(classes)}}}")
    scan = scan_photos(root, classes)
    if scan.unreadable:
        print(f"left out {len(scan.unreadable)} unreadable file(s): "
              + ", ".join(str(p.relative_to(root)) for p in scan.unreadable), file=sys.stderr)
    paths, labels, _, _ = scan.readable()
    return paths, labels


def evaluation_photos(ckpt, model_path, data, label_column=None, allow_outside=False):
    """(name, paths, labels) of the photos a checkpoint is scored on: the run's val photos (data None), a
    train/val layout's val/, class folders, or a manifest's test rows (else its val rows, else all)."""
    if data is None:
        return own_val_photos(ckpt, model_path)
    source = open_data(data, label_column, allow_outside)
    if source.kind == "train/val":
        return "val", *folder_photos(source.root / "val", ckpt.spec.classes)
    if source.kind == "class folders":
        return source.root.name, *folder_photos(source.root, ckpt.spec.classes)
    return manifest_photos(source, ckpt.spec.classes)


def manifest_photos(source, classes):
    """A manifest's rows to score, labelled with the checkpoint's class indices: its test rows when its split
    column has some, else its val rows, else every row; unreadable photos and unusable rows said and left out."""
    photos = source.photos()
    if photos.multilabel:
        raise UserError(f"{source.describe()} labels photos with several classes: multi-label evaluation is not "
                        "built yet")
    part = next((name for name in ("test", "val") if name in (photos.parts or ())), None)
    keep = [i for i in range(len(photos.files)) if part is None or photos.parts[i] == part]
    unknown = sorted({photos.classes[photos.labels[i]] for i in keep} - set(classes))
    if unknown:
        raise UserError(f"class names differ: {source.manifest.file} has {', '.join(unknown)}, which the model does "
                        f"not know ({', '.join(classes)})")
    listing = LabelledPhotos(root=photos.root, classes=list(classes), files=[photos.files[i] for i in keep],
                             labels=[classes.index(photos.classes[photos.labels[i]]) for i in keep])
    scan = scan_listing(listing)
    left_out = [f"{listing.shown(p)} ({why})" for p, why in scan.unreadable.items()]
    left_out += [f"{row['path']} ({row['error']})" for row in photos.dropped]
    if left_out:
        print(f"left out {len(left_out)} photo(s): " + ", ".join(left_out), file=sys.stderr)
    paths, labels, _, _ = scan.readable()
    if not paths:
        raise UserError(f"no readable photos to score in {source.manifest.file}")
    return part or source.manifest.file.stem, paths, labels
