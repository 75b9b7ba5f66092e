"""An exported .onnx model classifying photos with ONNX Runtime, Pillow and NumPy: no PyTorch imported.

    petalnet predict model.onnx photo.jpg          # reads model.onnx.json beside it: classes, size, mean, std

Preprocessing is the checkpoint's eval transform done with Pillow's antialiased bilinear resize
(PyTorch's path uses torch's, which follows Pillow's within a grey level or so).
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from petalnet.errors import UserError
from petalnet.images import UnreadableImage, eval_size, open_photo


def sidecar_path(model_path):
    """model.onnx -> model.onnx.json (the eval transform and classes written by `petalnet export`)."""
    return Path(str(model_path) + ".json")


class OnnxClassifier:
    def __init__(self, session, meta):
        self.session, self.meta = session, meta
        self.input_name = session.get_inputs()[0].name

    @property
    def classes(self):
        return list(self.meta["classes"])

    def preprocess(self, source):
        """A path or PIL image -> float32 (3, S, S), normalized as the checkpoint's eval transform."""
        image = open_photo(source)
        (height, width), crop = eval_size(image.height, image.width, self.meta)
        image = image.resize((width, height), Image.BILINEAR)
        if crop is not None:
            top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
            image = image.crop((left, top, left + crop, top + crop))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.meta["mean"], np.float32)) / np.asarray(self.meta["std"], np.float32)
        return array.transpose(2, 0, 1)

    def logits(self, batch):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def iter_predict(self, inputs, topk=3, batch_size=64, workers=0, thumbnails=False, explain=False):
        """Yield (record, None, None) per input, in order: the records of Classifier.iter_predict."""
        if topk < 1 or batch_size < 1:
            raise UserError("--topk and --batch-size must be at least 1")
        inputs, k = list(inputs), min(topk, len(self.classes))
        for start in range(0, len(inputs), batch_size):
            chunk, arrays, errors = inputs[start:start + batch_size], {}, {}
            for i, source in enumerate(chunk):
                try:
                    arrays[i] = self.preprocess(source)
                except UnreadableImage as err:
                    errors[i] = str(err)
            probs = _softmax(self.logits(np.stack(list(arrays.values())))) if arrays else []
            top = dict(zip(arrays, (self._top(row, k) for row in probs)))
            for i, source in enumerate(chunk):
                path = None if isinstance(source, Image.Image) else str(source)
                record = {"path": path, "error": errors[i]} if i in errors else {"path": path, "top": top[i]}
                yield record, None, None

    def _top(self, probs, k):
        order = np.argsort(-probs, kind="stable")[:k]
        return [{"class": self.classes[j], "prob": round(float(probs[j]), 4)} for j in order]


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def load_onnx_classifier(model_path):
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"no such model: {model_path}")
    meta_path = sidecar_path(model_path)
    try:
        meta = json.loads(meta_path.read_text())
        meta["classes"], meta["image_size"]  # noqa: B018 - both must be there
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{meta_path} is missing or unreadable: it must sit beside {model_path.name} "
                        "(petalnet export writes both)") from None
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX Runtime is not installed: pip install onnxruntime") from None
    try:
        session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for bad files
        raise UserError(f"cannot load {model_path} with ONNX Runtime ({' '.join(str(err).split())[:160]})") from None
    return OnnxClassifier(session, meta)
