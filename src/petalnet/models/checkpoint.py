"""Checkpoints: written atomically, read with `torch.load(weights_only=True)` (no pickled code runs).

A checkpoint is a plain dict:
    format, version   "petalnet", 1
    meta              models/spec.py's InferenceSpec as a dict: model, classes, image_size, eval_resize,
                      mean, std, tta_flip: all a user needs
    model             the state_dict
    epoch, val_acc    when it was saved and how it scored
    config            the run's resolved config
  last.pt adds optimizer, scheduler, rng, history, best_acc, best_epoch (what --resume needs), and ema
  (the averaged weights) when the recipe keeps one; then `model` of best.pt holds the averaged weights.
The tutorial's AlexNet.pth + class_indices.json read as one too (models/tutorial.py).
"""

import pickle
import random
import zipfile
from pathlib import Path

import torch

from petalnet.errors import UserError, one_line
from petalnet.utils.fields import SettingError
from petalnet.utils.fileio import atomic_path
from petalnet.models.networks import build_model, for_inference, head_parameters
from petalnet.models.spec import FORMAT, VERSION, InferenceSpec
from petalnet.models.tutorial import tutorial_checkpoint, tutorial_files
from petalnet.models.weights import Weights, load_pretrained, read_weights



def save_checkpoint(path, state):
    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path):
    """Load a petalnet checkpoint onto the CPU, or raise UserError with one line; its "meta" becomes an
    InferenceSpec (models/spec.py)."""
    path = Path(path)
    tutorial = tutorial_files(path) if not (path / "best.pt").is_file() and path.suffix != ".pt" else None
    if tutorial:
        return tutorial_checkpoint(*tutorial)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise UserError(f"no such checkpoint: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise UserError(f"refusing to load {path}: it is not a plain weights file ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as err:
        reason = one_line(err, 160) or type(err).__name__
        raise UserError(f"cannot read checkpoint {path}: truncated or not a checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or not isinstance(ckpt.get("meta"), dict):
        raise UserError(f"{path} is not a petalnet checkpoint")
    return {**ckpt, "meta": InferenceSpec.from_dict(ckpt["meta"], str(path))}


def model_from_checkpoint(ckpt, path="checkpoint"):
    """Build the checkpoint's model and load its weights (wrapped for test-time flipping when its meta says
    so: models.for_inference); one clear line if they do not fit."""
    spec = ckpt["meta"]
    try:
        model = build_model(spec.model, len(spec.classes))
    except SettingError as err:  # not the --model flag here: the checkpoint names the model
        raise UserError(f"{path}: {err}") from None
    try:
        model.load_state_dict(ckpt["model"])
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
    return ckpt["model"], ckpt["meta"]


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
