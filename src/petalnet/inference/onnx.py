"""An exported .onnx model classifying photos with ONNX Runtime, Pillow and NumPy: no PyTorch imported.

    petalnet predict model.onnx photo.jpg          # reads model.onnx.json beside it: classes, size, mean, std

Preprocessing is pipeline/preprocess.py's eval_array: the checkpoint's eval transform done with Pillow
and NumPy.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from petalnet.errors import UserError, one_line
from petalnet.data.images import UnreadableImage
from petalnet.models.spec import InferenceSpec
from petalnet.pipeline.preprocess import eval_array, open_eval_photo
from petalnet.utils.cores import cpu_count
from petalnet.utils.fields import check_number


def sidecar_path(model_path):
    """model.onnx -> model.onnx.json (the eval transform and classes written by `petalnet export`)."""
    return Path(str(model_path) + ".json")


class OnnxClassifier:
    def __init__(self, session, spec):
        self.session, self.spec = session, spec  # InferenceSpec (models/spec.py), from model.onnx.json
        self.input_name = session.get_inputs()[0].name

    @property
    def classes(self):
        return list(self.spec.classes)

    def preprocess(self, source):
        """A path or PIL image -> float32 (3, S, S), normalized as the checkpoint's eval transform."""
        return eval_array(open_eval_photo(source, self.spec.image_size, self.spec.eval_resize), self.spec)

    def logits(self, batch):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def iter_predict(self, inputs, topk=3, batch_size=64, workers=0, thumbnails=False, explain=False):
        """Yield (record, None, None) per input, in order: the records of Classifier.iter_predict. The next
        batch's photos are decoded on every core while ONNX Runtime classifies this one."""
        check_number("topk", topk, at_least=1)
        check_number("batch_size", batch_size, at_least=1)
        inputs, k = list(inputs), min(topk, len(self.classes))
        chunks = [inputs[start:start + batch_size] for start in range(0, len(inputs), batch_size)]
        with ThreadPoolExecutor(max_workers=cpu_count()) as pool:
            def decode(n):
                return [pool.submit(self._prepared, source) for source in chunks[n]] if n < len(chunks) else []

            pending = decode(0)
            for n, chunk in enumerate(chunks):
                prepared, pending = [future.result() for future in pending], decode(n + 1)
                arrays = {i: array for i, (array, _) in enumerate(prepared) if array is not None}
                probs = _softmax(self.logits(np.stack(list(arrays.values())))) if arrays else []
                top = dict(zip(arrays, (self._top(row, k) for row in probs)))
                for i, (source, (_, error)) in enumerate(zip(chunk, prepared)):
                    path = None if isinstance(source, Image.Image) else str(source)
                    yield ({"path": path, "error": error} if error else {"path": path, "top": top[i]}), None, None

    def _prepared(self, source):
        """(preprocessed array, None), or (None, why it cannot be read)."""
        try:
            return self.preprocess(source), None
        except UnreadableImage as err:
            return None, str(err)

    def _top(self, probs, k):
        order = np.argsort(-probs, kind="stable")[:k]
        return [{"class": self.classes[j], "prob": float(probs[j])} for j in order]


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
    return OnnxClassifier(session, spec)
