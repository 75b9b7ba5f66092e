"""Labels kept in a file: a CSV, TSV or JSONL manifest, or Hugging Face imagefolder's metadata file.

    path,label                  path,labels,split                  {"file_name": "a.jpg", "label": "daisy"}
    daisy/1.jpg,daisy           beds/3.jpg,roses;tulips,train      (a line of metadata.jsonl beside the photos)
    /srv/2.jpg,roses            lawn/4.jpg,,val

    manifest = read_manifest("labels.csv")                     # Manifest: rows, label column, multilabel
    photos = manifest_photos(manifest, allow_outside=False)   # folders.LabelledPhotos, dropped rows reported

Columns: the photo (`path`, or `file_name` as imagefolder names it), relative to the manifest's folder (absolute
paths and paths through `..` only with allow_outside); its class (`label`) or its classes (`labels`: `;` between
them in CSV/TSV, a list in JSONL, empty for a photo with none of them); optionally `split` (train, val or test),
which then replaces the random split. `label_column` picks another column. A metadata file without a label
column labels each photo with its first folder, as imagefolder does.

A manifest that cannot be read as one (no path column, no label column, an unknown split, a row without a path,
a path outside without the flag) is one UserError, raised before any photo is read. Rows that cannot be used are
dropped and reported instead: a photo that is missing, a row repeated, a photo given different labels (each of
its rows), a single-label row without a label.
"""

import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from petalnet.data.folders import LabelledPhotos, shown_path
from petalnet.errors import UserError

DELIMITERS = {".csv": ",", ".tsv": "\t", ".jsonl": None}  # the suffixes read as manifests
METADATA = ("metadata.csv", "metadata.jsonl")  # imagefolder's names
PATH_COLUMNS = ("path", "file_name")
SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
MULTI_COLUMN = "labels"  # the column whose cells hold several labels


@dataclass(frozen=True)
class Row:
    line: int  # the row's line in the file (CSV: the header is line 1)
    path: str  # as written, relative to the manifest's folder or absolute
    labels: tuple[str, ...]  # one class (single-label) or several (multilabel; empty: none)
    split: str | None  # "train", "val", "test", or None without a split column


@dataclass(frozen=True)
class Manifest:
    file: Path
    rows: tuple[Row, ...]
    label_column: str  # "" when the labels are the photos' first folders
    multilabel: bool
    has_split: bool

    @property
    def root(self):
        return self.file.parent


def is_manifest_file(path):
    return Path(path).suffix.lower() in DELIMITERS


def metadata_file(folder):
    """imagefolder's metadata.csv or metadata.jsonl directly in `folder`, or None."""
    return next((Path(folder) / name for name in METADATA if (Path(folder) / name).is_file()), None)


def read_manifest(file, label_column=None):
    """The rows of a manifest file; UserError (one line) when it is not one."""
    file = Path(file)
    records = list(_records(file))
    if not records:
        raise UserError(f"{file} has no rows: a manifest needs a header and one row per photo")
    columns = list(dict.fromkeys(key for _, record in records for key in record))
    path_column = next((name for name in PATH_COLUMNS if name in columns), None)
    if path_column is None:
        raise UserError(f"{file} has no path column (columns: {', '.join(columns)}): name the photos' column "
                        "'path' (or 'file_name')")
    labels = _label_column(file, columns, label_column)
    multilabel = labels == MULTI_COLUMN or any(isinstance(record.get(labels), list) for _, record in records)
    has_split = "split" in columns
    rows = tuple(_row(file, line, record, path_column, labels, multilabel, has_split) for line, record in records)
    return Manifest(file=file, rows=rows, label_column=labels, multilabel=multilabel, has_split=has_split)


def _records(file):
    """(line, {column: value}) per row; UserError when the file cannot be read or parsed."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read manifest {file}: {getattr(err, 'strerror', None) or err}") from None
    delimiter = DELIMITERS.get(file.suffix.lower())
    if delimiter is not None:
        reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
        for record in reader:
            yield reader.line_num, {key.strip(): (value or "").strip() for key, value in record.items()
                                    if key is not None}
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{file} line {number} is not JSON: {err.msg}") from None
        if not isinstance(record, dict):
            raise UserError(f"{file} line {number} is not a JSON object")
        yield number, record


def _label_column(file, columns, asked):
    if asked is not None:
        if asked not in columns:
            raise UserError(f"{file} has no column '{asked}' (columns: {', '.join(columns)})")
        return asked
    found = [name for name in ("label", MULTI_COLUMN) if name in columns]
    if len(found) == 2:
        raise UserError(f"{file} has both a label and a labels column: pick one with --label-column")
    if found:
        return found[0]
    if file.name in METADATA:
        return ""  # imagefolder: the first folder of each photo is its label
    raise UserError(f"{file} has no label column (columns: {', '.join(columns)}): name it 'label' (one class a "
                    "photo) or 'labels' (several), or pass --label-column NAME")


def _row(file, line, record, path_column, label_column, multilabel, has_split):
    path = str(record.get(path_column) or "").strip()
    if not path:
        raise UserError(f"{file} line {line} has no {path_column}")
    split = str(record.get("split") or "").strip().lower() if has_split else None
    if has_split and split not in SPLITS:
        raise UserError(f"{file} line {line}: split '{record.get('split')}' is not one of train, val, test")
    return Row(line=line, path=path, labels=_labels(record, path, label_column, multilabel),
               split=SPLITS[split] if has_split else None)


def _labels(record, path, column, multilabel):
    if not column:
        parts = Path(path).parts
        return (parts[0],) if len(parts) > 1 else ()
    value = record.get(column)
    if value is None:
        value = ""
    if isinstance(value, list):
        names = [str(name).strip() for name in value]
    elif multilabel:
        names = str(value).split(";")
    else:
        names = [str(value)]
    return tuple(sorted({name.strip() for name in names if name.strip()}))


def manifest_photos(manifest, allow_outside=False, flag="--allow-paths-outside"):
    """The manifest's photos and labels (classes: the sorted names of the rows kept); rows that cannot be
    used are in `dropped`. UserError when a path leaves the manifest's folder without allow_outside."""
    root = manifest.root
    kept, dropped = _usable_rows(manifest, allow_outside, flag)
    if not manifest.multilabel:
        for path, row in list(kept.items()):
            if not row.labels:
                dropped.append({"path": shown_path(path, root), "error": f"line {row.line} has no label"})
                del kept[path]
    classes = sorted({name for row in kept.values() for name in row.labels})
    index = {name: i for i, name in enumerate(classes)}
    photos = LabelledPhotos(root=root, classes=classes, multilabel=manifest.multilabel, form="manifest",
                            dropped=dropped, parts=[] if manifest.has_split else None)
    for path, row in kept.items():
        photos.files.append(path)
        labels = tuple(index[name] for name in row.labels)
        photos.labels.append(labels if manifest.multilabel else labels[0])
        if manifest.has_split:
            photos.parts.append(row.split)
    return photos


def _usable_rows(manifest, allow_outside, flag):
    """({absolute path: its row} in the file's order, [dropped rows]): each photo once, with one set of labels."""
    rows_of = defaultdict(list)
    for row in manifest.rows:
        rows_of[_resolve(manifest, row, allow_outside, flag)].append(row)
    kept, dropped = {}, []
    for path, rows in rows_of.items():
        shown = shown_path(path, manifest.root)
        given = {row.labels for row in rows}
        splits = {row.split for row in rows}
        if len(given) > 1 or len(splits) > 1:
            said = "; ".join(f"line {row.line}: {';'.join(row.labels) or '(none)'}"
                             + (f" ({row.split})" if row.split else "") for row in rows)
            dropped.append({"path": shown, "error": f"given different labels or splits: {said}"})
            continue
        dropped += [{"path": shown, "error": f"line {row.line} repeats line {rows[0].line}"} for row in rows[1:]]
        if not path.is_file():
            dropped.append({"path": shown, "error": f"missing (line {rows[0].line})"})
            continue
        kept[path] = rows[0]
    return kept, dropped


def _resolve(manifest, row, allow_outside, flag):
    """The row's photo as an absolute path (lexically normalized, links not followed)."""
    path = Path(os.path.normpath(manifest.root.absolute() / row.path))
    inside = not Path(row.path).is_absolute() and not os.path.relpath(path, manifest.root.absolute()).startswith("..")
    if not inside and not allow_outside:
        raise UserError(f"{manifest.file} line {row.line}: {row.path} is outside the manifest's folder; pass {flag} "
                        "to use photos outside it")
    return path
