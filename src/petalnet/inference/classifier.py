"""Photos -> predictions with any model format: the notebook API, and what `petalnet predict` and `serve` run.

    from petalnet import load_classifier
    clf = load_classifier("runs/seed")            # a run folder (its best.pt), a checkpoint file or a .onnx
    clf.classes                                   # ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']
    clf.predict(["a.jpg", pil_image], topk=3)
    # [{"path": "a.jpg", "top": [{"class": "roses", "prob": 0.91}, ...]}, {"path": None, "top": [...]}]

A multi-label model (its spec's task "multilabel") gives each photo the set of classes at or above their
thresholds, most probable first, and every class's probability (sigmoids, in class order; topk unused):
    # [{"path": "a.jpg", "labels": ["roses", "tulips"], "probs": {"daisy": 0.02, ..., "tulips": 0.71}}]
A file that cannot be read as an image gets {"path": ..., "error": "one line"} instead of "top" (or "labels"
and "probs").

Written once for every format (backend.py: a checkpoint, an ONNX file): each photo is decoded by Pillow
(pipeline/preprocess.py's open_eval_photo, as in `evaluate` and train's val) and prepared by the backend
in threads while the model scores the batch before (decoding.py); the backend's probabilities become the top
classes (or the label set) in probabilities.py. torchvision is not imported on this path, and torch not for
a .onnx file.
"""

import functools
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from petalnet.data.images import UnreadableImage, small_copy
from petalnet.inference.decoding import decode_ahead
from petalnet.inference.probabilities import label_set, thresholds_of, top_classes
from petalnet.inference.settings import PredictSettings
from petalnet.pipeline.preprocess import open_eval_photo
from petalnet.utils.fields import check_setting

THUMBNAIL = 512  # pixels, longest side of the images kept for pictures (--plot, --explain, serve's page)


class Prediction(NamedTuple):
    record: dict  # {"path", "top": [{"class", "prob"}, ...]}, {"path", "labels", "probs"} or {"path", "error"}
    thumbnail: object = None  # the photo as a PIL image, longest side THUMBNAIL (when asked for)
    heat: object = None  # Grad-CAM map (S, S) in [0, 1] for the top class (when asked for)


def most_probable(record):
    """(class, probability) of a record's most probable class, single- or multi-label (ties: the first)."""
    if "top" in record:
        return record["top"][0]["class"], record["top"][0]["prob"]
    return max(record["probs"].items(), key=lambda item: item[1])


class Decoded(NamedTuple):
    prepared: object  # the backend's input for the photo; None when it cannot be read
    error: str | None  # why it cannot be read (one line), else None
    thumbnail: object = None  # the photo as a PIL image, longest side THUMBNAIL (when asked for)


class Classifier:
    """A loaded model of any format (a Backend) with its classes and eval transform, ready to classify."""

    def __init__(self, backend):
        self.backend = backend

    @property
    def spec(self):
        return self.backend.spec  # InferenceSpec (models/spec.py): classes, size, resize, mean, std

    @property
    def classes(self):
        return self.backend.classes

    @property
    def multilabel(self):
        return self.spec.multilabel

    def predict(self, inputs, topk=3, batch_size=64):
        """One record per input, in order (see the module docstring)."""
        if isinstance(inputs, (str, Path, Image.Image)):
            inputs = [inputs]
        return [prediction.record for prediction in self.iter_predict(inputs, topk, batch_size)]

    def iter_predict(self, inputs, topk=3, batch_size=64, workers=0, thumbnails=False, explain=False):
        """Yield a Prediction per input, in order, batch by batch (heat maps too with explain=True). The next
        batch is decoded in `workers` threads (0: as many as the backend wants) while this one is scored."""
        for name, value in (("topk", topk), ("batch_size", batch_size), ("workers", workers)):
            check_setting(PredictSettings, name, value)
        if explain:
            self.check_explain()
        decode = functools.partial(self.decode, thumbnail=thumbnails or explain)
        for chunk, decoded in decode_ahead(inputs, decode, batch_size, workers or self.backend.decoding_threads):
            good = [photo.prepared for photo in decoded if photo.error is None]
            outcomes = self.outcomes(good, topk) if good else []
            heats = self.explain(good) if good and explain else [None] * len(good)
            scored = zip(outcomes, heats)
            for source, photo in zip(chunk, decoded):
                path = None if isinstance(source, Image.Image) else str(source)
                if photo.error is not None:
                    yield Prediction({"path": path, "error": photo.error}, photo.thumbnail)
                else:
                    outcome, heat = next(scored)
                    yield Prediction({"path": path, **outcome}, photo.thumbnail, heat)

    def decode(self, source, thumbnail=False):
        """A path, file object or PIL image -> Decoded: the backend's input (or why it cannot be read) and,
        with thumbnail=True, a small copy of the photo. CPU only; safe to run in several threads."""
        try:
            image = open_eval_photo(source, self.spec.image_size, self.spec.eval_resize)
        except UnreadableImage as err:
            return Decoded(None, str(err))
        return Decoded(self.backend.prepare(image), None, small_copy(image, THUMBNAIL) if thumbnail else None)

    def rank(self, prepared, topk):
        """The "top" lists of records for prepared photos (Decoded.prepared): the k most probable classes."""
        k = min(topk, len(self.classes))
        return [top_classes(row, self.classes, k) for row in self.backend.probabilities(prepared)]

    def outcomes(self, prepared, topk):
        """What each prepared photo's record says besides its path: {"top": the k most probable classes}, or
        for a multi-label model {"labels": the classes at or above their thresholds, "probs": every class's}."""
        if not self.multilabel:
            return [{"top": top} for top in self.rank(prepared, topk)]
        thresholds = thresholds_of(self.spec)
        return [label_set(row, self.classes, thresholds) for row in self.backend.probabilities(prepared)]

    def check_explain(self):
        """One line (UserError) unless this model can draw heat maps (a CNN checkpoint can)."""
        self.backend.check_heat_maps()

    def explain(self, prepared):
        """Grad-CAM maps (S, S) in [0, 1] for the top class of each prepared photo (NumPy arrays)."""
        return self.backend.heat_maps(prepared)


def load_classifier(model_path, device="auto"):
    """A Classifier for a run folder (uses best.pt) or a checkpoint file (GPU checkpoints load on a CPU),
    or for an exported .onnx file with its .onnx.json beside it (ONNX Runtime on the CPU, without torch)."""
    if str(model_path).endswith(".onnx"):
        from petalnet.inference.onnx import load_onnx_backend

        return Classifier(load_onnx_backend(model_path))
    from petalnet.inference.torch_backend import load_torch_backend

    return Classifier(load_torch_backend(model_path, device))


def classifier_from_checkpoint(ckpt, model_path, device="auto"):
    """A Classifier for a Checkpoint already read (models/checkpoint.py) from `model_path`."""
    from petalnet.inference.torch_backend import TorchBackend

    return Classifier(TorchBackend.from_checkpoint(ckpt, model_path, device))
