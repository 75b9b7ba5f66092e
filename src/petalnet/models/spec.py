"""What a trained model needs to classify a photo, apart from its weights: stored in every checkpoint
(as `meta`) and beside every exported file (model.onnx.json), read by predict, evaluate, export and serve.
"""

import dataclasses
from dataclasses import dataclass

from petalnet.errors import UserError
from petalnet.utils.fields import from_dict

FORMAT, VERSION = "petalnet", 1  # what every checkpoint says it is (models/checkpoint.py)


@dataclass(frozen=True)
class InferenceSpec:
    model: str  # the network's name (models/networks.py)
    classes: tuple[str, ...]  # class names, in the order of the model's outputs
    image_size: int  # the photo's side in pixels as the model sees it
    eval_resize: str = "squash"  # squash to image_size x image_size, or center_crop (short side / 0.875, crop)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # normalization: (x / 255 - mean) / std, per channel
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    tta_flip: bool = False  # average the logits of each photo and its mirror image
    task: str = "single"  # single: softmax, one class a photo; multilabel: a sigmoid a class, several a photo
    thresholds: tuple[float, ...] | None = None  # multilabel: class i is given when its probability >= thresholds[i]

    @classmethod
    def from_dict(cls, meta, source="checkpoint"):
        """From a checkpoint's `meta` (or an export's sidecar JSON); one line if a key is missing."""
        try:
            spec = from_dict(cls, meta)
        except TypeError:
            missing = [f.name for f in dataclasses.fields(cls)
                       if f.name not in (meta or {}) and f.default is dataclasses.MISSING][:3]
            raise UserError(f"{source} lacks what a model needs to classify ({', '.join(missing)})") from None
        return spec

    @property
    def multilabel(self):
        return self.task == "multilabel"

    def to_dict(self):
        """Plain JSON, keys in the order 0.2.0 wrote them (a multi-label model's task and thresholds after)."""
        saved = {"classes": list(self.classes), "image_size": self.image_size, "model": self.model,
                 "eval_resize": self.eval_resize, "mean": list(self.mean), "std": list(self.std),
                 "tta_flip": self.tta_flip}
        if self.multilabel:
            saved.update(task=self.task, thresholds=list(self.thresholds or [0.5] * len(self.classes)))
        return saved
