"""`petalnet predict`: classify files and folders of photos with a trained model.

    petalnet predict runs/seed photo.jpg more_photos/ --topk 3
    petalnet predict runs/seed photos/ --json > predictions.jsonl
    petalnet predict runs/seed/best.pt a.jpg b.png --plot predictions.png
    petalnet predict runs/seed photos/ --explain heatmaps/     # Grad-CAM: where the model looked
    petalnet predict model.onnx photo.jpg                      # an exported model, without PyTorch
    petalnet predict runs/seed photos/ --csv predictions.csv   # one row per photo (inference/table.py)
    petalnet predict runs/seed inbox/ --sort-into sorted/ --min-prob 0.6   # links (inference/sorting.py)

A multi-label model gives each photo the set of classes at or above their thresholds (classifier.py): the
line says "labels: roses 0.912, tulips 0.701" (or "labels: none (most probable: ...)"), --json carries
"labels" and every class's "probs", --csv one column per class, --sort-into files a photo under every one of
its labels (none: DIR/_none/); --topk does not apply, and --min-prob is refused (the thresholds decide).

Folders are searched recursively for image files (data/folders.py's list_photos: hidden files and folders
skipped, each real folder once); every path named on the command line gets a line. The Python API takes
the same settings: run_predict(PredictSettings(model="runs/seed", paths=("photos/",), json=True)).
Exit code 0 when every image was classified, 1 when some could not be read.
"""

import contextlib
import json
import sys
from pathlib import Path

from petalnet.data.folders import list_photos
from petalnet.errors import StorageError, UserError
from petalnet.inference.classifier import load_classifier, most_probable
from petalnet.utils.fields import check_fields
from petalnet.inference.sorting import PhotoSorter
from petalnet.inference.table import PredictionCsv

PLOT_LIMIT = 36  # photos in a --plot grid


def format_record(record):
    if "error" in record:
        return f"{record['path']}  error: {record['error']}"
    if "labels" in record:
        return f"{record['path']}  labels: {label_text(record)}"
    return record["path"] + "  " + "  ".join(f"{t['class']} {t['prob']:.3f}" for t in record["top"])


def label_text(record):
    """A multi-label record's set with its probabilities, or none with the most probable class."""
    if not record["labels"]:
        return "none (most probable: {} {:.3f})".format(*most_probable(record))
    return ", ".join(f"{name} {record['probs'][name]:.3f}" for name in record["labels"])


def caption(record):
    """A --plot tile's title: the top class, or a multi-label model's set."""
    if "labels" in record:
        return "labels: " + (", ".join(record["labels"]) or "none")
    best = record["top"][0]
    return f"class: {best['class']}  prob: {best['prob']:.2f}"


def run_predict(settings):
    """Print one line per input of a PredictSettings, and write what plot, explain, csv and sort_into ask
    for; returns the exit code (0 all classified, 1 some failed). Bad settings raise UserError before
    anything is written."""
    check_fields(settings)
    s = settings
    if s.plot:
        from petalnet.utils.plots import picture_format  # matplotlib only when a picture is asked for

        picture_format(s.plot)
    table = PredictionCsv(s.csv, s.overwrite) if s.csv else None
    sorter = _photo_sorter(s.sort_into, s.min_prob, s.paths)
    classifier = load_classifier(s.model, s.device)
    _check_task(s, classifier)
    inputs = gather_inputs(s.paths)
    explain = _explain_folder(s.explain, classifier) if s.explain else None
    failed, tiles, outputs = 0, [], [out for out in (table, sorter) if out]
    with contextlib.ExitStack() as stack:  # the CSV is renamed into place when the loop ends without an error
        if table:
            table.open(stack, min(s.topk, len(classifier.classes)),
                       label_classes=classifier.classes if classifier.multilabel else None)
        if sorter:
            sorter.start(classifier.multilabel)
        predictions = classifier.iter_predict(inputs, s.topk, s.batch_size, s.workers, thumbnails=bool(s.plot),
                                              explain=bool(explain))
        for k, (record, thumbnail, heat) in enumerate(predictions):
            failed += "error" in record
            print(json.dumps(record) if s.json else format_record(record), flush=True)
            for out in outputs:
                out.add(record)
            if s.plot and thumbnail is not None and len(tiles) < PLOT_LIMIT:
                tiles.append((thumbnail, caption(record)))
            if explain and heat is not None:
                _save_heat_map(explain, k, record, thumbnail, heat)
    if s.plot:
        _save_plot(s.plot, tiles)
    if explain:
        print(f"saved heat maps in {explain}", file=sys.stderr)
    for out in outputs:
        print(out.summary(), file=sys.stderr)
    return 1 if failed else 0


def gather_inputs(paths):
    """data/folders.py's list_photos, with one line on stderr for the folder links it did not follow again;
    UserError when there is nothing to classify."""
    skipped = []
    inputs = list_photos(paths, skipped)
    if skipped:
        print(f"skipped {len(skipped)} folder link(s) to a folder already listed (no photo twice): "
              + ", ".join(map(str, skipped[:3])) + (", ..." if len(skipped) > 3 else ""), file=sys.stderr)
    if not inputs:
        raise UserError(f"no image files in {', '.join(map(str, paths))}")
    return inputs


def _check_task(settings, classifier):
    """UserError for --min-prob with a multi-label model (its per-class thresholds decide its labels)."""
    if classifier.multilabel and settings.min_prob is not None:
        raise UserError(f"--min-prob is for single-label models: {settings.model} is multi-label (its per-class "
                        "thresholds decide; with --sort-into, photos without a label go to DIR/_none)")


def _photo_sorter(folder, min_prob, paths):
    """A PhotoSorter for --sort-into (checked, nothing written yet), or None."""
    if folder is None:
        if min_prob is not None:
            raise UserError("--min-prob needs --sort-into DIR (photos below it go to DIR/_unsure)")
        return None
    return PhotoSorter(folder, 0.0 if min_prob is None else min_prob, [p for p in paths if Path(p).is_dir()])


def _explain_folder(folder, classifier):
    classifier.check_explain()  # an .onnx file, a transformer: one line now, before any photo is read
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create {folder}: {err.strerror or err}") from None
    return folder


def _save_heat_map(folder, k, record, photo, heat):
    from petalnet.inference.explain import overlay

    best = most_probable(record)[0]
    name = Path(record["path"]).stem if record["path"] else "image"
    overlay(photo, heat).save(folder / f"{k:04d}_{name}_{best}.png")


def _save_plot(plot, tiles):
    from petalnet.utils.plots import image_grid

    if tiles:
        image_grid(tiles, plot, title=None if len(tiles) == 1 else f"{len(tiles)} predictions")
        print(f"saved {plot}" + (f" (first {PLOT_LIMIT} photos)" if len(tiles) == PLOT_LIMIT else ""),
              file=sys.stderr)
    else:
        print("nothing to plot: no image could be classified", file=sys.stderr)
