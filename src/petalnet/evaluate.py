"""`petalnet evaluate`: accuracy, per-class metrics, confusion matrix and the most confident mistakes.

    petalnet evaluate runs/seed                        # the run's own val photos
    petalnet evaluate runs/seed --data photos/         # class folders, or a train/val layout (its val/)
    petalnet evaluate runs/seed/best.pt --data new/ --json --out eval-new

Validation inside `train` and this command are the same code: engine.evaluate.
"""

import functools
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from petalnet.check import scan_photos
from petalnet.checkpoint import load_checkpoint, model_from_checkpoint
from petalnet.dataset import PhotoDataset
from petalnet.decode import NormalizedBatches, eval_tensor
from petalnet.device import pick_device
from petalnet.engine import evaluate
from petalnet.errors import UserError
from petalnet.fileio import write_json
from petalnet.folders import find_classes, is_split_layout, require_folder
from petalnet.images import UnreadableImage, open_rgb
from petalnet.metrics import classification_report, format_report
from petalnet.split import split_paths
from petalnet.tuning import device_settings

MISTAKES_SHOWN = 16


def run_folder_of(model_path):
    model_path = Path(model_path)
    return model_path if model_path.is_dir() else model_path.parent


def own_val_photos(ckpt, model_path):
    """The val photos of the run that wrote this checkpoint: (name, paths, labels)."""
    run = run_folder_of(model_path)
    config = ckpt.get("config", {})
    split_file = run / "split.json"
    if split_file.is_file():
        split = json.loads(split_file.read_text())
        return "val", split_paths(split, "val", split["source"]), [label for _, label in split["val"]]
    if config.get("layout") == "train/val":
        return "val", *folder_photos(Path(config["data"]) / "val", ckpt["meta"]["classes"])
    raise UserError(f"cannot find the val photos of {run}: pass --data DIR")


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
    paths, labels, _ = scan.readable()
    return paths, labels


def evaluation_photos(ckpt, model_path, data):
    if data is None:
        return own_val_photos(ckpt, model_path)
    root = require_folder(data)
    if is_split_layout(root):
        root = root / "val"
    return root.name, *folder_photos(root, ckpt["meta"]["classes"])


def new_folder(base):
    """base, or base-2, base-3, ... whichever does not exist yet."""
    folder, n = Path(base), 2
    while folder.exists():
        folder, n = Path(f"{base}-{n}"), n + 1
    return folder


def run_evaluate(model, data=None, out=None, as_json=False, batch_size=64, device="auto", workers=0):
    ckpt = load_checkpoint(model)
    net = model_from_checkpoint(ckpt, model)
    meta = ckpt["meta"]
    name, paths, labels = evaluation_photos(ckpt, model, data)
    if not paths:
        raise UserError("no photos to evaluate")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    device = pick_device(device)
    settings = device_settings(device, workers=workers)
    photos = PhotoDataset(paths, labels, functools.partial(eval_tensor, meta=meta))  # = decode.load_eval_photo
    loader = DataLoader(photos, batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    net = net.to(device)
    if settings["channels_last"]:
        net = net.to(memory_format=torch.channels_last)
    result = evaluate(net, NormalizedBatches(loader, meta, device, settings["channels_last"]), device,
                      settings=settings)
    report = classification_report(result.targets, result.predictions, meta["classes"])
    out = Path(out) if out else new_folder(run_folder_of(model) / f"eval-{name}")
    write_outputs(out, report, result, paths, meta["classes"], model, name)
    if as_json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        print(f"\nwrote {out}/report.json, confusion.png, mistakes.png")
    return 0


def write_outputs(out, report, result, paths, classes, model, name):
    from petalnet.plots import plot_confusion

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {out}: {err.strerror or err}") from None
    write_json(out / "report.json", {**report, "checkpoint": str(model), "data": name,
                                     "loss": round(result.loss, 4)})
    plot_confusion(report["confusion"], classes, out / "confusion.png",
                   title=f"{Path(model)} on {name}: accuracy {report['accuracy']:.3f} (n={report['n']})")
    plot_mistakes(result, paths, classes, out / "mistakes.png")


def plot_mistakes(result, paths, classes, path):
    """The most confident wrong predictions, each titled true / predicted / prob."""
    from petalnet.plots import image_grid

    predicted = result.predictions
    confidence = result.probs.max(dim=1).values
    wrong = torch.nonzero(predicted != result.targets).flatten().tolist()
    wrong.sort(key=lambda i: -confidence[i].item())
    tiles = []
    for i in wrong[:MISTAKES_SHOWN]:
        try:
            image = open_rgb(paths[i])
        except UnreadableImage:
            continue
        image.thumbnail((256, 256))
        tiles.append((image, f"true: {classes[result.targets[i]]}\npred: {classes[predicted[i]]} "
                             f"({confidence[i].item():.2f})"))
    if tiles:
        image_grid(tiles, path, title=f"most confident mistakes ({len(tiles)} of {len(wrong)})", columns=4)
