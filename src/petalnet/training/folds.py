"""k-fold cross-validation, `petalnet train --folds K --out PARENT`: K runs of one recipe, each fold's photos as
its val, in PARENT/fold-1 .. PARENT/fold-K (run folders like any other); the folds' scores, their mean and sample
sd in PARENT/folds.json, every photo's out-of-fold probabilities in PARENT/oof.csv (config/folds.py).

    petalnet train --data photos/ --out runs/cv --folds 5 --recipe fast
    petalnet train --out runs/cv --resume               # after a stop: done folds kept, a stopped one resumed
    petalnet train --out runs/cv --resume --epochs 20   # every fold trained longer

    from petalnet.training.train import train
    record = train("photos/", "runs/cv", folds=5, recipe="fast")   # config/folds.py's FoldsRecord
    record.accuracy_mean, record.accuracy_sd, record.folds[0].best_score

The photos are read once, before the first fold (data/folds.py: stratified, near-duplicate groups and byte copies
in one fold, a manifest's test rows in no fold), and the folds are written to folds.json at once, so a resumed
parent trains the folds it was given. Then each fold in turn: done when its last.pt holds every epoch, resumed
when it holds fewer (or only its config.json), else started with its fold's Split. A finished fold's val photos
are scored with its best.pt through the inference layer's Classifier (the path `predict` takes); when every fold
is done, oof.csv is written and folds.json marked finished. Under torchrun --folds is refused for now (one line):
it runs as one process. Not a command module: train.py passes the function that trains one run folder.
"""

import os
from dataclasses import replace
from pathlib import Path

from petalnet.config.folds import FoldResult, FoldsFolder, FoldsRecord, OutOfFold
from petalnet.config.train import checked_config, resolve_config, resumed_config
from petalnet.data.download import default_data_dir
from petalnet.data.folds import check_folds, fold_photos
from petalnet.data.sources import open_data
from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.inference.classifier import load_classifier
from petalnet.models.checkpoint import saved_epoch
from petalnet.training.multilabel import resolve_task


def folds_asked(asked):
    """Whether train()'s TrainRequest asks for cross-validation: --folds K, or --resume of a parent (PARENT/
    folds.json). One line for what it cannot do: K out of bounds, torchrun, --overwrite of a parent without K."""
    parent = FoldsFolder(asked.out)
    wanted = bool(asked.folds) or (asked.resume and parent.holds_folds())
    if asked.folds:
        check_folds(asked.folds)
    if wanted and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--folds runs as one process: torchrun is not supported for cross-validation yet (run "
                        "'petalnet train --folds K' without torchrun)")
    if not wanted and asked.overwrite and parent.holds_folds():
        raise UserError(f"{asked.out} holds a cross-validation run: pass --folds K to replace it with another, or "
                        "choose another --out")
    return wanted


def run_folds(asked, overrides, config, train_one, progress=True, log=print):
    """Train and score the folds of `asked` (a TrainRequest with folds, or resume of a parent) and return the
    finished FoldsRecord. `overrides`/`config`: the settings, as train() takes them; `train_one(out, **arguments)`
    trains one run folder (train() with this request's device, options, progress and log)."""
    parent = FoldsFolder(asked.out)
    parent.check(asked.resume, asked.overwrite)
    if asked.resume:
        record, root = resumed_record(parent, asked, overrides, log)
        if record.finished and parent.out_of_fold_file.is_file():
            log(f"{parent} already finished its {record.k} folds: pass --epochs N to train them longer")
            return record
    else:
        record, root = new_record(parent, asked, overrides, config, progress)
    probs = {}
    for number in range(1, record.k + 1):
        folder = parent.fold(number)
        train_fold(folder, number, record, asked, train_one, log)
        record = record.with_fold(number, *best_score(folder, record.metric))
        _write(parent.write_record, record)
        probs[number] = score_fold(folder, record, number, root, asked.device)
    oof = out_of_fold(record, probs, root)
    _write(parent.write_out_of_fold, oof)
    record = replace(record, finished=True)
    _write(parent.write_record, record)
    name = "val mAP" if record.metric == "val_map" else "val accuracy"
    log(f"{record.k} folds: {name} {record.accuracy_mean:.4f} +- {record.accuracy_sd:.4f} (mean +- sd); "
        f"out-of-fold probabilities in {parent.out_of_fold_file}")
    return record


def new_record(parent, asked, overrides, config, progress):
    """The photos read and put in folds, the settings resolved, the parent prepared and its folds.json written;
    (FoldsRecord, the folder the photos' paths are relative to)."""
    config = checked_config(config) if config is not None else resolve_config(asked.recipe, overrides)
    data = asked.data or default_data_dir()
    if data is None:
        raise UserError("no dataset: pass --data DIR, set $PETALNET_DATA, or run 'petalnet data get'")
    source = open_data(data, asked.label_column, asked.allow_paths_outside, asked.exclude)
    folds = fold_photos(source, asked.folds, config.seed, progress=progress)
    config = resolve_task(config, folds.photos.multilabel, folds.photos.classes)
    results = tuple(FoldResult(f"fold-{number}", folds.fold_of.count(number)) for number in range(1, folds.k + 1))
    record = FoldsRecord(data=str(Path(data).resolve()), config=config, photos=folds, folds=results,
                         label_column=asked.label_column, allow_paths_outside=asked.allow_paths_outside,
                         exclude=str(Path(asked.exclude).resolve()) if asked.exclude else None)
    _write(lambda: parent.prepare(asked.overwrite).write_record(record))
    return record, Path(source.root).resolve()


def resumed_record(parent, asked, overrides, log):
    """The parent's FoldsRecord, with --epochs N when given (other settings keep their values, with a note), and
    the folder its photos' paths are relative to (--data's when given: the photos moved)."""
    record = parent.read_record()
    if asked.folds and asked.folds != record.k:
        raise UserError(f"{parent} holds {record.k} folds, not {asked.folds}: drop --folds to resume it")
    root = Path(record.photos.photos.source)
    if asked.data:
        root = open_data(asked.data, asked.label_column or record.label_column,
                         asked.allow_paths_outside or record.allow_paths_outside).root
    config = resumed_config(record.config, overrides, log)
    if config != record.config:
        record = replace(record, config=config, finished=False)
        _write(parent.write_record, record)
    return record, Path(root).resolve()


def train_fold(folder, number, record, asked, train_one, log):
    """Fold `number`'s run: nothing when its last.pt holds every epoch, resumed when it holds fewer (or the run
    stopped before its first epoch ended), else started with the fold's Split."""
    epochs, where = record.config.epochs, f"fold {number}/{record.k} in {folder}"
    done = saved_epoch(folder.last) if folder.last.is_file() else None
    photos = {"label_column": asked.label_column or record.label_column, "exclude": asked.exclude or record.exclude,
              "allow_paths_outside": asked.allow_paths_outside or record.allow_paths_outside}
    if done is not None and done >= epochs:
        log(f"{where}: done ({done} epochs)")
    elif folder.last.is_file() or (folder / "config.json").is_file():
        log(f"{where}: resuming")
        train_one(out=folder.path, data=asked.data, resume=True, overrides={"epochs": epochs}, **photos)
    else:
        log(f"{where}: starting")
        train_one(out=folder.path, data=asked.data or record.data, config=record.config,
                  split=record.photos.split(number), **photos)


def best_score(folder, metric):
    """(best score, its epoch) of a fold's metrics.csv: the first epoch of a tie, as train picks best.pt."""
    rows, _ = folder.read_metrics()
    best = max((row for row in rows if row.get(metric) is not None), key=lambda row: row[metric])
    return best[metric], int(best["epoch"])


def score_fold(folder, record, number, root, device):
    """Every class's probability for each of fold `number`'s photos, from the fold's best.pt (inference layer)."""
    classifier = load_classifier(folder.path, device)
    classes, paths = list(record.classes), [str(root / rel) for rel, _ in record.photos.split(number).val]
    probs = []
    for scored in classifier.predict(paths, topk=len(classes)):
        if "error" in scored:
            raise UserError(f"cannot score {scored['path']} for {folder}: {scored['error']}")
        by_class = scored["probs"] if "probs" in scored else {top["class"]: top["prob"] for top in scored["top"]}
        probs.append([by_class[name] for name in classes])
    return probs


def out_of_fold(record, probs, root):
    """The OutOfFold of a record whose folds are all scored (`probs`: fold number -> rows), in listing order."""
    rows = {number: iter(fold_probs) for number, fold_probs in probs.items()}
    photos, multilabel = record.photos.photos, record.multilabel
    given = [tuple(label) if photos.multilabel else (label,) if multilabel else label for _, label in photos.val]
    return OutOfFold(classes=record.classes, paths=[str(root / rel) for rel, _ in photos.val], given=given,
                     folds=list(record.photos.fold_of), probs=[next(rows[fold]) for fold in record.photos.fold_of],
                     multilabel=multilabel, data=record.data, k=record.k)


def _write(write, *args):
    """Call a writer of the parent's files; an OSError becomes one StorageError line."""
    try:
        return write(*args)
    except OSError as err:
        raise StorageError(f"cannot write the cross-validation record: {describe_os_error(err)}") from None
