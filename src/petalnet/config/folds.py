"""The record of a k-fold cross-validation run (`petalnet train --folds K --out PARENT`, training/folds.py): the
parent folder's own files are written and read here alone (its folds are run folders, config/run.py). Torch-free;
each file is written atomically (utils/fileio.py).

    oof = read_out_of_fold("runs/cv")   # OutOfFold: classes, paths, given, folds, probs, multilabel, data, k
    record = FoldsFolder("runs/cv").read_record()   # FoldsRecord: k, seed, config, each fold's score, mean, sd

    PARENT/folds.json          the FoldsRecord: k, seed, data (resolved), the settings (TrainConfig's fields, the
                               recipe among them), classes, multilabel, each fold's run folder (fold-1 .. fold-K),
                               val photos, best score and best epoch, accuracy_mean, accuracy_sd (sample sd),
                               finished, and the photos with each one's fold (data/folds.py's Folds)
    PARENT/oof.csv             when finished: path,given,fold,<class 0>,...,<class C-1>: one row per photo, in the
                               data's listing order; path absolute; given the class (multi-label: the classes joined
                               by ';' in class order, empty for none); fold 1..K; each class's probability from its
                               fold's best.pt (softmax; multi-label: sigmoids), written with repr(float)
    PARENT/fold-1 .. fold-K    a run folder each

A fold's score is its best val accuracy, or for a multi-label run its best val mAP (`metric` says which):
accuracy_mean and accuracy_sd hold their mean and sample standard deviation (ddof=1) once every fold finished.
"""

import csv
import io
import json
import shutil
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from petalnet.config.run import RunFolder
from petalnet.config.train import TrainConfig
from petalnet.data.folds import Folds
from petalnet.errors import StorageError, UserError, describe_os_error, one_line
from petalnet.utils.fields import from_dict, to_dict
from petalnet.utils.fileio import write_json, write_text

RECORD, OUT_OF_FOLD = "folds.json", "oof.csv"
FIRST_COLUMNS = ["path", "given", "fold"]


@dataclass(frozen=True)
class FoldResult:
    """One fold of the record."""
    run: str  # its run folder under the parent: fold-1 .. fold-K
    val: int  # its val photos (the photos of the fold)
    best_score: float | None = None  # best val accuracy (a multi-label run: val mAP); None until it finished
    best_epoch: int | None = None


@dataclass(frozen=True)
class FoldsRecord:
    """folds.json: what the folds are, what they learn with, how each scored."""
    data: str  # what --data named, resolved
    config: TrainConfig  # every fold's settings
    photos: Folds  # the photos and each one's fold (data/folds.py)
    folds: tuple[FoldResult, ...]
    label_column: str | None = None  # how the data was read (a manifest's label column, ...), for --resume
    allow_paths_outside: bool = False
    exclude: str | None = None  # the --exclude file, resolved
    finished: bool = False  # every fold trained and scored, oof.csv written

    @property
    def k(self):
        return self.photos.k

    @property
    def classes(self):
        return self.photos.photos.classes

    @property
    def multilabel(self):
        """The folds train a multi-label model (sigmoids; labels are sets): the data's labels column, or --task."""
        task = self.config.task
        return task == "multilabel" or (task == "auto" and self.photos.photos.multilabel)

    @property
    def metric(self):
        """The val metric each fold's score is: val_acc, or val_map for a multi-label run."""
        return "val_map" if self.multilabel else "val_acc"

    @property
    def scores(self):
        """The folds' best scores, or None until every fold has one."""
        scores = [fold.best_score for fold in self.folds]
        return None if None in scores else scores

    @property
    def accuracy_mean(self):
        return statistics.mean(self.scores) if self.scores else None

    @property
    def accuracy_sd(self):
        """The sample standard deviation (ddof=1) of the folds' scores."""
        return statistics.stdev(self.scores) if self.scores else None

    def with_fold(self, number, best_score, best_epoch):
        """This record with fold `number`'s (1..K) score."""
        folds = list(self.folds)
        folds[number - 1] = replace(folds[number - 1], best_score=best_score, best_epoch=best_epoch)
        return replace(self, folds=tuple(folds))

    def to_dict(self):
        return {"k": self.k, "seed": self.photos.photos.seed, "data": self.data, "recipe": self.config.recipe,
                "config": to_dict(self.config), "classes": list(self.classes), "multilabel": self.multilabel,
                "label_column": self.label_column, "allow_paths_outside": self.allow_paths_outside,
                "exclude": self.exclude, "metric": self.metric,
                "folds": [to_dict(fold) for fold in self.folds], "accuracy_mean": self.accuracy_mean,
                "accuracy_sd": self.accuracy_sd, "finished": self.finished, "photos": self.photos.to_dict()}

    @classmethod
    def from_dict(cls, saved):
        """From folds.json's dict (KeyError/TypeError/ValueError/AttributeError when it is not one)."""
        return cls(data=str(saved["data"]), config=from_dict(TrainConfig, saved["config"]),
                   photos=Folds.from_dict(saved["photos"]), folds=tuple(from_dict(FoldResult, fold)
                                                                       for fold in saved["folds"]),
                   label_column=saved.get("label_column"), allow_paths_outside=bool(saved.get("allow_paths_outside")),
                   exclude=saved.get("exclude"), finished=bool(saved.get("finished")))


@dataclass(frozen=True)
class OutOfFold:
    """oof.csv: every photo's probabilities from the fold that did not train on it."""
    classes: tuple[str, ...]
    paths: list  # absolute
    given: list  # each photo's class index (multi-label: a tuple of class indices)
    folds: list  # each photo's fold, 1..k
    probs: list  # one list of len(classes) floats per photo: softmax (multi-label: a sigmoid a class)
    multilabel: bool
    data: str  # what the parent's --data named, resolved
    k: int


class FoldsFolder:
    """The parent folder of a cross-validation run: its own files here, its folds' through RunFolder."""

    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    @property
    def record_file(self):
        return self.path / RECORD

    @property
    def out_of_fold_file(self):
        return self.path / OUT_OF_FOLD

    def fold(self, number):
        """Fold `number`'s (1..K) run folder."""
        return RunFolder(self.path / f"fold-{number}")

    def holds_folds(self):
        return self.record_file.is_file()

    def check(self, resume, overwrite):
        """Refuse to clobber an existing run or parent silently, or to resume what is not a parent. Writes nothing."""
        if resume and not overwrite:
            if not self.holds_folds():
                raise UserError(f"nothing to resume: {self.record_file} does not exist")
            return
        RunFolder(self.path).check(resume, overwrite)

    def prepare(self, overwrite):
        """Create the folder; with `overwrite` remove what a run or a parent left in it (fold-* folders too)."""
        RunFolder(self.path).prepare(overwrite)
        if overwrite:
            try:
                for fold in self.path.glob("fold-*"):
                    if fold.is_dir() and fold.name[5:].isdigit():
                        shutil.rmtree(fold)
                for name in (RECORD, OUT_OF_FOLD):
                    (self.path / name).unlink(missing_ok=True)
            except OSError as err:
                raise StorageError(f"cannot clear {self.path}: {describe_os_error(err)}") from None
        return self

    def write_record(self, record):
        write_json(self.record_file, record.to_dict())

    def read_record(self):
        """folds.json as a FoldsRecord; UserError when the folder is not a cross-validation run's."""
        if not self.holds_folds():
            raise UserError(f"{self.path} is not a cross-validation run: it has no {RECORD} (make one with "
                            f"'petalnet train --folds K --out {self.path}')")
        try:
            return FoldsRecord.from_dict(json.loads(self.record_file.read_text(encoding="utf-8")))
        except (OSError, UnicodeError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise UserError(f"{self.record_file} is unreadable ({one_line(err, 120)})") from None

    def write_out_of_fold(self, oof):
        """oof.csv (module docstring)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(FIRST_COLUMNS + list(oof.classes))
        for path, given, fold, probs in zip(oof.paths, oof.given, oof.folds, oof.probs):
            named = ";".join(oof.classes[label] for label in sorted(given)) if oof.multilabel else oof.classes[given]
            writer.writerow([path, named, fold, *(repr(float(p)) for p in probs)])
        write_text(self.out_of_fold_file, buffer.getvalue())


def read_out_of_fold(parent):
    """The OutOfFold of a finished cross-validation run; one UserError line when `parent` is not one."""
    folder = FoldsFolder(parent)
    record = folder.read_record()
    if not record.finished or not folder.out_of_fold_file.is_file():
        raise UserError(f"{parent} has no {OUT_OF_FOLD}: finish it with 'petalnet train --out {parent} --resume'")
    index = {name: label for label, name in enumerate(record.classes)}
    paths, given, folds, probs = [], [], [], []
    try:
        with open(folder.out_of_fold_file, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            if next(rows) != FIRST_COLUMNS + list(record.classes):
                raise ValueError(f"its header is not {','.join(FIRST_COLUMNS)} and the classes of {RECORD}")
            for path, named, fold, *row in rows:
                labels = tuple(index[name] for name in named.split(";") if name) if record.multilabel else index[named]
                if len(row) != len(record.classes):
                    raise ValueError(f"a row of {len(row)} probabilities for {len(record.classes)} classes")
                paths.append(path)
                given.append(labels)
                folds.append(int(fold))
                probs.append([float(p) for p in row])
    except (OSError, UnicodeError, ValueError, KeyError, StopIteration) as err:
        raise UserError(f"{folder.out_of_fold_file} is unreadable ({one_line(err, 120)})") from None
    return OutOfFold(classes=record.classes, paths=paths, given=given, folds=folds, probs=probs,
                     multilabel=record.multilabel, data=record.data, k=record.k)
