"""`petalnet evaluate`: accuracy (with a 95% interval), per-class and summary metrics, top-k accuracy,
calibration, the confusion matrix, the most confident mistakes and every photo's prediction.

    petalnet evaluate runs/seed                        # the run's own val photos
    petalnet evaluate runs/seed --data photos/         # class folders, or a train/val layout (its val/)
    petalnet evaluate runs/seed/best.pt --data new/ --json --out eval-new
    petalnet evaluate runs/tags --data tags.csv        # a multi-label model: a manifest with a labels column
    petalnet evaluate runs/seed --top-losses 16        # also the 16 hardest photos and the confused pairs

A multi-label model (its spec's task) is scored on label sets at its stored thresholds instead: mAP, micro
and macro F1, subset accuracy, Hamming loss, per class AP / precision / recall / F1, the photos with the most
wrong labels (metrics.py's label_set_report); a precision-recall picture per class replaces the confusion
matrix and the reliability diagram, and predictions.csv holds each photo's given and predicted sets.

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
from petalnet.inference.metrics import (classification_report, format_label_report, format_report,
                                        label_set_report, precision_recall_curve, probability_report)
from petalnet.inference.photos import evaluation_photos
from petalnet.inference.probabilities import label_set, thresholds_of
from petalnet.inference.scoring import evaluate_batches
from petalnet.inference.table import cell
from petalnet.inference.top_losses import confused_pairs, format_top_losses, top_loss_caption, top_losses
from petalnet.inference.torch_backend import TorchBackend
from petalnet.models.checkpoint import load_checkpoint
from petalnet.pipeline.dataset import eval_dataset
from petalnet.pipeline.preprocess import NormalizedBatches
from petalnet.utils.fields import check_fields
from petalnet.utils.fileio import atomic_path, write_json

MISTAKES_SHOWN = 16
PREDICTION_COLUMNS = ("path", "true_class", "predicted_class", "probability", "correct")
LABEL_COLUMNS = ("path", "given", "predicted", "wrong")  # then probability_<class> for each class


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
    result = evaluate_batches(backend.model, batches, device, settings=backend.settings, multilabel=spec.multilabel)
    out = Path(settings.out) if settings.out else new_folder(RunFolder.of_model(model).path / f"eval-{name}")
    if spec.multilabel:
        report = label_set_report(result.probs.numpy(), result.targets.numpy(), thresholds_of(spec), spec.classes,
                                  paths)
    else:
        report = {**classification_report(result.targets, result.predictions, spec.classes),
                  **probability_report(result.targets, result.probs)}
    if settings.top_losses:
        add_top_losses(report, result, paths, spec, settings.top_losses)
    if spec.multilabel:
        write_label_outputs(out, report, result, paths, spec, model, name)
        text, pictures = format_label_report(report), "precision_recall.png, mistakes.png"
    else:
        write_outputs(out, report, result, paths, spec.classes, model, name)
        text, pictures = format_report(report), "confusion.png, reliability.png, mistakes.png"
    if settings.top_losses:
        save_photo_grid([(row["path"], top_loss_caption(row)) for row in report["top_losses"]],
                        out / "top_losses.png", "highest losses ({shown} photos, highest first)")
        text, pictures = "\n".join([text, *format_top_losses(report)]), pictures + ", top_losses.png"
    if settings.json:
        print(json.dumps(report))
    else:
        print(text)
        print(f"\nwrote {out}/report.json, predictions.csv, {pictures}")
    return 0


def add_top_losses(report, result, paths, spec, count):
    """--top-losses N: the hardest photos (and, one class a photo, the confused pairs) into the report."""
    report["top_losses"] = top_losses(result, paths, spec.classes, count,
                                      thresholds_of(spec) if spec.multilabel else None)
    if not spec.multilabel:
        report["confused_pairs"] = confused_pairs(report["confusion"], spec.classes)


def make_folder(out):
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create {out}: {describe_os_error(err)}") from None


def write_outputs(out, report, result, paths, classes, model, name):
    from petalnet.utils.plots import plot_confusion, plot_reliability

    make_folder(out)
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
    predicted = result.predictions
    confidence = result.probs.max(dim=1).values
    wrong = torch.nonzero(predicted != result.targets).flatten().tolist()
    wrong.sort(key=lambda i: -confidence[i].item())
    captioned = [(paths[i], f"true: {classes[result.targets[i]]}\npred: {classes[predicted[i]]} "
                            f"({confidence[i].item():.2f})") for i in wrong[:MISTAKES_SHOWN]]
    save_photo_grid(captioned, path, "most confident mistakes ({shown} of " + f"{len(wrong)})")


def save_photo_grid(captioned, path, title):
    """[(photo path, caption)] as a grid of thumbnails at `path` (unreadable photos left out; nothing written when
    none is left); `title` with {shown}: how many are shown."""
    from petalnet.utils.plots import image_grid

    tiles = []
    for photo, caption in captioned:
        try:
            image = open_rgb(photo)
        except UnreadableImage:
            continue
        image.thumbnail((256, 256))
        tiles.append((image, caption))
    if tiles:
        image_grid(tiles, path, title=title.format(shown=len(tiles)), columns=4)


def write_label_outputs(out, report, result, paths, spec, model, name):
    """A multi-label model's report.json, predictions.csv, precision_recall.png and mistakes.png."""
    from petalnet.utils.plots import plot_precision_recall

    make_folder(out)
    write_json(out / "report.json", {**report, "checkpoint": str(model), "data": name, "loss": result.loss})
    write_label_predictions(out / "predictions.csv", result, paths, spec)
    curves = []
    for c, name_c in enumerate(spec.classes):
        curve = precision_recall_curve(result.probs[:, c].numpy(), result.targets[:, c].numpy() > 0.5)
        m = report["per_class"][name_c]
        curves.append((name_c, *(curve or (None, None)), m["ap"], (m["recall"], m["precision"])))
    summary = "n/a" if report["map"] is None else f"{report['map']:.3f}"
    plot_precision_recall(curves, out / "precision_recall.png",
                          title=f"{Path(model)} on {name}: mAP {summary} (n={report['n']})")
    plot_label_mistakes(report["most_wrong"], out / "mistakes.png")


def write_label_predictions(path, result, paths, spec):
    """A multi-label predictions.csv: each photo's given and predicted sets (`;` between classes, predicted most
    probable first), how many class decisions are wrong, and every class's probability."""
    classes, thresholds = list(spec.classes), thresholds_of(spec)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*LABEL_COLUMNS, *(cell(f"probability_{c}") for c in classes)])
        for i, photo in enumerate(paths):
            given = [name for c, name in enumerate(classes) if result.targets[i, c] > 0.5]
            predicted = label_set(result.probs[i].numpy(), classes, thresholds)["labels"]
            writer.writerow([cell(photo), cell(";".join(given)), cell(";".join(predicted)),
                             len(set(given) ^ set(predicted)), *(cell(p) for p in result.probs[i].tolist())])


def plot_label_mistakes(most_wrong, path):
    """The photos with the most wrong labels, each titled with its given and predicted sets."""
    captioned = [(photo["path"], f"given: {', '.join(photo['given']) or 'none'}\npred: "
                                 f"{', '.join(photo['predicted']) or 'none'} ({photo['wrong']} wrong)")
                 for photo in most_wrong[:MISTAKES_SHOWN]]
    save_photo_grid(captioned, path, "most wrong labels ({shown} photos)")
