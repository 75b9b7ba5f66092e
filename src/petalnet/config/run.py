"""The run folder and the record a run keeps of itself: every file `train` writes is written here, and
every reader (resume, evaluate, export, serve, compare, the Makefile's demo) reads it through here, runs
of older versions included. Torch-free; each file is written atomically (utils/fileio.py).

    folder = RunFolder("runs/seed")
    record = folder.read_record()          # RunRecord: config (TrainConfig), facts (RunFacts), photos, machine
    split = folder.read_split()            # data/split.py's Split, or None (a train/val layout)
    history = folder.read_metrics()        # metrics.csv: one row (a dict of METRIC_COLUMNS) per epoch

    RUN/best.pt               weights with the best val accuracy (+ meta: classes, model, transform)
    RUN/last.pt               everything --resume needs (optimizer, scheduler, epoch, RNG, history)
    RUN/class_indices.json    {"0": "daisy", ...}, the tutorial's format
    RUN/config.json           the resolved settings, the photos found, device and environment (RunRecord)
    RUN/metrics.csv           one row per epoch
    RUN/curves.png            loss and accuracy per epoch
    RUN/split.json            which photos went to train and val (when petalnet split the folder)
    RUN/logs/rank-K.log       under torchrun: each process's log (training/ranklogs.py)

Settings are saved as one flat JSON object (TrainConfig's fields, then RunFacts'), in config.json and in
every checkpoint's `config`, as 0.2.0 did. Older runs lack newer keys: they trained with what those keys
mean when off, and 0.1 runs with the pil pipeline (settings_from_saved).
"""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from petalnet.config.train import TrainConfig
from petalnet.data.split import Split
from petalnet.errors import StorageError, UserError, describe_os_error, one_line
from petalnet.utils.fields import from_dict, to_dict
from petalnet.utils.fileio import write_json, write_text

METRIC_COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "lr", "image_size", "eval_image_size",
                  "epoch_seconds", "train_images_per_s", "elapsed_s"]
MULTILABEL_COLUMNS = ["val_map"]  # a multi-label run's metrics.csv has them too (macro mean average precision)
RUN_FILES = ["best.pt", "last.pt", "class_indices.json", "config.json", "metrics.csv", "curves.png",
             "split.json"]


@dataclass(frozen=True)
class RunFacts:
    """What a run found, beside what it was told: saved with its settings."""
    data: str  # the photos' folder, absolute
    layout: str  # "class folders" (split by petalnet) or "train/val"
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Machine:
    """Where and with what a run was trained (config.json; for the reader, never read back to train)."""
    device: str = ""  # "cpu (2 threads)", "cuda:0 (NVIDIA H200)", ...
    processes: int = 1
    device_settings: dict = field(default_factory=dict)  # devices/settings.py's DeviceSettings, with `why`
    petalnet: str = ""
    torch: str = ""
    torchvision: str = ""
    python: str = ""
    written: str = ""  # UTC, ISO 8601


@dataclass(frozen=True)
class RunRecord:
    """config.json: the run's settings, what it found, and where it ran."""
    config: TrainConfig
    facts: RunFacts
    num_train: int = 0
    num_val: int = 0
    left_out: tuple[dict, ...] = ()  # {"path", "error"}: unreadable photos left out
    machine: Machine = Machine()

    def to_dict(self):
        """config.json's layout (0.2.0's): the flat settings, then the rest."""
        saved = saved_settings(self.config, self.facts)
        machine = to_dict(self.machine)
        return {**saved, "num_train": self.num_train, "num_val": self.num_val, "left_out": list(self.left_out),
                "device": machine.pop("device"), "processes": machine.pop("processes"),
                "device_settings": machine.pop("device_settings"), "config_keys": sorted(saved), **machine}

    @classmethod
    def from_dict(cls, saved, source="config.json"):
        """From config.json's dict, of this version or an older one; UserError when it is not a run's."""
        config, facts = settings_from_saved(saved, source)
        return cls(config=config, facts=facts, num_train=saved.get("num_train", 0), num_val=saved.get("num_val", 0),
                   left_out=tuple(saved.get("left_out", ())), machine=from_dict(Machine, saved))


def saved_settings(config, facts):
    """The settings as config.json and checkpoints keep them: one flat JSON object (0.2.0's format)."""
    return {**to_dict(config), **to_dict(facts)}


def settings_from_saved(saved, source="run"):
    """(TrainConfig, RunFacts) from saved settings of this version or an older one. Runs of older versions
    lack newer keys: the seed recipe's values (all off) are what they trained with, and before the cache
    pipeline existed (0.1) they read photos the pil way. Unchecked: a resumed run checks it."""
    try:
        old_run = TrainConfig(recipe=saved.get("recipe", "seed"), pipeline="pil",
                              cache_size=round(saved["image_size"] * 8 / 7))
        config = from_dict(TrainConfig, saved, defaults=old_run)
        facts = RunFacts(data=saved["data"], layout=saved["layout"], classes=tuple(saved["classes"]))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UserError(f"{source} does not hold a run's settings ({one_line(err, 80)} missing or wrong)") from None
    return config, facts


def saved_facts(saved):
    """The RunFacts of saved settings, or None where they are not recorded (the tutorial's files)."""
    try:
        return RunFacts(data=saved["data"], layout=saved["layout"], classes=tuple(saved["classes"]))
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class TrainingSummary:
    """How a checkpoint came to be, as far as it says (serve's GET /model; None: not recorded)."""
    recipe: str | None
    epochs: int | None
    pipeline: str | None  # None before 0.2 (one pipeline, unnamed)
    best_epoch: int | None
    val_acc: float | None

    @classmethod
    def of(cls, checkpoint):
        """From a models/checkpoint.py Checkpoint (its saved settings may be partial: old runs, the tutorial)."""
        saved = checkpoint.config
        return cls(recipe=saved.get("recipe"), epochs=saved.get("epochs"), pipeline=saved.get("pipeline"),
                   best_epoch=checkpoint.epoch, val_acc=checkpoint.val_acc)


class RunFolder:
    """A run folder: its files' paths, and each file written and read here."""

    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    def __truediv__(self, name):
        return self.path / name

    @property
    def best(self):
        return self.path / "best.pt"

    @property
    def last(self):
        return self.path / "last.pt"

    @classmethod
    def of_model(cls, model_path):
        """The run folder of a run folder or of a checkpoint file in it."""
        model_path = Path(model_path)
        return cls(model_path if model_path.is_dir() else model_path.parent)

    def check(self, resume, overwrite):
        """Refuse to clobber an existing run silently, or to resume nothing. Writes nothing."""
        run = self.path
        if resume and overwrite:
            raise UserError("--resume and --overwrite contradict each other: pick one")
        if run.exists() and not run.is_dir():
            raise UserError(f"--out {run} is a file, not a folder")
        if resume:
            if not self.last.is_file() and not (run / "config.json").is_file():
                raise UserError(f"nothing to resume: {self.last} does not exist")
            return
        if run.is_dir() and any(not _is_temp(p) for p in run.iterdir()) and not overwrite:
            raise UserError(f"{run} already holds a run: pass --resume to continue it or --overwrite to replace it")

    def prepare(self, overwrite):
        """Create the folder; clear the old run's files (--overwrite) and temp files a kill left behind."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if overwrite:
                for name in RUN_FILES:
                    (self.path / name).unlink(missing_ok=True)
            for name in RUN_FILES:
                for stale in self.path.glob(f".{name}.*.tmp"):
                    stale.unlink(missing_ok=True)
        except OSError as err:
            raise StorageError(f"cannot prepare run folder {self.path}: {describe_os_error(err)}") from None
        return self

    def write_record(self, record, classes, split=None):
        """config.json, class_indices.json and (when petalnet split the photos) split.json."""
        write_json(self.path / "class_indices.json", {str(i): name for i, name in enumerate(classes)})
        if split is not None:
            write_json(self.path / "split.json", split.to_dict())
        write_json(self.path / "config.json", record.to_dict())

    def read_record(self):
        """config.json as a RunRecord; UserError when it is missing or not a run's."""
        return RunRecord.from_dict(self._read_json("config.json"), str(self.path / "config.json"))

    def unfinished_settings(self):
        """(TrainConfig, RunFacts) of a run stopped before its first epoch ended (config.json, no last.pt)."""
        try:
            saved = self._read_json("config.json")
            return settings_from_saved({key: saved[key] for key in saved["config_keys"]})
        except (UserError, KeyError, TypeError):
            raise UserError(f"nothing to resume: {self.last} does not exist and {self.path / 'config.json'} "
                            "is unreadable") from None

    def read_split(self):
        """split.json as a Split, or None when the run has none (a train/val layout)."""
        path = self.path / "split.json"
        if not path.is_file():
            return None
        try:
            return Split.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"cannot read {path} ({one_line(err, 120)}): the run's split is lost") from None

    def write_metrics(self, history):
        buffer = io.StringIO()
        columns = METRIC_COLUMNS + [key for key in MULTILABEL_COLUMNS if any(key in row for row in history)]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: _fmt(row.get(k, "")) for k in columns})  # older runs lack some
        write_text(self.path / "metrics.csv", buffer.getvalue())

    def read_metrics(self):
        """metrics.csv's rows, each a dict of its columns' numbers (None where empty or not a number), and
        the columns it has (older runs lack some)."""
        with open(self.path / "metrics.csv", newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [{key: _number(value) for key, value in row.items() if key} for row in reader]
            return rows, list(reader.fieldnames or [])

    def read_summary(self):
        """(recipe, model) as config.json names them, None where it does not (compare's lenient read)."""
        saved = self._read_json("config.json")
        if not isinstance(saved, dict):
            raise UserError(f"{self.path} is not a run folder: its config.json is not a JSON object")
        return tuple(value if isinstance(value, str) else None for value in (saved.get("recipe"), saved.get("model")))

    def _read_json(self, name):
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{self.path} is not a run folder: it has no {name}") from None
        except (OSError, UnicodeError, ValueError) as err:
            raise UserError(f"{path} is unreadable ({one_line(err, 120)})") from None


def _is_temp(path):
    """A temp file an interrupted atomic write left behind (fileio.atomic_path names them .NAME.*.tmp)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def _number(text):
    """A metrics.csv cell as a float (None when empty or not a number)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
