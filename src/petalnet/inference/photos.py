"""Which labelled photos a checkpoint is scored on: its run's own val photos, or a folder the user names.

    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data=None)    # the run's val split
    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data="new/")  # class folders or train/val
    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data="labels.csv")  # its test (or val) rows

Labels are class indices, or for a multi-label model each photo's set of classes as one int bit mask
(multilabel.py's label_mask), as scoring.py's multi-label pass takes them. A multi-label model is scored on
label sets only (its run's split, or a manifest with a labels column), a single-label model on one class a
photo: the other kind of photos is one UserError line.
"""

import sys
from pathlib import Path

from petalnet.config.run import RunFolder, saved_facts
from petalnet.data.check import scan_listing, scan_photos
from petalnet.data.folders import LabelledPhotos, find_classes, require_folder
from petalnet.data.sources import open_data
from petalnet.errors import UserError
from petalnet.inference.multilabel import label_mask


def own_val_photos(ckpt, model_path, flag="--data"):
    """The val photos of the run that wrote this checkpoint: (name, paths, labels); else one line that
    says to pass `flag` (the command's option for a folder of photos)."""
    return own_photos(ckpt, model_path, "val", flag)


def own_photos(ckpt, model_path, part, flag):
    """The `part` ("train" or "val") photos of the run that wrote this checkpoint, as own_val_photos."""
    run = RunFolder.of_model(model_path)
    split = run.read_split()
    if split is not None:
        return part, split.paths(part), task_labels(split.labels(part), ckpt.spec)
    facts = saved_facts(ckpt.config)
    if facts is not None and facts.layout == "train/val":
        paths, labels = folder_photos(Path(facts.data) / part, ckpt.spec.classes)
        return part, paths, task_labels(labels, ckpt.spec)
    raise UserError(f"cannot find the {part} photos of {run}: pass {flag} DIR")


def task_labels(labels, spec):
    """Labels as a model of this spec is scored on them: class indices, or a multi-label model's label sets
    (tuples of class indices; a lone index is a set of one) as int bit masks."""
    if not spec.multilabel:
        return list(labels)
    return [label_mask(label if isinstance(label, (tuple, list)) else (label,)) for label in labels]


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
    if source.kind == "manifest":
        return manifest_photos(source, ckpt.spec)
    check_task(False, source.describe(), ckpt.spec)
    if source.kind == "train/val":
        return "val", *folder_photos(source.root / "val", ckpt.spec.classes)
    return source.root.name, *folder_photos(source.root, ckpt.spec.classes)


def check_task(label_sets, described, spec):
    """UserError when the photos' kind of labels (label_sets: sets of classes, else one class a photo) is not
    the kind the model gives; `described` names the photos."""
    if label_sets and not spec.multilabel:
        raise UserError(f"{described} labels photos with sets of classes (a labels column) and the model is "
                        "single-label: score a multi-label model on it, or give one label a photo")
    if spec.multilabel and not label_sets:
        raise UserError(f"the model is multi-label and {described} gives each photo one class: score it on a "
                        "manifest with a labels column (its classes separated by ;)")


def manifest_photos(source, spec):
    """A manifest's rows to score, labelled with the checkpoint's class indices (a multi-label model: bit masks
    of label sets): its test rows when its split column has some, else its val rows, else every row; unreadable
    photos and unusable rows said and left out."""
    photos, classes = source.photos(), list(spec.classes)
    check_task(photos.multilabel, source.describe(), spec)
    part = next((name for name in ("test", "val") if name in (photos.parts or ())), None)
    keep = [i for i in range(len(photos.files)) if part is None or photos.parts[i] == part]
    sets = photos.label_sets()
    unknown = sorted({photos.classes[c] for i in keep for c in sets[i]} - set(classes))
    if unknown:
        raise UserError(f"class names differ: {source.manifest.file} has {', '.join(unknown)}, which the model does "
                        f"not know ({', '.join(classes)})")
    ours = [tuple(classes.index(photos.classes[c]) for c in sets[i]) for i in keep]  # the model's class indices
    listing = LabelledPhotos(root=photos.root, classes=classes, files=[photos.files[i] for i in keep],
                             labels=ours if spec.multilabel else [labels[0] for labels in ours],
                             multilabel=spec.multilabel)
    scan = scan_listing(listing)
    left_out = [f"{listing.shown(p)} ({why})" for p, why in scan.unreadable.items()]
    left_out += [f"{row['path']} ({row['error']})" for row in photos.dropped]
    if left_out:
        print(f"left out {len(left_out)} photo(s): " + ", ".join(left_out), file=sys.stderr)
    paths, labels, _, _ = scan.readable()
    if not paths:
        raise UserError(f"no readable photos to score in {source.manifest.file}")
    return part or source.manifest.file.stem, paths, task_labels(labels, spec)
