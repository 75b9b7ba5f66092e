"""Checkpoints: written atomically, read with `torch.load(weights_only=True)` (no pickled code runs).

    ckpt = load_checkpoint("runs/seed")        # a run folder (its best.pt), a .pt file or the tutorial's files
    ckpt.spec, ckpt.weights, ckpt.epoch        # Checkpoint: typed; ckpt.state (TrainingState) for last.pt
    save_checkpoint(path, ckpt)

On disk a checkpoint is a plain dict, as 0.1 and 0.2.0 wrote it:
    format, version   "petalnet", 1
    meta              models/spec.py's InferenceSpec as a dict: model, classes, image_size, eval_resize,
                      mean, std, tta_flip: all a user needs
    model             the state_dict
    epoch, val_acc    when it was saved and how it scored
    config            the run's settings as one flat JSON object (config/run.py writes and reads it)
  last.pt adds optimizer, scheduler, rng, history, best_acc, best_epoch (what --resume needs), scaler and
  ema (the averaged weights' state) when the run has them; then `model` of best.pt holds the averaged weights.
The tutorial's AlexNet.pth + class_indices.json read as one too (models/tutorial.py).
"""

import pickle
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from petalnet.errors import UserError, one_line
from petalnet.utils.fields import SettingError
from petalnet.utils.fileio import atomic_path
from petalnet.models.networks import build_model, for_inference, head_parameters
from petalnet.models.spec import FORMAT, VERSION, InferenceSpec
from petalnet.models.tutorial import read_class_file, tutorial_files, tutorial_spec
from petalnet.models.weights import Weights, load_pretrained, read_weights

STATE_KEYS = ("optimizer", "scheduler", "rng", "history", "best_acc", "best_epoch")  # last.pt has them all


@dataclass(frozen=True)
class TrainingState:
    """What last.pt holds beside the weights: everything --resume restores."""
    optimizer: dict  # the optimizer's state_dict
    scheduler: dict
    rng: dict  # rng_state(): torch, python (and cuda) generators
    history: list  # one metrics row (a dict of config/run.py's METRIC_COLUMNS) per finished epoch
    best_acc: float
    best_epoch: int
    scaler: dict | None = None  # the fp16 gradient scaler's state (CUDA), else None
    ema: dict | None = None  # the weight average's state when the run keeps one


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read back: what a user needs (spec, weights) and how it came to be."""
    spec: InferenceSpec
    weights: dict  # the model's state_dict
    epoch: int | None = None  # the epoch it was saved after (None: not trained by petalnet)
    val_acc: float | None = None
    config: dict = field(default_factory=dict)  # the run's settings as saved (config/run.py reads them)
    state: TrainingState | None = None  # last.pt only

    def to_dict(self):
        """The file's layout (see the module docstring)."""
        saved = {"format": FORMAT, "version": VERSION, "meta": self.spec.to_dict(), "epoch": self.epoch,
                 "val_acc": self.val_acc, "config": self.config, "model": self.weights}
        if self.state is not None:
            saved.update({"optimizer": self.state.optimizer, "scheduler": self.state.scheduler,
                          "rng": self.state.rng, "scaler": self.state.scaler, "ema": self.state.ema,
                          "history": self.state.history, "best_acc": self.state.best_acc,
                          "best_epoch": self.state.best_epoch})
        return saved

    @classmethod
    def from_dict(cls, saved, path):
        """From a loaded file's dict; UserError (one line) when it is not a petalnet checkpoint."""
        if not isinstance(saved, dict) or saved.get("format") != FORMAT or not isinstance(saved.get("meta"), dict):
            raise UserError(f"{path} is not a petalnet checkpoint")
        state = None
        if all(key in saved for key in STATE_KEYS):
            state = TrainingState(**{key: saved[key] for key in STATE_KEYS}, scaler=saved.get("scaler"),
                                  ema=saved.get("ema"))
        return cls(spec=InferenceSpec.from_dict(saved["meta"], str(path)), weights=saved.get("model"),
                   epoch=saved.get("epoch"), val_acc=saved.get("val_acc"), config=saved.get("config") or {},
                   state=state)


def save_checkpoint(path, checkpoint):
    """Write `checkpoint` (a Checkpoint) to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint.to_dict(), tmp)


def load_checkpoint(path):
    """A Checkpoint read onto the CPU from a run folder (its best.pt), a .pt file or the tutorial's files;
    UserError with one line when it cannot be."""
    path = Path(path)
    tutorial = tutorial_files(path) if not (path / "best.pt").is_file() and path.suffix != ".pt" else None
    if tutorial:
        return tutorial_checkpoint(*tutorial)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise UserError(f"no such checkpoint: {path}")
    if path.suffix == ".onnx":  # evaluate and serve run the PyTorch network; predict also takes an .onnx
        raise UserError(f"{path} is an exported ONNX model: this command needs the run folder or its .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise UserError(f"refusing to load {path}: it is not a plain weights file ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as err:
        reason = one_line(err, 160) or type(err).__name__
        raise UserError(f"cannot read checkpoint {path}: truncated or not a checkpoint ({reason})") from None
    return Checkpoint.from_dict(ckpt, path)


def saved_epoch(path):
    """The epoch a checkpoint file was saved after, or None when it is missing or unreadable (its small
    pickled part alone is read: the weights stay memory-mapped)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]
    except Exception:  # noqa: BLE001 - no file yet, or unreadable: the caller says so, never fails here
        return None


def tutorial_checkpoint(weights, class_file):
    """The tutorial's AlexNet.pth + class_indices.json as a Checkpoint (models/tutorial.py)."""
    classes = read_class_file(class_file)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unreadable file is said in one line)
        raise UserError(f"cannot read {weights} ({one_line(err, 160)})") from None
    spec = tutorial_spec(state, classes, weights, class_file)
    return Checkpoint(spec=spec, weights=state,
                      config={"model": spec.model, "recipe": "seed", "source": "the tutorial's train.py"})


def model_from_checkpoint(ckpt, path="checkpoint"):
    """Build the checkpoint's model and load its weights (wrapped for test-time flipping when its meta says
    so: models.for_inference); one clear line if they do not fit."""
    spec = ckpt.spec
    try:
        model = build_model(spec.model, len(spec.classes))
    except SettingError as err:  # not the --model flag here: the checkpoint names the model
        raise UserError(f"{path}: {err}") from None
    try:
        model.load_state_dict(ckpt.weights)
    except (RuntimeError, KeyError, TypeError) as err:
        reason = one_line(err, 200)
        raise UserError(f"{path}: weights do not fit model '{spec.model}' with "
                        f"{len(spec.classes)} classes ({reason})") from None
    return for_inference(model, spec)


def starting_point(path):
    """(state dict, InferenceSpec or None) of the weights `train --init` starts from: a run folder, a
    petalnet checkpoint, the tutorial's files, or a plain state dict file (no spec)."""
    try:
        ckpt = load_checkpoint(path)
    except UserError:
        if not Path(path).is_file():
            raise
        return read_weights(Weights(source=str(path), file=str(path))), None
    return ckpt.weights, ckpt.spec


def load_starting_point(model, state, num_classes, path):
    """Load all of `state` into `model` (train --init); one line if the architecture or class count differ."""
    head = head_parameters(model, num_classes)
    for name in sorted(head):
        if name in state and state[name].shape[0] != num_classes:
            raise UserError(f"--init {path} has {state[name].shape[0]} classes, these photos {num_classes}: "
                            "--pretrained WEIGHTS_FILE trains a new head on its body instead")
    load_pretrained(model, state, set(), f"--init {path}")


def rng_state():
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
