"""`petalnet predict --csv FILE`: one row per photo, safe to open in a spreadsheet.

    path,class,probability,class_2,probability_2,class_3,probability_3,error
    inbox/a.jpg,roses,0.9120453596115112,tulips,0.05012,daisy,0.0201,
    inbox/b.jpg,,,,,,,cannot identify image file (not an image)

Probabilities are written in full (the shortest text that reads back as the same float, as in --json).
Written with the csv module (a name with commas, quotes or newlines reads back whole) as UTF-8, into a
temp file renamed over FILE at the end (utils/fileio.py): a reader never sees half a file, and a run that
fails leaves an older FILE as it was. Cells are made safe for spreadsheets (OWASP's CSV injection advice):
one that starts with = + - @ tab or CR gets a leading single quote, so it is shown, never run as a formula.
A file name that is not valid UTF-8 is written with backslash escapes (caf\\xe9.jpg).

A multi-label model's file has its label set (`;` between labels, most probable first) and every class's
probability, in the model's class order:

    path,labels,probability_daisy,probability_roses,probability_tulips,error
    inbox/a.jpg,roses;tulips,0.0213,0.9120453596115112,0.7012,
"""

import csv
import os
from pathlib import Path

from petalnet.errors import StorageError, UserError
from petalnet.utils.fileio import atomic_path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def utf8_text(text):
    """`text` if it encodes as UTF-8; else the bytes of an undecodable file name (os.fsdecode's
    surrogates) as backslash escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate that is no file name's byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def cell(value):
    """One CSV cell: a float in full, text as valid UTF-8 with a formula start quoted away."""
    if isinstance(value, float):
        return repr(value)
    text = utf8_text(str(value))
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def header(k):
    """path, class, probability, class_2, probability_2, ... class_k, probability_k, error."""
    columns = ["path", "class", "probability"]
    for n in range(2, k + 1):
        columns += [f"class_{n}", f"probability_{n}"]
    return columns + ["error"]


def label_header(classes):
    """path, labels, probability_<class> for each class, error: a multi-label model's columns."""
    return ["path", "labels", *(cell(f"probability_{name}") for name in classes), "error"]


def label_row(record, classes):
    """A multi-label predict record as a row of `label_header(classes)`'s columns."""
    probs = record.get("probs", {})
    values = [record["path"] if record["path"] is not None else "", ";".join(record.get("labels", []))]
    values += [probs[name] if name in probs else "" for name in classes]
    return [cell(v) for v in values + [record.get("error", "")]]


def row(record, k):
    """A predict record as a row of `header(k)`'s columns (an error record: empty classes, its error)."""
    top = record.get("top", [])[:k]
    values = [record["path"] if record["path"] is not None else ""]
    for n in range(k):
        values += [top[n]["class"], top[n]["prob"]] if n < len(top) else ["", ""]
    return [cell(v) for v in values + [record.get("error", "")]]


class PredictionCsv:
    """A --csv file: checked when made (nothing written), then opened, rows added, committed at the end."""

    def __init__(self, path, overwrite=False):
        path = Path(path)
        if path.is_dir():
            raise UserError(f"--csv {path} is a folder: name a file")
        if path.exists() and not overwrite:
            raise UserError(f"{path} already exists: pass --overwrite to replace it, or choose another --csv")
        self.path, self.rows, self.k, self.count, self.label_classes = path, None, 0, 0, None

    def open(self, stack, k, label_classes=None):
        """Start a temp file with the header, for `k` classes per row (a multi-label model: `label_classes`,
        its classes, for its label set and a probability per class); `stack` (an ExitStack) renames it over
        the file when it closes without an error, and removes it otherwise."""
        try:
            tmp = stack.enter_context(atomic_path(self.path))
            file = stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
        except OSError as err:
            raise StorageError(f"cannot write {self.path}: {err.strerror or err}") from None
        self.rows, self.k, self.label_classes = csv.writer(file), k, label_classes
        self.rows.writerow(header(k) if label_classes is None else label_header(label_classes))

    def add(self, record):
        if self.label_classes is None:
            self.rows.writerow(row(record, self.k))
        else:
            self.rows.writerow(label_row(record, self.label_classes))
        self.count += 1

    def summary(self):
        return f"saved {self.path} ({self.count} row(s))"
