"""`petalnet evaluate`: accuracy (with a 95% interval), per-class and summary metrics, top-k accuracy,
calibration, the confusion matrix, the most confident mistakes and every photo's prediction.

    petalnet evaluate runs/seed                        # the run's own val photos
    petalnet evaluate runs/seed --data photos/         # class folders, or a train/val layout (its val/)
    petalnet evaluate runs/seed/best.pt --data new/ --json --out eval-new

Validation inside `train` and this command are the same code: scoring.evaluate_batches. The model runs as
predict's does (torch_backend.py: inference_settings, no training settings). The Python API takes the
same settings: run_evaluate(EvaluateSettings(model="runs/seed", data="new/")) (inference/settings.py).
"""

import csv
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from petalnet.config.run import RunFolder
from petalnet.data.images import UnreadableImage, open_rgb
from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.inference.metrics import classification_report, format_report, probability_report
from petalnet.inference.photos import evaluation_photos
from petalnet.inference.scoring import evaluate_batches
from petalnet.inference.table import cell
from petalnet.inference.torch_backend import TorchBackend
from petalnet.models.checkpoint import load_checkpoint
from petalnet.pipeline.dataset import eval_dataset
from petalnet.pipeline.preprocess import NormalizedBatches
from petalnet.utils.fields import check_fields
from petalnet.utils.fileio import atomic_path, write_json

MISTAKES_SHOWN = 16
PREDICTION_COLUMNS = ("path", "true_class", "predicted_class", "probability", "correct")


def new_folder(base):
    """base, or base-2, base-3, ... whichever does not exist yet."""
    folder, n = Path(base), 2
    while folder.exists():
        folder, n = Path(f"{base}-{n}"), n + 1
    return folder


def run_evaluate(settings):
    """Score the EvaluateSettings' model on its photos, print the report and write it with its pictures."""
    check_fields(settings)
    model = settings.model
    ckpt = load_checkpoint(model)
    backend = TorchBackend.from_checkpoint(ckpt, model, settings.device)
    spec, device = ckpt.spec, backend.device
    name, paths, labels = evaluation_photos(ckpt, model, settings.data, settings.label_column,
                                            settings.allow_paths_outside)
    if not paths:
        raise UserError("no photos to evaluate")
    photos = eval_dataset(paths, labels, spec.image_size, spec.eval_resize)  # as train's val decodes them
    loader = DataLoader(photos, batch_size=settings.batch_size, num_workers=settings.workers,
                        pin_memory=device.type == "cuda")
    batches = NormalizedBatches(loader, spec.mean, spec.std, device, backend.settings.channels_last)
    result = evaluate_batches(backend.model, batches, device, settings=backend.settings)
    report = {**classification_report(result.targets, result.predictions, spec.classes),
              **probability_report(result.targets, result.probs)}
    out = Path(settings.out) if settings.out else new_folder(RunFolder.of_model(model).path / f"eval-{name}")
    write_outputs(out, report, result, paths, spec.classes, model, name)
    if settings.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        print(f"\nwrote {out}/report.json, predictions.csv, confusion.png, reliability.png, mistakes.png")
    return 0


def write_outputs(out, report, result, paths, classes, model, name):
    from petalnet.utils.plots import plot_confusion, plot_reliability

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create {out}: {describe_os_error(err)}") from None
    write_json(out / "report.json", {**report, "checkpoint": str(model), "data": name, "loss": result.loss})
    plot_confusion(report["confusion"], classes, out / "confusion.png",
                   title=f"{Path(model)} on {name}: accuracy {report['accuracy']:.3f} (n={report['n']})")
    write_predictions(out / "predictions.csv", result, paths, classes)
    plot_reliability(report["calibration"], report["ece"], out / "reliability.png",
                     title=f"{Path(model)} on {name}: reliability")
    plot_mistakes(result, paths, classes, out / "mistakes.png")


def write_predictions(path, result, paths, classes):
    """predictions.csv: one row per photo, in the evaluated order; written whole or not at all."""
    predicted = result.predictions
    confidence = result.probs.gather(1, predicted[:, None]).flatten()
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        for i, photo in enumerate(paths):
            true, guess = int(result.targets[i]), int(predicted[i])
            writer.writerow([cell(photo), cell(classes[true]), cell(classes[guess]), cell(confidence[i].item()),
                             int(true == guess)])


def plot_mistakes(result, paths, classes, path):
    """The most confident wrong predictions, each titled true / predicted / prob."""
    from petalnet.utils.plots import image_grid

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
