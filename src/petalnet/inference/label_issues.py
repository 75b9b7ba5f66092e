"""`petalnet data issues`: the photos whose label looks wrong, the photos unlike any other, and copies given
different labels, most likely first. Nothing in the data is touched.

    petalnet data issues photos/ --out issues/                      # ImageNet features + a linear model, 5 folds
    petalnet data issues photos/ --out issues/ --from runs/cv       # a 'train --folds K' run's probabilities
    petalnet data issues photos/ --out issues/ --recipe finetune    # train K folds of a recipe first (cli.py)
    petalnet train --data issues/corrected.csv --out runs/clean     # suggested labels, outliers left out

    found = find_issues(IssuesSettings(data="photos/", out="issues/"))   # Found: the rows, most likely first

Every photo gets class probabilities from a model that did not see it (out of fold; folds keep byte copies and
near-duplicates together, as data/folds.py makes them). By default the model is a logistic regression on the
features of an ImageNet network (features.py): seconds once the features are computed, and as good whatever
a recipe would learn from photos that may be mislabelled. `--from RUN` takes a `train --folds K` run's oof.csv
instead: networks trained on these photos, better where ImageNet's features do not tell the classes apart.
Then (labels.py), each photo flagged is one row of a kind (the first that applies):
- conflict: copies and near-duplicates given different labels: each copy not given the group's most probable
  label (of the group's mean probabilities); score 1, as two labels of one photo cannot both be right.
- outlier: cleanlab's OutOfDistribution on the features (mean cosine distance to the 10 nearest photos); a
  photo farther than Q3 + 1.7 IQR of all photos' distances (cleanlab Datalab's rule): unlike any other.
- label: cleanlab's confident learning (Northcutt et al. 2021) doubts the given label.
An outlier's or a label's score is 1 - the label's quality (cleanlab's self-confidence: 1 - p(given)), so the
rows are ordered by how strongly models that did not see a photo disbelieve its label; the suggestion is the
most probable class (a multi-label photo: the classes at 0.5 or more).

DIR/issues.csv: path,given,suggested,score,kind, highest score first. DIR/issues.jpg: the first --show photos.
DIR/corrected.csv: a manifest of every photo with the suggested labels and without the outliers (a split column
kept), its paths under DIR/photos, a link to DATA's folder, so that `train --data DIR/corrected.csv` takes it
as it is. DIR/summary.json: counts, how the probabilities were made, their accuracy against the given labels.
"""

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from petalnet.data.folders import shown_path
from petalnet.data.folds import assign_folds
from petalnet.data.images import open_photo, small_copy
from petalnet.data.near_duplicates import DEFAULT_THRESHOLD
from petalnet.data.sources import open_data
from petalnet.data.split import group_keys, scan_source
from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.inference.features import photo_features
from petalnet.inference.labels import (conflicts, find_label_problems, import_cleanlab, label_quality,
                                       logistic_out_of_fold, outliers, predicted)
from petalnet.utils.fields import check_fields
from petalnet.utils.fileio import write_json, write_text

OUTPUTS = ("issues.csv", "issues.jpg", "corrected.csv", "summary.json")
PHOTOS_LINK = "photos"  # DIR/photos -> DATA's folder: corrected.csv's paths stay inside its folder


@dataclass(frozen=True)
class Issue:
    """One row of issues.csv."""
    path: str  # relative to DATA's folder (absolute when outside it)
    given: str  # the class, or a multi-label photo's classes joined by ';'
    suggested: str  # the most probable class (label set) out of fold
    score: float  # how likely the row is a real problem, 0-1
    kind: str  # label, outlier or conflict


@dataclass(frozen=True)
class Found:
    """What `data issues` found, and how."""
    issues: tuple[Issue, ...]  # most likely first
    photos: int  # photos looked at
    method: str  # where the probabilities came from
    accuracy: float  # the out-of-fold probabilities' accuracy against the given labels (multi-label: exact sets)
    seconds: float
    left_out: int = 0  # unreadable photos and unusable manifest rows (data check lists them)

    def counts(self):
        """{kind: rows} for label, outlier and conflict."""
        return {kind: sum(issue.kind == kind for issue in self.issues) for kind in ("label", "outlier", "conflict")}


@dataclass
class Photos:
    """The photos of DATA as data issues sees them."""
    source: object  # data/sources.py's DataSource
    classes: list
    paths: list  # absolute
    labels: list  # class index, or a tuple of them (multilabel)
    keys: list  # photos with one key are copies or near-duplicates (split.py's group_keys)
    parts: list | None  # a manifest's split column, per photo
    multilabel: bool
    left_out: int  # unreadable photos, unusable manifest rows


def run_issues(settings):
    """`petalnet data issues`: find, write, print one summary line. Returns 0."""
    found = find_issues(settings)
    counts = found.counts()
    print(f"{found.photos} photos, probabilities from {found.method} (out-of-fold accuracy {found.accuracy:.4f}): "
          f"{counts['label']} label issue(s), {counts['outlier']} outlier(s), {counts['conflict']} conflicting "
          f"copies; {settings.out}/issues.csv (most likely first), issues.jpg, corrected.csv "
          f"({found.seconds:.0f} s)" + (f"; {found.left_out} photo(s) or row(s) left out: see data check"
                                          if found.left_out else ""))
    return 0


def find_issues(settings, progress=True):
    """Look through settings.data and write settings.out's files; the Found."""
    started = time.perf_counter()
    check_fields(settings)
    import_cleanlab()  # the extra missing: one line before any photo is read
    photos = read_photos(settings, progress)
    given = run_probabilities(settings.from_run, photos) if settings.from_run else None  # its errors: before DIR
    out = prepare_out(settings, photos.source)
    table = photo_features(photos.paths, settings.device, progress=progress)
    probs, method = (given, f"the folds of {settings.from_run}") if given is not None else \
        logistic_probabilities(settings, photos, table.features)
    rows = issue_rows(photos, probs, table.features)
    write_outputs(out, photos, rows, settings.show)
    found = Found(issues=tuple(rows), photos=len(photos.paths), method=method, accuracy=fold_accuracy(probs, photos),
                  seconds=time.perf_counter() - started, left_out=photos.left_out)
    write_json(out / "summary.json", summary(found, settings))
    return found


def read_photos(settings, progress=True):
    """DATA's readable photos with their labels and near-duplicate groups (a manifest's split column kept)."""
    source = open_data(settings.data, settings.label_column, settings.allow_paths_outside)
    if source.kind == "train/val":
        raise UserError(f"{source.root} is a train/val layout: give its photos as class folders or a manifest")
    scanned = scan_source(source, progress=progress, split_column=False)
    scanned.check_class_sizes(settings.folds, f"--folds {settings.folds} needs at least {settings.folds}")
    groups = scanned.near_groups(DEFAULT_THRESHOLD)
    return Photos(source=source, classes=list(scanned.classes), paths=[str(p) for p in scanned.paths],
                  labels=list(scanned.labels), keys=group_keys(scanned.digests, groups),
                  parts=scanned.parts, multilabel=scanned.multilabel, left_out=len(scanned.left_out))


def prepare_out(settings, source):
    """DIR, created; refused inside a folder of class folders (it would become a class) or over earlier results."""
    out, root = Path(settings.out).absolute(), Path(source.root).absolute()
    if source.kind != "manifest" and (out == root or root in out.parents):
        raise UserError(f"--out {settings.out} is inside {root}: choose a folder outside the photos")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {settings.out} is a file, not a folder")
    there = [name for name in OUTPUTS if (out / name).exists()]
    if there and not settings.overwrite:
        raise UserError(f"{out / there[0]} already exists: pass --overwrite to replace it, or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create {out}: {describe_os_error(err)}") from None
    return out


def logistic_probabilities(settings, photos, features):
    """((N, C) out-of-fold probabilities of a logistic regression on the features, how they were made)."""
    label_sets = [tuple(label) if photos.multilabel else (label,) for label in photos.labels]
    folds = assign_folds(label_sets, photos.keys, settings.folds, settings.seed)
    probs, c = logistic_out_of_fold(features, photos.labels, folds, len(photos.classes), photos.multilabel)
    return probs, f"{settings.folds}-fold logistic regression on ImageNet features (C {c:g})"


def run_probabilities(run, photos):
    """A `train --folds K` run's out-of-fold probabilities, in the order of `photos`; one line when the run
    classified other classes or photos."""
    from petalnet.config.folds import read_out_of_fold

    oof = read_out_of_fold(run)
    if list(oof.classes) != photos.classes:
        raise UserError(f"{run} was trained on the classes {', '.join(oof.classes)}, not {', '.join(photos.classes)}")
    row_of = {os.path.realpath(path): i for i, path in enumerate(oof.paths)}  # links followed on both sides
    missing = [path for path in photos.paths if os.path.realpath(path) not in row_of]
    if missing:
        raise UserError(f"{run}'s out-of-fold probabilities lack {len(missing)} of the {len(photos.paths)} photos "
                        f"(first: {missing[0]}): was it trained on other photos?")
    return np.asarray([oof.probs[row_of[os.path.realpath(path)]] for path in photos.paths], dtype=np.float64)


def issue_rows(photos, probs, features):
    """Every flagged photo once, highest score first (ties: listing order): a conflict's score is 1, any other's
    1 - its label quality (labels.py); a photo flagged twice takes the first of conflict, outlier, label."""
    quality = label_quality(photos.labels, probs, photos.multilabel)
    conflicting = conflicts(photos.keys, photos.labels, probs, photos.multilabel)
    odd = outliers(features)
    doubted = find_label_problems(photos.labels, probs, photos.multilabel)
    rows = []
    for i in set(conflicting) | odd | doubted:
        kind = "conflict" if i in conflicting else "outlier" if i in odd else "label"
        suggested = conflicting[i] if i in conflicting else predicted(probs[i], photos.multilabel)
        rows.append((1.0 if kind == "conflict" else float(1.0 - quality[i]), i, kind, suggested))
    rows.sort(key=lambda row: (-row[0], row[1]))
    return [Issue(path=shown_path(photos.paths[i], photos.source.root), given=label_text(photos, photos.labels[i]),
                  suggested=label_text(photos, suggested), score=score, kind=kind)
            for score, i, kind, suggested in rows]


def label_text(photos, label):
    """A class name, or a label set's names joined by ';' (empty: none)."""
    return ";".join(photos.classes[c] for c in label) if photos.multilabel else photos.classes[label]


def fold_accuracy(probs, photos):
    """How often the out-of-fold prediction is the given label (a multi-label photo: its whole set at 0.5)."""
    if photos.multilabel:
        return float(np.mean([set(np.flatnonzero(p >= 0.5)) == set(label) for p, label in zip(probs, photos.labels)]))
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(photos.labels)))


def write_outputs(out, photos, rows, show):
    """issues.csv, corrected.csv (+ the DIR/photos link) and issues.jpg."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("path", "given", "suggested", "score", "kind"))
    writer.writerows((row.path, row.given, row.suggested, repr(row.score), row.kind) for row in rows)
    write_text(out / "issues.csv", buffer.getvalue())
    write_corrected(out, photos, rows)
    if show and rows:
        draw_issues(rows[:show], photos, out / "issues.jpg")


def write_corrected(out, photos, rows):
    """corrected.csv: every photo but the outliers, labelled as suggested where a label or conflict row says."""
    prefix = photos_link(out, photos.source.root)
    changed = {row.path: row for row in rows}
    column = "labels" if photos.multilabel else "label"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("path", column) + (("split",) if photos.parts is not None else ()))
    for i, path in enumerate(photos.paths):
        shown = shown_path(path, photos.source.root)
        row = changed.get(shown)
        if row is not None and row.kind == "outlier":
            continue
        label = row.suggested if row is not None else label_text(photos, photos.labels[i])
        place = path if Path(shown).is_absolute() or prefix is None else f"{prefix}/{Path(shown).as_posix()}"
        writer.writerow((place, label) + ((photos.parts[i],) if photos.parts is not None else ()))
    write_text(out / "corrected.csv", buffer.getvalue())


def photos_link(out, root):
    """DIR/photos, a link to DATA's folder (made, or already there); None where links cannot be made (then
    corrected.csv names absolute paths, which train takes with --allow-paths-outside)."""
    link = out / PHOTOS_LINK
    try:
        if link.is_symlink() and Path(os.readlink(link)) == Path(root).absolute():
            return PHOTOS_LINK
        if link.is_symlink():
            link.unlink()
        if link.exists():
            raise UserError(f"{link} exists and is not a link to {root}: choose another --out")
        os.symlink(Path(root).absolute(), link, target_is_directory=True)
        return PHOTOS_LINK
    except (OSError, NotImplementedError):
        return None


def draw_issues(rows, photos, path):
    """The rows' photos as a grid titled kind, given -> suggested, score."""
    from petalnet.utils.plots import image_grid  # matplotlib only when a picture is drawn

    root, tiles = Path(photos.source.root), []
    for row in rows:
        image = small_copy(open_photo(Path(row.path) if Path(row.path).is_absolute() else root / row.path), 256)
        tiles.append((image, f"{row.kind} {row.score:.2f}\n{row.given} -> {row.suggested}\n{_short(row.path)}"))
    image_grid(tiles, path, title=f"data issues: the first {len(rows)}, most likely first", columns=6)


def _short(text, width=34):
    return text if len(text) <= width else "..." + text[-(width - 3):]


def summary(found, settings):
    """summary.json's dict."""
    return {"data": str(Path(settings.data).absolute()), "photos": found.photos, "left_out": found.left_out,
            "method": found.method, "out_of_fold_accuracy": found.accuracy, "folds": settings.folds,
            "from_run": settings.from_run, "issues": len(found.issues), **found.counts(), "seconds": found.seconds}
