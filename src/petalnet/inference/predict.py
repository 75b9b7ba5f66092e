"""`petalnet predict`: classify files and folders of photos with a trained model.

    petalnet predict runs/seed photo.jpg more_photos/ --topk 3
    petalnet predict runs/seed photos/ --json > predictions.jsonl
    petalnet predict runs/seed/best.pt a.jpg b.png --plot predictions.png
    petalnet predict runs/seed photos/ --explain heatmaps/     # Grad-CAM: where the model looked
    petalnet predict model.onnx photo.jpg                      # an exported model, without PyTorch
    petalnet predict runs/seed photos/ --csv predictions.csv   # one row per photo (inference/table.py)
    petalnet predict runs/seed inbox/ --sort-into sorted/ --min-prob 0.6   # links (inference/sorting.py)

Folders are searched recursively for image files; every path named on the command line gets a line.
Exit code 0 when every image was classified, 1 when some could not be read.
"""

import contextlib
import json
import os
import sys
from pathlib import Path

from petalnet.errors import StorageError, UserError
from petalnet.utils.fields import check_number
from petalnet.data.images import is_image_name
from petalnet.inference.sorting import PhotoSorter
from petalnet.inference.table import PredictionCsv

PLOT_LIMIT = 36  # photos in a --plot grid


def gather_inputs(paths):
    """Files as given, folders expanded to their image files (recursive, sorted, hidden ones skipped)."""
    inputs = []
    for path in map(Path, paths):
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                inputs += [Path(dirpath) / f for f in sorted(filenames) if is_image_name(f)]
        else:
            inputs.append(path)
    return inputs


def format_record(record):
    if "error" in record:
        return f"{record['path']}  error: {record['error']}"
    return record["path"] + "  " + "  ".join(f"{t['class']} {t['prob']:.3f}" for t in record["top"])


def run_predict(model, paths, topk=3, as_json=False, plot=None, device="auto", batch_size=64, workers=0,
                explain=None, csv=None, overwrite=False, sort_into=None, min_prob=None):
    """Print one line per input, and write what plot, explain, csv and sort_into ask for; returns the
    exit code (0 all classified, 1 some failed). Bad arguments raise UserError before anything is written."""
    check_number("topk", topk, at_least=1)
    check_number("batch_size", batch_size, at_least=1)
    if plot:
        from petalnet.utils.plots import picture_format  # matplotlib only when a picture is asked for

        picture_format(plot)
    table = PredictionCsv(csv, overwrite) if csv else None
    sorter = _photo_sorter(sort_into, min_prob, paths)
    classifier = open_model(model, device)
    inputs = gather_inputs(paths)
    if not inputs:
        raise UserError(f"no image files in {', '.join(map(str, paths))}")
    if explain:
        explain = _explain_folder(explain, classifier)
    failed, tiles, outputs = 0, [], [out for out in (table, sorter) if out]
    with contextlib.ExitStack() as stack:  # the CSV is renamed into place when the loop ends without an error
        if table:
            table.open(stack, min(topk, len(classifier.classes)))
        if sorter:
            sorter.start()
        predictions = classifier.iter_predict(inputs, topk, batch_size, workers, thumbnails=bool(plot),
                                              explain=bool(explain))
        for k, (record, thumbnail, heat) in enumerate(predictions):
            failed += "error" in record
            print(json.dumps(record) if as_json else format_record(record), flush=True)
            for out in outputs:
                out.add(record)
            if plot and thumbnail is not None and len(tiles) < PLOT_LIMIT:
                best = record["top"][0]
                tiles.append((thumbnail, f"class: {best['class']}  prob: {best['prob']:.2f}"))
            if explain and heat is not None:
                _save_heat_map(explain, k, record, thumbnail, heat)
    if plot:
        _save_plot(plot, tiles)
    if explain:
        print(f"saved heat maps in {explain}", file=sys.stderr)
    for out in outputs:
        print(out.summary(), file=sys.stderr)
    return 1 if failed else 0


def _photo_sorter(folder, min_prob, paths):
    """A PhotoSorter for --sort-into (checked, nothing written yet), or None."""
    if folder is None:
        if min_prob is not None:
            raise UserError("--min-prob needs --sort-into DIR (photos below it go to DIR/_unsure)")
        return None
    return PhotoSorter(folder, 0.0 if min_prob is None else min_prob, [p for p in paths if Path(p).is_dir()])


def open_model(model, device):
    """A Classifier for a checkpoint or run folder; an OnnxClassifier (no torch) for an .onnx file."""
    if str(model).endswith(".onnx"):
        from petalnet.inference.onnx import load_onnx_classifier

        return load_onnx_classifier(model)
    from petalnet.inference.classifier import load_classifier

    return load_classifier(model, device)


def _explain_folder(folder, classifier):
    if not hasattr(classifier, "explain"):
        raise UserError("--explain needs a PyTorch checkpoint or run folder, not an .onnx file")
    from petalnet.inference.explain import last_conv

    last_conv(classifier.model)  # a transformer: one line now, before any photo is read
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create {folder}: {err.strerror or err}") from None
    return folder


def _save_heat_map(folder, k, record, photo, heat):
    from petalnet.inference.explain import overlay

    best = record["top"][0]["class"]
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
