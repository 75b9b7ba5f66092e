"""The tutorial's own files as a petalnet model, with no conversion step.

The tutorial's train.py (WZMIAOMIAO deep-learning-for-image-processing, Test2_alexnet) writes
`AlexNet.pth` (the state dict of its half-width AlexNet, key for key petalnet's alexnet_half) and
`class_indices.json` ({"0": "daisy", "1": "dandelion", ...}: output index -> class name). A folder
holding both, or the .pth with the class file beside it, reads as a checkpoint whose InferenceSpec is
the tutorial's predict.py: Resize((224, 224)) (squash), ToTensor, Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).

    petalnet predict tutorial_folder/ photo.jpg
    petalnet train --init tutorial_folder/ --data my_photos/      # its weights as a starting point
"""

import json
from pathlib import Path

from petalnet.errors import UserError, one_line
from petalnet.models.spec import InferenceSpec

CLASS_FILE = "class_indices.json"
WEIGHTS_FILE = "AlexNet.pth"
HEAD = "classifier.6.weight"  # the last Linear of the tutorial's AlexNet: its rows are the classes


def tutorial_files(path):
    """(weights, class file) if `path` is the tutorial's folder or its .pth with the class file beside it."""
    path = Path(path)
    folder, weights = (path, path / WEIGHTS_FILE) if path.is_dir() else (path.parent, path)
    classes = folder / CLASS_FILE
    if path.is_dir() and not weights.is_file():
        found = sorted(folder.glob("*.pth"))
        weights = found[0] if len(found) == 1 else weights
    return (weights, classes) if weights.is_file() and classes.is_file() else None


def read_class_file(path):
    """Class names in output order from the tutorial's class_indices.json; one line if it is malformed."""
    try:
        indices = json.loads(Path(path).read_text())
        order = sorted(indices, key=int)
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"cannot read {path}: expected {{\"0\": \"daisy\", ...}} ({one_line(err, 120)})") from None
    if [int(k) for k in order] != list(range(len(order))) or not all(isinstance(indices[k], str) for k in order):
        raise UserError(f"{path} must map the indices 0..N-1 to class names, got keys {order[:6]}")
    return tuple(indices[k] for k in order)


def tutorial_spec(state, classes, weights, class_file):
    """The InferenceSpec of the tutorial's weights `state` (a state dict) and `classes`; one line when the
    file is not the tutorial's AlexNet or the class file does not fit it."""
    if not isinstance(state, dict) or HEAD not in state:
        raise UserError(f"{weights} is not the tutorial's AlexNet state dict (no {HEAD})")
    outputs = state[HEAD].shape[0]
    if outputs != len(classes):
        raise UserError(f"{class_file} names {len(classes)} classes but {weights.name} has {outputs} outputs")
    return InferenceSpec(model="alexnet_half", classes=classes, image_size=224, eval_resize="squash",
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
