"""Which labelled photos a checkpoint is scored on: its run's own val photos, or a folder the user names.

    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data=None)    # the run's val split
    name, paths, labels = evaluation_photos(ckpt, "runs/seed", data="new/")  # class folders or train/val
"""

import sys
from pathlib import Path

from petalnet.config.run import RunFolder, saved_facts
from petalnet.data.check import scan_photos
from petalnet.data.folders import find_classes, is_split_layout, require_folder
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


def evaluation_photos(ckpt, model_path, data):
    if data is None:
        return own_val_photos(ckpt, model_path)
    root = require_folder(data)
    if is_split_layout(root):
        root = root / "val"
    return root.name, *folder_photos(root, ckpt.spec.classes)
