"""`petalnet compare RUN...`: one row per run folder, read from its config.json and metrics.csv.

    run   recipe  model    epochs  best val_acc  best epoch  wall time  train photos/s
    seed  seed    alexnet  2       0.6           2           41.2 s     97.3

Runs written by older versions lack some columns and keys: those cells are '-' (None in --json).
A cross-validation parent (`train --folds K`, its folds.json) is one row, "PARENT (K folds)", over its folds'
run folders: best val_acc is the mean of their best val accuracies, with their sample sd in an `sd` column
(--json: `folds` and `val_acc_sd` besides the usual keys), wall time their sum; an unfinished parent says
"(N/K folds)" and averages the folds that have trained an epoch. --plot draws a parent as one line, the mean
over its folds of each epoch's val accuracy (against a fold's mean wall time).
Wall time is the last row's elapsed_s, or the sum of epoch_seconds for runs written before elapsed_s
existed; photos/s is the median of train_images_per_s over the epochs. Nothing is written unless --plot
asks for a picture (val accuracy against epochs and against wall time), which never replaces a file
without --overwrite. Bad input raises UserError before anything is written.
"""

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from petalnet.config.folds import FoldsFolder
from petalnet.config.run import RunFolder
from petalnet.errors import UserError
from petalnet.utils.fields import PlainValues, check_fields, setting

COLUMNS = [("run", "run"), ("recipe", "recipe"), ("model", "model"), ("epochs", "epochs"),
           ("best_val_acc", "best val_acc"), ("best_epoch", "best epoch"), ("wall_s", "wall time"),
           ("train_images_per_s", "train photos/s")]
SD_COLUMN = ("val_acc_sd", "sd")  # shown when a row is a cross-validation parent


@dataclass(frozen=True)
class CompareSettings(PlainValues):
    """`petalnet compare`'s settings (its flags come from these fields)."""
    runs: tuple[str, ...] = setting((), "run folders (each with config.json and metrics.csv)", positional="+",
                                    metavar="RUN")
    json: bool = setting(False, "print the rows as JSON", switch=True)
    plot: str | None = setting(None, "save val accuracy against epochs and wall time here (default: no picture)",
                               metavar="OUT.png")
    overwrite: bool = setting(False, "replace an existing --plot file", switch=True)


def run_compare(settings):
    """Print the table (or JSON) for the run folders of CompareSettings; save the curves to its plot when
    given. Returns the exit code (0)."""
    check_fields(settings)
    if not settings.runs:
        raise UserError("compare needs at least one run folder")
    plot = _check_plot_path(settings.plot, settings.overwrite) if settings.plot else None
    loaded = [read_parent(run) if FoldsFolder(run).holds_folds() else read_run(run) for run in settings.runs]
    names = run_names(settings.runs)
    rows = [summarize_parent(name, item) if isinstance(item, Parent) else summarize(name, *item)
            for name, item in zip(names, loaded)]
    print(json.dumps(rows) if settings.json else format_table(rows))
    if plot:
        from petalnet.utils.plots import plot_run_comparison

        plot_run_comparison([mean_curve(name, item) if isinstance(item, Parent) else curve(name, item[1])
                             for name, item in zip(names, loaded)], plot)
        print(f"saved {plot}", file=sys.stderr)
    return 0


def _check_plot_path(plot, overwrite):
    """The --plot path, checked before anything is read or written."""
    from petalnet.utils.plots import picture_format  # matplotlib only when a picture is asked for

    picture_format(plot)
    plot = Path(plot)
    if plot.is_dir():
        raise UserError(f"--plot {plot} is a folder: name a file such as {plot / 'compare.png'}")
    if plot.exists() and not overwrite:
        raise UserError(f"{plot} already exists: pass --overwrite to replace it, or choose another --plot")
    if not plot.parent.is_dir():
        raise UserError(f"--plot {plot}: folder {plot.parent} does not exist")
    return plot


def run_names(runs):
    """Each run's folder name; the path as given where two runs share a folder name."""
    names = [Path(run).name or str(run) for run in runs]
    return [str(run) if names.count(name) > 1 else name for run, name in zip(runs, names)]


def read_run(run):
    """((recipe, model) or Nones, metrics rows as dicts of floats or None) of a run folder, or UserError
    naming what is missing."""
    run = Path(run)
    if not run.exists():
        raise UserError(f"{run} does not exist")
    if not run.is_dir():
        raise UserError(f"{run} is not a run folder: it is a file")
    missing = [name for name in ("config.json", "metrics.csv") if not (run / name).is_file()]
    if missing:
        raise UserError(f"{run} is not a run folder: it has no {' and no '.join(missing)}")
    folder = RunFolder(run)
    try:
        names = folder.read_summary()
        history, columns = folder.read_metrics()
    except (OSError, UnicodeError, ValueError) as err:
        raise UserError(f"{run} is not a readable run folder: {' '.join(str(err).split())}") from None
    if "val_acc" not in columns or "epoch" not in columns:
        raise UserError(f"{run} is not a run folder: its metrics.csv has no epoch and val_acc columns")
    return names, history


@dataclass(frozen=True)
class Parent:
    """A cross-validation parent: K, and its folds that have a metrics.csv, each read as read_run reads a run."""
    k: int
    folds: list  # [((recipe, model), history), ...]


def read_parent(run):
    """The Parent of a folder with a folds.json; UserError when it is unreadable or no fold has trained yet."""
    parent = FoldsFolder(run)
    k = parent.read_record().k
    folds = [read_run(parent.fold(n).path) for n in range(1, k + 1) if (parent.fold(n) / "metrics.csv").is_file()]
    if not folds:
        raise UserError(f"{run} is a cross-validation run none of whose folds has finished an epoch yet")
    return Parent(k, folds)


def summarize_parent(name, parent):
    """A parent's row: its folds' rows combined (module docstring), with `folds` and `val_acc_sd`."""
    rows = [summarize(name, names, history) for names, history in parent.folds]
    best = [row["best_val_acc"] for row in rows if row["best_val_acc"] is not None]
    epochs, walls = {row["epochs"] for row in rows}, [row["wall_s"] for row in rows]
    done = f"{parent.k}" if len(rows) == parent.k else f"{len(rows)}/{parent.k}"
    return {**rows[0], "run": f"{name} ({done} folds)", "epochs": epochs.pop() if len(epochs) == 1 else None,
            "best_val_acc": statistics.mean(best) if best else None, "best_epoch": None,
            "wall_s": None if None in walls else sum(walls),
            "train_images_per_s": _median([row.get("train_images_per_s") for _, history in parent.folds
                                           for row in history]),
            "folds": parent.k, "val_acc_sd": statistics.stdev(best) if len(best) > 1 else None}


def mean_curve(name, parent):
    """A parent's line for the picture: each epoch that every fold scored, its mean val accuracy (and mean wall
    seconds, when every fold has them)."""
    curves = [curve(name, history) for _, history in parent.folds]
    epochs = sorted(set.intersection(*(set(epochs) for _, epochs, _, _ in curves)))
    at = [{epoch: k for k, epoch in enumerate(fold_epochs)} for _, fold_epochs, _, _ in curves]
    accuracies = [statistics.mean(c[2][a[e]] for c, a in zip(curves, at)) for e in epochs]
    timed = all(c[3] is not None for c in curves)
    seconds = [statistics.mean(c[3][a[e]] for c, a in zip(curves, at)) for e in epochs] if timed else None
    return (f"{name} ({parent.k} folds, mean)", epochs, accuracies, seconds)


def summarize(name, names, history):
    """One table row: None wherever the run does not record the value; `names`: (recipe, model)."""
    scored = [row for row in history if row.get("val_acc") is not None and row.get("epoch") is not None]
    best = max(scored, key=lambda row: row["val_acc"], default=None)  # the first epoch of a tie, as train
    last = history[-1] if history else {}
    epochs = last.get("epoch")
    recipe, model = names
    return {"run": name, "recipe": recipe, "model": model,
            "epochs": int(epochs) if epochs is not None else None,
            "best_val_acc": best["val_acc"] if best else None,
            "best_epoch": int(best["epoch"]) if best else None,
            "wall_s": wall_seconds(history),
            "train_images_per_s": _median([row.get("train_images_per_s") for row in history])}


def wall_seconds(history):
    """The last row's elapsed_s; for runs without it, the sum of epoch_seconds (None when neither)."""
    if history and history[-1].get("elapsed_s") is not None:
        return history[-1]["elapsed_s"]
    axis = elapsed_axis(history)
    return axis[-1] if axis else None


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def curve(name, history):
    """(name, epochs, val accuracies, wall seconds or None) of a run's scored epochs, for the picture."""
    scored = [row for row in history if row.get("val_acc") is not None and row.get("epoch") is not None]
    return (name, [row["epoch"] for row in scored], [row["val_acc"] for row in scored], elapsed_axis(scored))


def elapsed_axis(history):
    """Wall seconds at the end of each epoch: elapsed_s, else the running sum of epoch_seconds (None when
    neither is recorded)."""
    if all(row.get("elapsed_s") is not None for row in history):
        return [row["elapsed_s"] for row in history]
    if all(row.get("epoch_seconds") is not None for row in history):
        total, out = 0.0, []
        for row in history:
            total += row["epoch_seconds"]
            out.append(total)
        return out
    return None


def format_table(rows):
    """Aligned columns, '-' for what a run does not record; an sd column when a row is a parent."""
    columns = COLUMNS + ([SD_COLUMN] if any("folds" in row for row in rows) else [])
    cells = [[title for _, title in columns]]
    cells += [[_cell(key, row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[k]) for line in cells) for k in range(len(columns))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip()
                     for line in cells)


def _cell(key, value):
    if value is None:
        return "-"
    if key in ("best_val_acc", "val_acc_sd"):
        return f"{value:.4f}"
    if key == "wall_s":
        return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"
    if key == "train_images_per_s":
        return f"{value:.1f}"
    return str(value)
