"""The settings of `petalnet predict`, `evaluate` and `export`, declared once: the flags come from these
fields (utils/fields.py's add_flags), and so do their help, defaults, choices and bounds. Torch-free, so
that `petalnet --help` does not wait for PyTorch.

    run_predict(PredictSettings(model="runs/seed", paths=("photos/",), topk=5, json=True))
    run_evaluate(EvaluateSettings(model="runs/seed", data="new/"))
    run_export(ExportSettings(model="runs/seed", out="model.onnx", quantize="int8"))

Each command checks its settings once (check_fields) before it reads a photo or writes a file; an API that
takes one of them as an argument (Classifier.predict's topk) checks it against the same field
(check_setting). Paths may be given as str or os.PathLike; they are kept as str.
"""

import dataclasses
from dataclasses import dataclass

from petalnet.devices.options import device_setting
from petalnet.data.settings import CheckSettings
from petalnet.utils.fields import PlainValues, setting, setting_like

FORMATS = ("onnx", "torchscript")
QUANTIZE = ("int8",)
REQUIRED = dataclasses.MISSING  # a field without a default: the API and the command line must give it


@dataclass(frozen=True)
class PredictSettings(PlainValues):
    """What `petalnet predict` classifies, with what, and what it writes besides one line per photo."""
    model: str = setting(REQUIRED, "run folder (uses its best.pt), checkpoint file, or exported .onnx",
                         positional=1)
    paths: tuple[str, ...] = setting(REQUIRED, "image files and/or folders (searched recursively)",
                                     positional="+")
    topk: int = setting(3, "classes per photo (a multi-label model gives its label set and every class)", at_least=1)
    json: bool = setting(False, "one JSON object per line", switch=True)
    plot: str | None = setting(None, "save the photos titled with their prediction", metavar="OUT.png")
    explain: str | None = setting(None, "save a Grad-CAM heat map over each photo here", metavar="OUT_DIR")
    csv: str | None = setting(None, "also write one row per photo here (spreadsheet-safe)", metavar="FILE")
    overwrite: bool = setting(False, "replace an existing --csv file", switch=True)
    sort_into: str | None = setting(None, "hard-link (else copy) each photo to DIR/<class>/; originals are "
                                    "never changed", metavar="DIR")
    min_prob: float | None = setting(None, "with --sort-into: photos whose top probability is below P go to "
                                     "DIR/_unsure (default 0; single-label models: a multi-label one's thresholds "
                                     "decide)", at_least=0, at_most=1, metavar="P")
    device: str = device_setting()
    batch_size: int = setting(64, "photos per batch", at_least=1)
    workers: int = setting(0, "threads that decode the next batch while the model scores one; 0: one beside a "
                           "checkpoint, every core beside an .onnx file", at_least=0)


@dataclass(frozen=True)
class EvaluateSettings(PlainValues):
    """Which model `petalnet evaluate` scores, on which labelled photos, and where the report goes."""
    model: str = setting(REQUIRED, "run folder (uses its best.pt) or checkpoint file", positional=1)
    data: str | None = setting(None, "class folders, a train/val layout (its val/), a manifest (its test rows, else "
                               "its val rows, else all) or an archive; default: the run's val")
    label_column: str | None = setting_like(CheckSettings, "label_column")
    allow_paths_outside: bool = setting_like(CheckSettings, "allow_paths_outside")
    out: str | None = setting(None, "folder for report.json and pictures (default: RUN/eval-<name>/)")
    json: bool = setting(False, "print the report as one JSON object", switch=True)
    top_losses: int = setting(0, "also show the N photos with the highest loss (top_losses.png, the JSON's "
                              "top_losses) and the most-confused class pairs: where wrong labels are found first",
                              at_least=0, metavar="N")
    device: str = device_setting()
    batch_size: int = setting(64, "photos per batch", at_least=1)
    workers: int = setting(0, "decoding processes", at_least=0)


@dataclass(frozen=True)
class ExportSettings(PlainValues):
    """What `petalnet export` writes, and the photos its parity check (and int8 calibration) reads."""
    model: str = setting(REQUIRED, "run folder (uses its best.pt) or checkpoint file", positional=1)
    out: str = setting(REQUIRED, "file to write (a .json with classes and transform beside it)")
    format: str = setting("onnx", "file format", choices=FORMATS)
    check_photos: str | None = setting(None, "photos for the parity check (default: the run's val photos)",
                                       metavar="DIR")
    quantize: str | None = setting(None, "int8 weights and activations (ONNX Runtime, static): smaller and "
                                   "faster on CPUs", choices=QUANTIZE)
    calibration_photos: str | None = setting(None, "photos that set the int8 ranges (default: 256 of the run's "
                                             "train photos)", metavar="DIR")


@dataclass(frozen=True)
class IssuesSettings(PlainValues):
    """What `petalnet data issues` looks through, where its probabilities come from, and where it writes."""
    data: str = setting(REQUIRED, "class folders, manifest (.csv, .tsv, .jsonl) or archive of them (not a train/val "
                        "layout)", positional=1, metavar="DATA")
    out: str = setting(REQUIRED, "new folder for issues.csv, issues.jpg and corrected.csv (DATA is never touched)",
                       metavar="DIR")
    label_column: str | None = setting_like(CheckSettings, "label_column")
    allow_paths_outside: bool = setting_like(CheckSettings, "allow_paths_outside")
    folds: int = setting(5, "each photo's probabilities come from a model that did not see it: K folds",
                         at_least=2, at_most=20, metavar="K")  # data/folds.py MAX_FOLDS
    from_run: str | None = setting(None, "take the out-of-fold probabilities of this 'train --folds K' run "
                                   "(default: a logistic regression on ImageNet features, one pass over the photos)",
                                   metavar="RUN", aliases=("--from",))
    recipe: str | None = setting(None, "train K folds of this recipe into DIR/folds first and use their "
                                 "probabilities (K trainings: slow; resumed when DIR/folds is there)")
    show: int = setting(30, "photos in issues.jpg, most likely first", at_least=0, metavar="N")
    seed: int = setting(0, "which photos go to which fold", at_least=0)
    device: str = device_setting()
    overwrite: bool = setting(False, "replace DIR's issues.csv, issues.jpg and corrected.csv", switch=True)
