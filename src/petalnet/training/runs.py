"""The run folder: everything `train` writes, each file written atomically.

    RUN/best.pt               weights with the best val accuracy (+ meta: classes, model, transform)
    RUN/last.pt               everything --resume needs (optimizer, scheduler, epoch, RNG, history)
    RUN/class_indices.json    {"0": "daisy", ...}, the tutorial's format
    RUN/config.json           the resolved recipe, data, device and environment
    RUN/metrics.csv           one row per epoch
    RUN/curves.png            loss and accuracy per epoch
    RUN/split.json            which photos went to train and val (when petalnet split the folder)
    RUN/logs/rank-K.log       under torchrun: each process's log (ranklogs.py)
"""

import csv
import io
import json
from pathlib import Path

from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.utils.fileio import write_json, write_text

METRIC_COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "lr", "image_size", "eval_image_size",
                  "epoch_seconds", "train_images_per_s", "elapsed_s"]
RUN_FILES = ["best.pt", "last.pt", "class_indices.json", "config.json", "metrics.csv", "curves.png",
             "split.json"]


def check_run_folder(run, resume, overwrite):
    """Refuse to clobber an existing run silently. Writes nothing."""
    run = Path(run)
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other: pick one")
    if run.exists() and not run.is_dir():
        raise UserError(f"--out {run} is a file, not a folder")
    if resume:
        if not (run / "last.pt").is_file() and not (run / "config.json").is_file():
            raise UserError(f"nothing to resume: {run / 'last.pt'} does not exist")
        return
    if run.is_dir() and any(not _is_temp(p) for p in run.iterdir()) and not overwrite:
        raise UserError(f"{run} already holds a run: pass --resume to continue it or --overwrite to replace it")


def _is_temp(path):
    """A temp file an interrupted atomic write left behind (fileio.atomic_path names them .NAME.*.tmp)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def unfinished_config(run):
    """The saved config of a run stopped before its first epoch ended (config.json, no last.pt)."""
    path = Path(run) / "config.json"
    try:
        saved = json.loads(path.read_text())
        return {key: saved[key] for key in saved["config_keys"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"nothing to resume: {Path(run) / 'last.pt'} does not exist and {path} is unreadable") from None


def start_run_folder(run, overwrite):
    """Create the run folder; clear the old run's files (--overwrite) and temp files a kill left behind."""
    run = Path(run)
    try:
        run.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in RUN_FILES:
                (run / name).unlink(missing_ok=True)
        for name in RUN_FILES:
            for stale in run.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
    except OSError as err:
        raise StorageError(f"cannot prepare run folder {run}: {describe_os_error(err)}") from None
    return run


def write_class_indices(run, classes):
    write_json(Path(run) / "class_indices.json", {str(i): name for i, name in enumerate(classes)})


def write_metrics(run, history):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(row.get(k, "")) for k in METRIC_COLUMNS})  # older runs lack some
    write_text(Path(run) / "metrics.csv", buffer.getvalue())


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value
