"""`petalnet predict --sort-into DIR [--min-prob P]`: each classified photo filed under DIR/<class>/.

    sorter = PhotoSorter("sorted", min_prob=0.6, read_folders=["inbox"])   # checks only, writes nothing
    sorter.start()                                                          # creates DIR
    sorter.add({"path": "inbox/a.jpg", "top": [{"class": "roses", "prob": 0.91}, ...]})
    sorter.summary()   # "sorted 1 photo(s) into sorted: roses 1; unsure 0 (top probability below 0.6: in _unsure/)"

A photo gets a hard link at DIR/<class>/<name> (a copy where a link is not possible, e.g. across file
systems), or DIR/_unsure/<name> when its top probability is below min_prob. The user's files are never
moved, changed or overwritten: a name already taken gets a suffix (name-1.jpg, name-2.jpg, ...), except
by a link to the same file (a second run over the same photos adds nothing).

A multi-label record ({"labels": [...], "probs": {...}}) files its photo under every one of its labels,
DIR/<label>/ for each, or DIR/_none/ when it has none; min_prob does not apply to it (predict refuses it).
"""

import itertools
import os
import shutil
from collections import Counter
from pathlib import Path

from petalnet.errors import StorageError, UserError
from petalnet.inference.settings import PredictSettings
from petalnet.utils.fields import check_setting

UNSURE = "_unsure"
NO_LABEL = "_none"  # a multi-label photo without a label


def is_unsure(record, min_prob):
    """True when the record's top probability is below min_prob (never when min_prob is None): the rule of
    --sort-into's _unsure/ folder and of the HTTP API's "unsure"."""
    return min_prob is not None and record["top"][0]["prob"] < min_prob


def folders_of(record, min_prob):
    """The folder names a record's photo is filed under: its top class (or _unsure), or every label of a
    multi-label record (or _none)."""
    if "labels" in record:
        return [folder_name(label) for label in record["labels"]] or [NO_LABEL]
    return [UNSURE if is_unsure(record, min_prob) else folder_name(record["top"][0]["class"])]


def folder_name(label):
    """A class name as one folder name: no separators, never '.', '..' or empty."""
    name = label.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return name if name not in ("", ".", "..") else f"_{name}"


def check_sort_folder(folder, read_folders):
    """UserError (nothing written) when `folder` is a file, or lies in a folder being read (the sorted
    photos would be read again next time)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--sort-into {folder} is a file: name a folder (new or existing)")
    target = folder.resolve()
    for source in read_folders:
        if target == Path(source).resolve() or Path(source).resolve() in target.parents:
            raise UserError(f"--sort-into {folder} is inside {source}, which is being read (its photos "
                            f"would be read again): choose a folder outside it")
    return folder


def place(src, folder):
    """Hard-link (else copy) src into folder under its name, or name-1, name-2, ... when that is taken.
    Returns 'linked', 'copied' or 'kept' (the name already held this very file)."""
    src = Path(src)
    folder.mkdir(exist_ok=True)
    stem, suffix = (src.stem, src.suffix) if src.stem else (src.name, "")
    for n in itertools.count():
        dst = folder / (src.name if n == 0 else f"{stem}-{n}{suffix}")
        try:
            os.link(src, dst)
            return "linked"
        except FileExistsError:
            if _same_file(src, dst):
                return "kept"
        except OSError:  # another file system, no link support, too many links: copy instead
            if _copy_new(src, dst):
                return "copied"


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _copy_new(src, dst):
    """Copy src to dst unless dst exists (False then); a failed copy leaves nothing at dst."""
    with open(src, "rb") as source:
        try:
            target = open(dst, "xb")
        except FileExistsError:
            return False
        try:
            with target:
                shutil.copyfileobj(source, target)
            shutil.copystat(src, dst)
        except BaseException:
            os.unlink(dst)
            raise
    return True


class PhotoSorter:
    """Files classified photos into class folders (see the module docstring)."""

    def __init__(self, folder, min_prob=0.0, read_folders=()):
        check_setting(PredictSettings, "min_prob", min_prob)  # its bounds: the --min-prob field
        self.folder, self.min_prob = check_sort_folder(folder, read_folders), min_prob
        self.counts, self.ways, self.skipped, self.filed = Counter(), Counter(), 0, 0  # filed: photos
        self.multilabel = False

    def start(self, multilabel=False):
        """Create the folder; `multilabel`: the records come from a multi-label model (its summary)."""
        self.multilabel = multilabel
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create {self.folder}: {err.strerror or err}") from None

    def add(self, record):
        """File one predict record's photo (an error record is only counted)."""
        if "error" in record:
            self.skipped += 1
            return
        self.filed += 1
        for sub in folders_of(record, self.min_prob):
            try:
                self.ways[place(record["path"], self.folder / sub)] += 1
            except OSError as err:
                raise StorageError(f"cannot file {record['path']} in {self.folder / sub}: "
                                   f"{err.strerror or err}") from None
            self.counts[sub] += 1

    def summary(self):
        if self.multilabel:
            return self._label_summary()
        classes = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items()) if name != UNSURE)
        done = sum(self.counts.values())
        text = f"sorted {done} photo(s) into {self.folder}: {classes or 'no class'}; unsure {self.counts[UNSURE]}"
        if self.min_prob > 0:
            text += f" (top probability below {self.min_prob}: in {UNSURE}/)"
        return text + self._notes()

    def _label_summary(self):
        """A multi-label model's summary: photos, then how many went under each label and how many had none."""
        labels = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items()) if name != NO_LABEL)
        return (f"sorted {self.filed} photo(s) into {self.folder} by their labels (a photo under each of its "
                f"labels): {labels or 'no label given'}; no label {self.counts[NO_LABEL]} (in {NO_LABEL}/)"
                + self._notes())

    def _notes(self):
        notes = [f"{self.ways['copied']} copied where hard links failed" if self.ways["copied"] else "",
                 f"{self.ways['kept']} already there" if self.ways["kept"] else "",
                 f"{self.skipped} unreadable skipped" if self.skipped else ""]
        notes = "; ".join(note for note in notes if note)
        return f"; {notes}" if notes else ""
