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
from petalnet.data.folders import find_classes, is_split_layout, require_folder, scan_class_folder
from petalnet.data.images import UnreadableImage, open_rgb
from petalnet.data.near_duplicates import DEFAULT_THRESHOLD, fingerprint, photo_groups
from petalnet.data.settings import CheckSettings
from petalnet.utils.cores import cpu_count
from petalnet.utils.fields import check_fields, check_setting
from petalnet.utils.progress import progress_bar

IMBALANCE_WARNING = 3.0  # largest class / smallest above this: `data check` warns


@dataclass
class PhotoScan:
    """What one pass over a class folder found."""

    folder: object  # folders.ClassFolder
    sha256: list  # one hex digest per folder.files entry
    unreadable: dict  # path -> one-line reason
    looks: list  # one near_duplicates.Look per folder.files entry (None: unreadable, or not asked for)

    def readable(self):
        """(paths, labels, digests, looks) of the photos that decode."""
        keep = [i for i, p in enumerate(self.folder.files) if p not in self.unreadable]
        return tuple([column[i] for i in keep]
                     for column in (self.folder.files, self.folder.labels, self.sha256, self.looks))


def scan_photos(root, classes=None, progress=True, desc="checking photos", threads=None, looks=False):
    """Hash and decode every photo under `root` (and fingerprint it, with `looks`), `threads` at a time
    (default: one per core, up to 8).

    Pillow's decoder and hashlib let go of the GIL, so threads share the work without extra processes.
    """
    folder = scan_class_folder(root, classes)
    threads = threads or min(8, cpu_count())
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(progress_bar(pool.map(partial(check_photo, look=looks), folder.files), progress,
                                    total=len(folder.files), desc=desc, unit="img", leave=False))
    unreadable = {path: why for path, (_, why, _) in zip(folder.files, results) if why is not None}
    return PhotoScan(folder=folder, sha256=[digest for digest, _, _ in results], unreadable=unreadable,
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


def duplicate_groups(paths, digests, root, depth=1):
    """Groups of 2+ files with the same bytes, as paths relative to `root`.

    `folders` names the class folders (the first `depth` parts of each path) the copies are in.
    """
    by_digest = defaultdict(list)
    for path, digest in zip(paths, digests):
        if digest:
            by_digest[digest].append(path)
    groups = []
    for digest, group in sorted(by_digest.items(), key=lambda kv: str(kv[1][0])):
        if len(group) > 1:
            rel = [str(Path(p).relative_to(root)) for p in group]
            places = sorted({"/".join(Path(r).parts[:depth]) for r in rel})
            groups.append({"sha256": digest, "paths": rel, "folders": places,
                           "across_folders": len(places) > 1})
    return groups


def check_near_threshold(threshold):
    """A similarity in (0, 1], or None: no near-duplicate search (data/settings.py declares its bounds)."""
    check_setting(CheckSettings, "near_threshold", threshold)


def near_duplicate_report(paths, digests, looks, root, threshold, depth=1):
    """`data check`'s near-duplicate groups: paths relative to `root`, the class folders (first `depth`
    parts) they are in, whether they cross folders or train/val, and each pair's similarity."""
    groups, pairs = photo_groups(digests, looks, threshold)
    rel = {i: str(Path(paths[i]).relative_to(root)) for group in groups for i in group}
    report = []
    for group in groups:
        places, members = sorted({"/".join(Path(rel[i]).parts[:depth]) for i in group}), set(group)
        inside = [(rel[i], rel[j], similarity) for i, j, similarity in pairs if i in members and j in members]
        report.append({"paths": [rel[i] for i in group], "folders": places, "across_folders": len(places) > 1,
                       "across_train_val": depth == 2 and len({place.split("/")[0] for place in places}) > 1,
                       "similarity": min(similarity for *_, similarity in inside),
                       "pairs": [list(pair) for pair in inside]})
    return report


def check_dataset(root, progress=True, near_threshold=DEFAULT_THRESHOLD):
    """The `data check` report for a folder of class folders or a train/val layout of them."""
    check_near_threshold(near_threshold)
    root = require_folder(root)
    parts = ["train", "val"] if is_split_layout(root) else [""]
    classes = sorted(set().union(*(find_classes(root / part) for part in parts)))
    report = {"root": str(root), "layout": "train/val" if parts[0] else "class folders",
              "classes": classes, "counts": {}, "total": 0, "unreadable": [], "non_image": []}
    all_paths, all_digests, readable = [], [], ([], [], [])
    for part in parts:
        scan = scan_photos(root / part, progress=progress, looks=near_threshold is not None)
        for name, n in scan.folder.counts().items():
            bad = sum(1 for p, lab in zip(scan.folder.files, scan.folder.labels)
                      if scan.folder.classes[lab] == name and p in scan.unreadable)
            report["counts"][f"{part}/{name}" if part else name] = n - bad
        report["unreadable"] += [{"path": str(p.relative_to(root)), "error": why}
                                 for p, why in scan.unreadable.items()]
        report["non_image"] += [str(p.relative_to(root)) for p in scan.folder.other_files]
        all_paths += scan.folder.files
        all_digests += scan.sha256
        paths, _, digests, looks = scan.readable()
        for column, part_column in zip(readable, (paths, digests, looks)):
            column += part_column
    report["total"] = sum(report["counts"].values())
    report.update(class_balance(report["counts"], classes))
    depth = 2 if parts[0] else 1
    report["duplicates"] = duplicate_groups(all_paths, all_digests, root, depth)
    report["near_threshold"] = near_threshold
    report["near_duplicates"] = ([] if near_threshold is None else
                                 near_duplicate_report(*readable, root, near_threshold, depth))
    return report


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


def format_report(report):
    lines = [f"{report['root']} ({report['layout']}): {report['total']} readable photos"]
    width = max(len(k) for k in report["counts"])
    lines += [f"  {name:<{width}}  {n:>6}" for name, n in report["counts"].items()]
    lines += _balance_lines(report)
    lines.append(f"unreadable: {len(report['unreadable'])}")
    lines += [f"  {r['path']}: {r['error']}" for r in report["unreadable"]]
    lines.append(f"non-image files in class folders (ignored): {len(report['non_image'])}")
    lines += [f"  {p}" for p in report["non_image"]]
    dups = report["duplicates"]
    across = sum(g["across_folders"] for g in dups)
    lines.append(f"exact duplicates: {len(dups)} groups ({across} across folders)")
    for g in dups:
        tag = "  [across folders]" if g["across_folders"] else ""
        lines.append(f"  {' = '.join(g['paths'])}{tag}")
    return "\n".join(lines + _near_lines(report))


def _near_lines(report):
    if report["near_threshold"] is None:
        return ["near-duplicates: not searched (--near-threshold off)"]
    near = report["near_duplicates"]
    straddle = sum(g["across_train_val"] for g in near)
    lines = [f"near-duplicates (similarity >= {report['near_threshold']:g}): {len(near)} groups "
             f"({sum(g['across_folders'] for g in near)} across folders"
             + (f", {straddle} across train and val" if report["layout"] == "train/val" else "") + ")"]
    for g in near:
        tag = ("  [across train and val]" if g["across_train_val"]
               else "  [across folders]" if g["across_folders"] else "")
        lines.append(f"  {' ~ '.join(g['paths'])}  ({g['similarity']:.3f}){tag}")
    return lines


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
    returns the exit code (1 when some photos are unreadable). Bad settings are said before any photo is read."""
    from petalnet.utils.plots import picture_format  # matplotlib only when a picture is asked for

    check_fields(settings)
    if settings.pairs_picture:
        picture_format(settings.pairs_picture)  # a suffix it cannot draw: said before reading every photo
    report = check_dataset(data_folder(settings.dir), near_threshold=settings.near_threshold)
    print(json.dumps(report) if settings.json else format_report(report))
    if settings.pairs_picture:
        shown = draw_near_pairs(report, settings.pairs_picture)
        said = (f"near-duplicate pairs: {settings.pairs_picture} ({shown} shown)" if shown
                else f"no near-duplicate pairs: {settings.pairs_picture} not written")
        print(said, file=sys.stderr if settings.json else sys.stdout)
    return 1 if report["unreadable"] else 0
