"""`petalnet data check`: read every photo once, find the unreadable ones, exact and near duplicates.

    petalnet data check ~/.cache/petalnet/flower_photos
    petalnet data check photos/ --json --near-threshold 0.95 --pairs-picture pairs.png

Each file is read once: its bytes are hashed (SHA-256, for duplicates and for the split), fully
decoded (to find truncated or mislabelled files) and fingerprinted for near-duplicates
(near_duplicates.py), on every core at once (threads).
"""

import hashlib
import io
import json
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from petalnet.data.download import data_folder
from petalnet.data.folders import require_folder, scan_class_folder, shown_path
from petalnet.data.sources import DataSource, folder_source, open_data
from petalnet.data.images import UnreadableImage, open_rgb
from petalnet.data.near_duplicates import DEFAULT_THRESHOLD, fingerprint, photo_groups
from petalnet.data.settings import CheckSettings
from petalnet.utils.cores import cpu_count
from petalnet.utils.fields import check_fields, check_setting
from petalnet.utils.progress import progress_bar

IMBALANCE_WARNING = 3.0  # largest class / smallest above this: `data check` warns


@dataclass
class PhotoScan:
    """What one pass over labelled photos found."""

    photos: object  # folders.LabelledPhotos
    sha256: list  # one hex digest per photos.files entry
    unreadable: dict  # path -> one-line reason
    looks: list  # one near_duplicates.Look per photos.files entry (None: unreadable, or not asked for)

    def readable(self):
        """(paths, labels, digests, looks) of the photos that decode."""
        return tuple([column[i] for i in self.readable_indices()]
                     for column in (self.photos.files, self.photos.labels, self.sha256, self.looks))

    def readable_indices(self):
        return [i for i, p in enumerate(self.photos.files) if p not in self.unreadable]


def scan_photos(root, classes=None, progress=True, desc="checking photos", threads=None, looks=False):
    """scan_listing of the class folders under `root` (only `classes` when given)."""
    return scan_listing(scan_class_folder(root, classes), progress, desc, threads, looks)


def scan_listing(photos, progress=True, desc="checking photos", threads=None, looks=False):
    """Hash and decode every photo of a LabelledPhotos (and fingerprint it, with `looks`), `threads` at a
    time (default: one per core, up to 8).

    Pillow's decoder and hashlib let go of the GIL, so threads share the work without extra processes.
    """
    threads = threads or min(8, cpu_count())
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(progress_bar(pool.map(partial(check_photo, look=looks), photos.files), progress,
                                    total=len(photos.files), desc=desc, unit="img", leave=False))
    unreadable = {path: why for path, (_, why, _) in zip(photos.files, results) if why is not None}
    return PhotoScan(photos=photos, sha256=[digest for digest, _, _ in results], unreadable=unreadable,
                     looks=[seen for _, _, seen in results])


def check_photo(path, look=False):
    """(sha256 hex digest of the file, None, its Look or None) if it decodes, else (digest or "",
    one-line reason, None)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return "", f"cannot read: {err.strerror or err}", None
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = open_rgb(io.BytesIO(data))
    except UnreadableImage as err:
        return digest, str(err), None
    return digest, None, fingerprint(image) if look else None


def duplicate_groups(paths, digests, root, places):
    """Groups of 2+ files with the same bytes, as paths shown relative to `root`; `folders` names the places
    (class folders, or a manifest's label sets) of the copies, places[i] being paths[i]'s."""
    by_digest = defaultdict(list)
    for i, digest in enumerate(digests):
        if digest:
            by_digest[digest].append(i)
    groups = []
    for digest, group in sorted(by_digest.items(), key=lambda kv: str(paths[kv[1][0]])):
        if len(group) > 1:
            where = sorted({places[i] for i in group})
            groups.append({"sha256": digest, "paths": [shown_path(paths[i], root) for i in group], "folders": where,
                           "across_folders": len(where) > 1})
    return groups


def check_near_threshold(threshold):
    """A similarity in (0, 1], or None: no near-duplicate search (data/settings.py declares its bounds)."""
    check_setting(CheckSettings, "near_threshold", threshold)


def near_duplicate_report(paths, digests, looks, root, threshold, places, split_layout=False):
    """`data check`'s near-duplicate groups: paths shown relative to `root`, the places (places[i]: class
    folder or label set) they are in, whether they cross places or train/val, and each pair's similarity."""
    groups, pairs = photo_groups(digests, looks, threshold)
    rel = {i: shown_path(paths[i], root) for group in groups for i in group}
    report = []
    for group in groups:
        where, members = sorted({places[i] for i in group}), set(group)
        inside = [(rel[i], rel[j], similarity) for i, j, similarity in pairs if i in members and j in members]
        report.append({"paths": [rel[i] for i in group], "folders": where, "across_folders": len(where) > 1,
                       "across_train_val": split_layout and len({place.split("/")[0] for place in where}) > 1,
                       "similarity": min(similarity for *_, similarity in inside),
                       "pairs": [list(pair) for pair in inside]})
    return report


def check_dataset(data, progress=True, near_threshold=DEFAULT_THRESHOLD):
    """The `data check` report for a DataSource (sources.py) or a folder: class folders, a train/val layout
    of them, or a manifest."""
    check_near_threshold(near_threshold)
    source = data if isinstance(data, DataSource) else folder_source(require_folder(data))
    root, looks = source.root, near_threshold is not None
    if source.kind == "train/val":
        scans = [(part, scan_photos(root / part, progress=progress, looks=looks)) for part in ("train", "val")]
    else:
        scans = [("", scan_listing(source.photos(), progress=progress, looks=looks))]
    report = {"root": str(root), "layout": source.kind, "classes": sorted(set().union(
              *(scan.photos.classes for _, scan in scans))), "counts": {}, "total": 0, "unreadable": [],
              "non_image": [], "dropped": [], "links_skipped": []}
    if source.kind == "manifest":
        report.update(manifest=str(source.manifest.file), multilabel=source.manifest.multilabel)
    everything, readable = ([], [], []), ([], [], [], [])
    for part, scan in scans:
        _count(report, part, scan)
        photos = scan.photos
        where = [f"{part}/{place}" if part else place for place in _places(photos)]
        for column, values in zip(everything, (photos.files, scan.sha256, where)):
            column += values
        keep = scan.readable_indices()
        for column, values in zip(readable, (photos.files, scan.sha256, scan.looks, where)):
            column += [values[i] for i in keep]
    report["total"] = len(readable[0])
    report.update(class_balance(report["counts"], report["classes"]))
    report["duplicates"] = duplicate_groups(*everything[:2], root, everything[2])
    report["near_threshold"] = near_threshold
    report["near_duplicates"] = ([] if near_threshold is None else near_duplicate_report(
        *readable[:3], root, near_threshold, readable[3], split_layout=source.kind == "train/val"))
    return report


def _count(report, part, scan):
    """Add a scan's readable photos per class, unreadable, non-image and dropped files to the report."""
    photos = scan.photos
    sets = photos.label_sets()
    readable = [sets[i] for i in scan.readable_indices()]
    for label, name in enumerate(photos.classes):
        report["counts"][f"{part}/{name}" if part else name] = sum(label in labels for labels in readable)
    if photos.multilabel:
        sizes = defaultdict(int)
        for labels in readable:
            sizes[len(labels)] += 1
        report["labels_per_photo"] = {str(size): n for size, n in sorted(sizes.items())}
    report["unreadable"] += [{"path": photos.shown(p), "error": why} for p, why in scan.unreadable.items()]
    report["non_image"] += [photos.shown(p) for p in photos.other_files]
    report["dropped"] += photos.dropped
    report["links_skipped"] += [photos.shown(p) for p in photos.links_skipped]


def _places(photos):
    """Where each photo is filed: its class folder, or for a manifest its labels joined by ';'."""
    if photos.form == "manifest":
        return [";".join(photos.classes[label] for label in labels) or "(none)" for labels in photos.label_sets()]
    return [photos.classes[label] for label in photos.labels]


def class_balance(counts, classes):
    """Each class's share of the photos (train and val together), largest / smallest, and whether that
    ratio is past IMBALANCE_WARNING."""
    per_class = {name: sum(n for key, n in counts.items() if key.rsplit("/", 1)[-1] == name) for name in classes}
    total = sum(per_class.values())
    shares = {name: n / total if total else 0.0 for name, n in per_class.items()}
    present = [n for n in per_class.values() if n]
    ratio = max(present) / min(present) if present else None
    return {"class_shares": shares, "imbalance_ratio": ratio,
            "imbalanced": ratio is not None and ratio > IMBALANCE_WARNING}


def format_report(report, first=10):
    """The report as text: counts, balance, then each kind of problem with its first `first` cases."""
    where = report.get("manifest", report["root"])
    lines = [f"{where} ({report['layout']}): {report['total']} readable photos"]
    width = max([len(k) for k in report["counts"]] or [0])
    lines += [f"  {name:<{width}}  {n:>6}" for name, n in report["counts"].items()]
    if "labels_per_photo" in report:
        lines.append("labels per photo: " + ", ".join(f"{k}: {n}" for k, n in report["labels_per_photo"].items()))
    lines += _balance_lines(report)
    lines += _listed("unreadable", [f"{r['path']}: {r['error']}" for r in report["unreadable"]], first)
    if report["layout"] == "manifest":
        lines += _listed("manifest rows not used", [f"{r['path']}: {r['error']}" for r in report["dropped"]], first)
    else:
        lines += _listed("non-image files in class folders (ignored)", report["non_image"], first)
    if report["links_skipped"]:
        lines.append(f"folder links not followed (a loop, or a folder already listed: no photo twice): "
                     f"{', '.join(report['links_skipped'])}")
    dups, across = report["duplicates"], _across(report)
    lines.append(f"exact duplicates: {len(dups)} groups ({sum(g['across_folders'] for g in dups)} {across[0]})")
    lines += [f"  {' = '.join(g['paths'])}" + (f"  [{across[0]}]" if g["across_folders"] else "")
              for g in dups[:first]]
    lines += [f"  ... and {len(dups) - first} more (--json lists them all)"] if len(dups) > first else []
    return "\n".join(lines + _near_lines(report, first))


def _listed(title, items, first):
    more = [f"  ... and {len(items) - first} more (--json lists them all)"] if len(items) > first else []
    return [f"{title}: {len(items)}"] + [f"  {item}" for item in items[:first]] + more


def _across(report):
    """What a group that spans places crosses, as the text says it."""
    return ("given different labels",) if report["layout"] == "manifest" else ("across folders",)


def _near_lines(report, first):
    if report["near_threshold"] is None:
        return ["near-duplicates: not searched (--near-threshold off)"]
    near, (across,) = report["near_duplicates"], _across(report)
    straddle = sum(g["across_train_val"] for g in near)
    lines = [f"near-duplicates (similarity >= {report['near_threshold']:g}): {len(near)} groups "
             f"({sum(g['across_folders'] for g in near)} {across}"
             + (f", {straddle} across train and val" if report["layout"] == "train/val" else "") + ")"]
    for g in near[:first]:
        tag = ("  [across train and val]" if g["across_train_val"] else f"  [{across}]" if g["across_folders"] else "")
        lines.append(f"  {' ~ '.join(g['paths'])}  ({g['similarity']:.3f}){tag}")
    return lines + ([f"  ... and {len(near) - first} more (--json lists them all)"] if len(near) > first else [])


def draw_near_pairs(report, path, most=24):
    """A picture of the near-duplicate pairs of a report, the least similar (closest to the threshold) first."""
    from petalnet.data.images import small_copy
    from petalnet.utils.plots import image_grid

    pairs = sorted((pair for g in report["near_duplicates"] for pair in g["pairs"]), key=lambda pair: pair[2])
    if not pairs:
        return 0
    root, tiles = Path(report["root"]), []
    for a, b, similarity in pairs[:most]:
        tiles += [(small_copy(open_rgb(root / a), 256), f"{similarity:.3f}  {_short(a)}"),
                  (small_copy(open_rgb(root / b), 256), _short(b))]
    shown = f"{len(pairs[:most])} of {len(pairs)}" if len(pairs) > most else f"{len(pairs)}"
    image_grid(tiles, path, title=f"near-duplicate pairs ({shown}, similarity >= {report['near_threshold']:g}, "
               "least similar first)", columns=4)
    return len(pairs[:most])


def _short(rel, width=30):
    return rel if len(rel) <= width else "..." + rel[-(width - 3):]


def _balance_lines(report):
    if report["imbalance_ratio"] is None:
        return []
    shares = ", ".join(f"{name} {share:.1%}" for name, share in report["class_shares"].items())
    lines = [f"class shares: {shares}; largest / smallest: {report['imbalance_ratio']:.2f}"]
    if report["imbalanced"]:
        lines.append(f"warning: the classes are imbalanced (largest / smallest above {IMBALANCE_WARNING:g}): "
                     "accuracy hides the small classes; consider train --class-weights balanced or --sampler "
                     "balanced, and read evaluate's per-class recall")
    return lines


def run_check(settings):
    """`petalnet data check`: print the report (text or JSON), draw the near-duplicate pairs when asked;
    returns the exit code (1 when some photos are unreadable or some manifest rows unusable). Bad settings are
    said before any photo is read."""
    from petalnet.utils.plots import picture_format  # matplotlib only when a picture is asked for

    check_fields(settings)
    if settings.pairs_picture:
        picture_format(settings.pairs_picture)  # a suffix it cannot draw: said before reading every photo
    source = open_data(data_folder(settings.dir), settings.label_column, settings.allow_paths_outside)
    report = check_dataset(source, near_threshold=settings.near_threshold)
    print(json.dumps(report) if settings.json else format_report(report))
    if settings.pairs_picture:
        shown = draw_near_pairs(report, settings.pairs_picture)
        said = (f"near-duplicate pairs: {settings.pairs_picture} ({shown} shown)" if shown
                else f"no near-duplicate pairs: {settings.pairs_picture} not written")
        print(said, file=sys.stderr if settings.json else sys.stdout)
    return 1 if report["unreadable"] or report["dropped"] else 0
