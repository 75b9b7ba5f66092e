"""`petalnet data check`: read every photo once, find the unreadable ones and exact duplicates.

    petalnet data check ~/.cache/petalnet/flower_photos
    petalnet data check photos/ --json

Each file is read once: its bytes are hashed (SHA-256, for duplicates and for the split) and fully
decoded (to find truncated or mislabelled files), on every core at once (threads).
"""

import hashlib
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from petalnet.utils.cores import cpu_count
from petalnet.data.folders import find_classes, is_split_layout, require_folder, scan_class_folder
from petalnet.data.images import UnreadableImage, open_rgb
from petalnet.utils.progress import progress_bar

IMBALANCE_WARNING = 3.0  # largest class / smallest above this: `data check` warns


@dataclass
class PhotoScan:
    """What one pass over a class folder found."""

    folder: object  # folders.ClassFolder
    sha256: list  # one hex digest per folder.files entry
    unreadable: dict  # path -> one-line reason

    def readable(self):
        """(paths, labels, digests) of the photos that decode."""
        keep = [i for i, p in enumerate(self.folder.files) if p not in self.unreadable]
        return ([self.folder.files[i] for i in keep], [self.folder.labels[i] for i in keep],
                [self.sha256[i] for i in keep])


def scan_photos(root, classes=None, progress=True, desc="checking photos", threads=None):
    """Hash and decode every photo under `root`, `threads` at a time (default: one per core, up to 8).

    Pillow's decoder and hashlib let go of the GIL, so threads share the work without extra processes.
    """
    folder = scan_class_folder(root, classes)
    threads = threads or min(8, cpu_count())
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(progress_bar(pool.map(check_photo, folder.files), progress, total=len(folder.files),
                                    desc=desc, unit="img", leave=False))
    digests = [digest for digest, _ in results]
    unreadable = {path: why for path, (_, why) in zip(folder.files, results) if why is not None}
    return PhotoScan(folder=folder, sha256=digests, unreadable=unreadable)


def check_photo(path):
    """(sha256 hex digest of the file, None) if it decodes, else (digest or "", one-line reason)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return "", f"cannot read: {err.strerror or err}"
    digest = hashlib.sha256(data).hexdigest()
    try:
        open_rgb(io.BytesIO(data))
    except UnreadableImage as err:
        return digest, str(err)
    return digest, None


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


def check_dataset(root, progress=True):
    """The `data check` report for a folder of class folders or a train/val layout of them."""
    root = require_folder(root)
    parts = ["train", "val"] if is_split_layout(root) else [""]
    classes = sorted(set().union(*(find_classes(root / part) for part in parts)))
    report = {"root": str(root), "layout": "train/val" if parts[0] else "class folders",
              "classes": classes, "counts": {}, "total": 0, "unreadable": [], "non_image": []}
    all_paths, all_digests = [], []
    for part in parts:
        scan = scan_photos(root / part, progress=progress)
        for name, n in scan.folder.counts().items():
            bad = sum(1 for p, lab in zip(scan.folder.files, scan.folder.labels)
                      if scan.folder.classes[lab] == name and p in scan.unreadable)
            report["counts"][f"{part}/{name}" if part else name] = n - bad
        report["unreadable"] += [{"path": str(p.relative_to(root)), "error": why}
                                 for p, why in scan.unreadable.items()]
        report["non_image"] += [str(p.relative_to(root)) for p in scan.folder.other_files]
        all_paths += scan.folder.files
        all_digests += scan.sha256
    report["total"] = sum(report["counts"].values())
    report.update(class_balance(report["counts"], classes))
    report["duplicates"] = duplicate_groups(all_paths, all_digests, root, depth=2 if parts[0] else 1)
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
    return "\n".join(lines)


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
