"""An exported .onnx model as an inference backend (backend.py): ONNX Runtime, Pillow and NumPy, no PyTorch.

    petalnet predict model.onnx photo.jpg          # reads model.onnx.json beside it: classes, size, mean, std
    backend = load_onnx_backend("model.onnx")

Preprocessing is pipeline/preprocess.py's eval_array: the checkpoint's eval transform done with Pillow
and NumPy. No heat maps (Grad-CAM needs the PyTorch network). The file holds the network's logits; a
multi-label model's sidecar says so (task, thresholds) and backend.py's probabilities gives its sigmoids.
"""

import json
from pathlib import Path

import numpy as np

from petalnet.errors import UserError, one_line
from petalnet.inference.backend import Backend
from petalnet.models.spec import InferenceSpec
from petalnet.pipeline.preprocess import eval_array
from petalnet.utils.cores import cpu_count


def sidecar_path(model_path):
    """model.onnx -> model.onnx.json (the eval transform and classes written by `petalnet export`)."""
    return Path(str(model_path) + ".json")


class OnnxBackend(Backend):
    """An ONNX file in an ONNX Runtime session (CPU), with the InferenceSpec of its sidecar JSON."""

    name = "an .onnx file"

    def __init__(self, session, spec):
        self.session, self.spec = session, spec  # InferenceSpec (models/spec.py), from model.onnx.json
        self.input_name = session.get_inputs()[0].name
        self.decoding_threads = cpu_count()  # ONNX Runtime leaves room: the next batch decodes on every core

    def prepare(self, image):
        """A decoded RGB PIL image -> float32 (3, S, S), normalized as the checkpoint's eval transform."""
        return eval_array(image, self.spec)

    def logits(self, prepared):
        batch = np.ascontiguousarray(np.stack(list(prepared)), dtype=np.float32)
        return self.session.run(None, {self.input_name: batch})[0]


def load_onnx_backend(model_path):
    """The backend of an exported .onnx file and the model.onnx.json beside it."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"no such model: {model_path}")
    meta_path = sidecar_path(model_path)
    try:
        spec = InferenceSpec.from_dict(json.loads(meta_path.read_text()), str(meta_path))
    except (OSError, ValueError, UserError):
        raise UserError(f"{meta_path} is missing or unreadable: it must sit beside {model_path.name} "
                        "(petalnet export writes both)") from None
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX Runtime is not installed: pip install onnxruntime") from None
    try:
        session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for bad files
        raise UserError(f"cannot load {model_path} with ONNX Runtime ({one_line(err, 160)})") from None
    return OnnxBackend(session, spec)
