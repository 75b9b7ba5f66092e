"""Folds for k-fold cross-validation (`petalnet train --folds K`, training/folds.py): every readable photo is in
the val part of exactly one of K Splits, each class spread evenly over the folds, near-duplicates in one fold.

    splits = make_folds("photos/", 5, seed=0)       # [Split, ...]: splits[i].val is fold i + 1, train the rest
    splits[0].fold, splits[0].folds                 # 1, 5
    folds = fold_photos("photos/", 5, seed=0)       # Folds: the photos once, each with its fold (folds.json)
    folds.split(2)                                  # the second fold's Split, the same as splits[1]

How photos are put in folds. The photos are read once (data/split.py's scan_source: the same scan, near-duplicate
search and left-out rows as make_split). Photos that share a key (group_keys: byte-identical copies and
near-duplicate groups, similarity >= near_threshold) are one unit and land in the same fold, even when the copies
were given different labels: make_split keeps such a group in train, but here every photo must be out of fold
once. Units are placed one at a time, the rarest class's first (larger units first, then in the seed's hashed
order, which does not depend on names or listing order): each goes to the fold that lacks most of its rarest
class, then of its label combination (multi-label photos), then of all its classes, then of photos (lowest fold
on a tie). So each class's photos spread evenly over the folds, within a photo per fold when no unit holds
more than one photo. A manifest's test rows stay test rows in every fold, never in train or val; its split
column's train and val are ignored (the folds decide). K is 2 to 20, and at most the readable photos of the
smallest class.
"""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

from petalnet.data.near_duplicates import DEFAULT_THRESHOLD
from petalnet.data.split import Split, as_source, group_keys, scan_source, seeded_rank
from petalnet.errors import UserError
from petalnet.utils.fields import SettingError

MAX_FOLDS = 20


@dataclass(frozen=True)
class Folds:
    """The photos of k-fold cross-validation: `photos` is a Split with every photo that goes into a fold in its
    val (listing order), nothing in train, `folds` set; `fold_of[i]` is the fold (1..k) of photos.val[i]."""
    photos: Split
    fold_of: tuple[int, ...]

    @property
    def k(self):
        return self.photos.folds

    def split(self, fold):
        """Fold `fold`'s Split (1..k): its photos in val, the other folds' in train, both in listing order."""
        pairs = list(zip(self.photos.val, self.fold_of))
        return replace(self.photos, train=tuple(pair for pair, f in pairs if f != fold),
                       val=tuple(pair for pair, f in pairs if f == fold), fold=fold)

    def splits(self):
        return [self.split(fold) for fold in range(1, self.k + 1)]

    def to_dict(self):
        """split.json's layout of `photos`, and each val photo's fold under "fold_of"."""
        return {**self.photos.to_dict(), "fold_of": list(self.fold_of)}

    @classmethod
    def from_dict(cls, saved):
        """From to_dict's dict (KeyError/TypeError/ValueError when it is not one)."""
        photos, fold_of = Split.from_dict(saved), tuple(int(fold) for fold in saved["fold_of"])
        if not photos.folds or len(fold_of) != len(photos.val) or not set(fold_of) <= set(range(1, photos.folds + 1)):
            raise ValueError("fold_of does not match the photos")
        return cls(photos, fold_of)


def check_folds(k):
    """K of k-fold cross-validation: 2 to MAX_FOLDS (a SettingError naming `folds`, --folds on the command line)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= MAX_FOLDS:
        raise SettingError("folds", f"{{}} must be from 2 to {MAX_FOLDS} (0: no cross-validation), got {k!r}")


def make_folds(source, k, seed, near_threshold=DEFAULT_THRESHOLD, progress=True):
    """The K Splits of `source` (a folder of class folders, or a DataSource of class folders or a manifest): fold
    i's val is the i-th fold, its train the other folds (see the module docstring)."""
    return fold_photos(source, k, seed, near_threshold, progress).splits()


def fold_photos(source, k, seed=0, near_threshold=DEFAULT_THRESHOLD, progress=True):
    """The Folds of `source`: its photos read once and each (but a manifest's test rows) given a fold."""
    check_folds(k)
    source = as_source(source)
    if source.kind == "train/val":
        raise UserError(f"--folds makes its own folds: {source.root} is split already (train/ and val/); give "
                        "a folder of class folders or a manifest")
    scanned = scan_source(source, near_threshold, progress, split_column=False)
    inside = [i for i, part in enumerate(scanned.parts or [None] * len(scanned.paths)) if part != "test"]
    scanned.check_class_sizes(k, f"--folds {k} needs at least {k}, one in each fold's val", inside)
    groups = scanned.near_groups(near_threshold)
    keys = group_keys(scanned.digests, groups)
    label_sets = [tuple(labels) if scanned.multilabel else (labels,) for labels in scanned.labels]
    fold_of = assign_folds([label_sets[i] for i in inside], [keys[i] for i in inside], k, seed)
    if len(set(fold_of)) < k:
        raise UserError(f"{scanned.source.describe()} has {len(set(keys[i] for i in inside))} photo(s) or groups of "
                        f"copies outside test: --folds {k} needs one for each fold")
    inside_set = set(inside)
    kept = sum(any(i in inside_set for i in group) for group in groups)
    photos = scanned.split([], inside, val_fraction=None, seed=seed, near_threshold=near_threshold,
                           near_duplicate_groups=kept, folds=k)
    return Folds(photos, tuple(fold_of))


def assign_folds(label_sets, keys, k, seed):
    """Each photo's fold (1..k), given its labels (a tuple of class indices; empty: none) and its key: photos
    that share a key go together (see the module docstring for the order and the choice of fold)."""
    units = defaultdict(list)
    for i, key in enumerate(keys):
        units[key].append(i)
    counts = Counter(label for labels in label_sets for label in labels)
    combos = Counter(label_sets)
    want = [{label: n / k for label, n in counts.items()} for _ in range(k)]
    want_combo = [{combo: n / k for combo, n in combos.items()} for _ in range(k)]
    room = [len(label_sets) / k] * k

    def rarest(key):
        return min(((counts[label], label) for i in units[key] for label in label_sets[i]), default=(math.inf, -1))

    fold_of = [0] * len(label_sets)
    for key in sorted(units, key=lambda key: (rarest(key), -len(units[key]), seeded_rank(seed, key))):
        members, (_, label) = units[key], rarest(key)
        classes = Counter(c for i in members for c in label_sets[i])
        kinds = Counter(label_sets[i] for i in members)
        fold = max(range(k), key=lambda f: (want[f].get(label, 0), sum(want_combo[f][c] * n for c, n in kinds.items()),
                                            sum(want[f][c] * n for c, n in classes.items()), room[f], -f))
        for c, n in classes.items():
            want[fold][c] -= n
        for combo, n in kinds.items():
            want_combo[fold][combo] -= n
        room[fold] -= len(members)
        for i in members:
            fold_of[i] = fold + 1
    return fold_of
