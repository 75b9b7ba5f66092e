"""The settings of `petalnet data get`, `data check` and `data split`, declared once: the flags come from
these fields (utils/fields.py), and so do the bounds the Python API checks. Torch-free.

    run_get(GetSettings(dest="/data"))                                     # data/download.py
    run_check(CheckSettings(dir="photos/", near_threshold=0.95))           # data/check.py
    run_split(SplitSettings(src="photos/", out="data/flowers", val_fraction=0.2))   # data/split.py
"""

import argparse
from dataclasses import dataclass

from petalnet.data.near_duplicates import DEFAULT_THRESHOLD
from petalnet.utils.fields import PlainValues, setting, setting_like


def threshold_or_off(text):
    """--near-threshold's text: a number (its bounds: the field's) or None for "off"."""
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a similarity in (0, 1] nor off") from None


@dataclass(frozen=True)
class GetSettings(PlainValues):
    """`petalnet data get`: fetch flower_photos (or unpack an archive you have) and check it."""
    source: str | None = setting(None, "URL or local .tgz (default: the official archive)")
    dest: str | None = setting(None, "folder to put it in (default: $PETALNET_HOME or ~/.cache/petalnet)")


@dataclass(frozen=True)
class CheckSettings(PlainValues):
    """`petalnet data check`: count photos, find unreadable files, exact and near duplicates."""
    dir: str | None = setting(None, "class folders, train/val layout, manifest (.csv, .tsv, .jsonl) or archive (.zip, "
                              ".tar, .tar.gz) of them (default: $PETALNET_DATA)", positional="?")
    label_column: str | None = setting(None, "a manifest's column of labels (default: label, else labels; a "
                                       "metadata.csv without one: each photo's folder)", metavar="NAME")
    allow_paths_outside: bool = setting(False, "a manifest may name photos outside its folder (absolute paths, ..)",
                                        switch=True)
    json: bool = setting(False, "print one JSON object", switch=True)
    near_threshold: float | None = setting(
        DEFAULT_THRESHOLD, "photos this similar (0-1] are near-duplicates: resized, recompressed, cropped by a few "
        "percent, flipped or grey copies score ~0.95-1; off: do not look for them (byte-identical copies only)",
        above=0, at_most=1, metavar="T", parse=threshold_or_off)
    pairs_picture: str | None = setting(None, "draw the near-duplicate pairs found (.png, .jpg, .pdf, .svg), the "
                                        "least similar first", metavar="FILE")


@dataclass(frozen=True)
class SplitSettings(PlainValues):
    """`petalnet data split`: a train/val layout of hard links, stratified, reproducible, leak-free."""
    src: str | None = setting(None, "class folders, manifest or archive (default: $PETALNET_DATA)", positional="?")
    out: str = setting(None, "new folder for train/ and val/", required=True)
    val_fraction: float = setting(0.1, "fraction of each class held out for val", above=0, below=1)
    seed: int = setting(0, "random seed of the split")
    near_threshold: float | None = setting_like(CheckSettings, "near_threshold", help=(
        "near-duplicates (similarity (0-1]) stay on one side of the split; off: byte-identical copies only"))
    label_column: str | None = setting_like(CheckSettings, "label_column")
    allow_paths_outside: bool = setting_like(CheckSettings, "allow_paths_outside")
