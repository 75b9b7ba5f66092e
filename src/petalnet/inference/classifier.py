"""Checkpoint -> predictions: the notebook API, and what `petalnet predict` runs.

    from petalnet import load_classifier
    clf = load_classifier("runs/seed")            # a run folder (its best.pt) or a checkpoint file
    clf.classes                                   # ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']
    clf.predict(["a.jpg", pil_image], topk=3)
    # [{"path": "a.jpg", "top": [{"class": "roses", "prob": 0.91}, ...]}, {"path": None, "top": [...]}]

A file that cannot be read as an image gets {"path": ..., "error": "one line"} instead of "top".
Photos are decoded by Pillow (pipeline/preprocess.py, as in `evaluate` and train's val); while the
model works on one batch, a thread decodes the next. torchvision is not imported on this path.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from petalnet.models.checkpoint import load_checkpoint, model_from_checkpoint
from petalnet.pipeline.preprocess import eval_tensor, normalize_batch, open_eval_photo
from petalnet.devices.select import pick_device

from petalnet.utils.fields import check_number
from petalnet.data.images import UnreadableImage, small_copy
from petalnet.models.networks import FlipAveraged
from petalnet.devices.settings import autocast, device_settings

THUMBNAIL = 512  # pixels, longest side of the images kept for pictures (--plot, --explain)


class Prediction(NamedTuple):
    record: dict  # {"path", "top": [{"class", "prob"}, ...]} or {"path", "error"}
    thumbnail: object = None  # the photo as a PIL image, longest side THUMBNAIL (when asked for)
    heat: object = None  # Grad-CAM map (S, S) in [0, 1] for the top class (when asked for)


class InputImages(Dataset):
    """Paths or PIL images -> (index, uint8 tensor or None, error or None, thumbnail or None)."""

    def __init__(self, inputs, spec, thumbnails):
        self.inputs, self.spec, self.thumbnails = list(inputs), spec, thumbnails

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        try:
            image = open_eval_photo(self.inputs[i], self.spec.image_size, self.spec.eval_resize)
        except UnreadableImage as err:
            return i, None, str(err), None
        thumbnail = small_copy(image, THUMBNAIL) if self.thumbnails else None
        return i, eval_tensor(image, self.spec.image_size, self.spec.eval_resize), None, thumbnail


def _keep_as_list(batch):
    return batch


def _prefetched(loader):
    """Iterate `loader` with the next batch decoded in a thread while the caller uses this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        batches = iter(loader)
        pending = pool.submit(next, batches, None)
        while True:
            batch = pending.result()
            if batch is None:
                return
            pending = pool.submit(next, batches, None)
            yield batch


class Classifier:
    """A trained model with its classes and eval transform, ready to classify photos."""

    def __init__(self, model, spec, device):
        self.device = device
        self.settings = device_settings(device)
        self.model = model.to(device).eval()
        if self.settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.spec = spec  # InferenceSpec (models/spec.py): classes, size, resize, mean, std

    @property
    def classes(self):
        return list(self.spec.classes)

    def predict(self, inputs, topk=3, batch_size=64):
        """One record per input, in order (see the module docstring)."""
        if isinstance(inputs, (str, Path, Image.Image)):
            inputs = [inputs]
        return [prediction.record for prediction in self.iter_predict(inputs, topk, batch_size)]

    def iter_predict(self, inputs, topk=3, batch_size=64, workers=0, thumbnails=False, explain=False):
        """Yield a Prediction per input, in order, batch by batch (heat maps too with explain=True)."""
        check_number("topk", topk, at_least=1)
        check_number("batch_size", batch_size, at_least=1)
        check_number("workers", workers, at_least=0)
        inputs = list(inputs)
        loader = DataLoader(InputImages(inputs, self.spec, thumbnails or explain), batch_size=batch_size,
                            num_workers=workers, collate_fn=_keep_as_list)
        k = min(topk, len(self.classes))
        for batch in _prefetched(loader) if workers == 0 else loader:
            good = [item for item in batch if item[1] is not None]
            stacked = torch.stack([item[1] for item in good]) if good else None
            top = self._top(stacked, k) if good else []
            heats = self.explain(stacked) if good and explain else [None] * len(good)
            results = {item[0]: (t, h) for item, t, h in zip(good, top, heats)}
            for i, _tensor, error, thumbnail in batch:
                path = None if isinstance(inputs[i], Image.Image) else str(inputs[i])
                if error:
                    yield Prediction({"path": path, "error": error}, thumbnail)
                else:
                    yield Prediction({"path": path, "top": results[i][0]}, thumbnail, results[i][1])

    def explain(self, images):
        """Grad-CAM maps (N, S, S) in [0, 1] for the top class of uint8 images (N, 3, S, S)."""
        from petalnet.inference.explain import grad_cam

        batch = normalize_batch(images.to(self.device), self.spec.mean, self.spec.std,
                                self.settings.channels_last)
        network = self.model.model if isinstance(self.model, FlipAveraged) else self.model  # one pass, one map
        return list(grad_cam(network, batch))

    @torch.no_grad()
    def _top(self, images, k):
        images = normalize_batch(images.to(self.device), self.spec.mean, self.spec.std,
                                 self.settings.channels_last)
        with autocast(self.device, self.settings, training=False):
            probs = self.model(images).float().softmax(dim=1).cpu()
        values, indices = probs.topk(k, dim=1)
        return [[{"class": self.classes[j], "prob": p} for p, j in zip(row_p.tolist(), row_i.tolist())]
                for row_p, row_i in zip(values, indices)]


def load_classifier(model_path, device="auto"):
    """A Classifier from a run folder (uses best.pt) or a checkpoint file; GPU checkpoints load on CPU."""
    return classifier_from_checkpoint(load_checkpoint(model_path), model_path, device)


def classifier_from_checkpoint(ckpt, model_path, device="auto"):
    """A Classifier for a Checkpoint already read (models/checkpoint.py) from `model_path`."""
    return Classifier(model_from_checkpoint(ckpt, model_path), ckpt.spec, pick_device(device))
