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
        self.path, self.rows, self.k, self.count = path, None, 0, 0

    def open(self, stack, k):
        """Start a temp file with the header, for `k` classes per row; `stack` (an ExitStack) renames it
        over the file when it closes without an error, and removes it otherwise."""
        try:
            tmp = stack.enter_context(atomic_path(self.path))
            file = stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
        except OSError as err:
            raise StorageError(f"cannot write {self.path}: {err.strerror or err}") from None
        self.rows, self.k = csv.writer(file), k
        self.rows.writerow(header(k))

    def add(self, record):
        self.rows.writerow(row(record, self.k))
        self.count += 1

    def summary(self):
        return f"saved {self.path} ({self.count} row(s))"
