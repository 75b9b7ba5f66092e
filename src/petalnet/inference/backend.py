"""What every model format implements to classify photos: a PyTorch checkpoint (torch_backend.py), an ONNX
file (onnx.py); later OpenVINO, LiteRT, the browser. Everything above it is written once, in classifier.py:
decoding overlapped with the model, softmax (sigmoids for a multi-label model), top-k or the label set, and
the records of `predict --json`.

    backend.spec                  InferenceSpec (models/spec.py): classes, input size, transform
    backend.prepare(image)        a decoded RGB PIL image -> the model's input for that photo (CPU only;
                                  runs in decoding threads, several at once)
    backend.logits(prepared)      a list of prepared photos -> float32 NumPy logits (N, classes)
    backend.probabilities(prepared)   their softmax, or sigmoids when spec.multilabel (probabilities.py's;
                                  a format may compute them itself)
    backend.heat_maps(prepared)   optional: Grad-CAM maps (N, S, S) in [0, 1] for each top class
    backend.check_heat_maps()     one line (UserError) when this model cannot draw them

A backend is loaded once (its file read, its session or network built) and then only scores photos.
Torch-free: a backend that needs PyTorch imports it in its own module.
"""

from petalnet.errors import UserError
from petalnet.inference.probabilities import probabilities


class Backend:
    """A loaded model of one format; the methods a format must implement raise NotImplementedError."""

    spec = None  # InferenceSpec
    decoding_threads = 1  # threads that decode the next batch while this model scores one (classifier.py)
    name = "a model of this format"  # in messages: "an .onnx file"

    @property
    def classes(self):
        return list(self.spec.classes)

    def prepare(self, image):
        """A decoded RGB PIL image (pipeline/preprocess.py's open_eval_photo) -> this model's input."""
        raise NotImplementedError

    def logits(self, prepared):
        """Prepared photos (a list) -> float32 NumPy array (N, len(classes))."""
        raise NotImplementedError

    def probabilities(self, prepared):
        """Prepared photos -> float32 NumPy probabilities (N, len(classes)): each row summing to 1, or for a
        multi-label model (spec.multilabel) one sigmoid per class."""
        return probabilities(self.logits(prepared), self.spec)

    def check_heat_maps(self):
        """Raise UserError (one line) unless heat_maps works for this model."""
        raise UserError(f"--explain needs a PyTorch checkpoint or run folder, not {self.name}")

    def heat_maps(self, prepared):
        """Grad-CAM maps (N, S, S) in [0, 1], one per prepared photo, for its top class."""
        self.check_heat_maps()
        raise NotImplementedError
