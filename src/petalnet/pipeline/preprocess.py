"""How a photo is shown to a model at evaluation: the one definition every eval path uses.

    eval_geometry(h, w, size, resize)    ((resize_h, resize_w), crop side or None)
    eval_tensor(image, size, resize)     PIL image or uint8 tensor -> uint8 (3, S, S)       (PyTorch)
    open_eval_photo(source, size, resize)  open_photo, a big JPEG decoded at a reduced scale (draft)
    load_eval_photo(source, spec)        open_eval_photo + eval_tensor at the spec's size
    eval_array(image, spec)              PIL image -> normalized float32 (3, S, S)           (NumPy only)
    normalize_batch(u8, mean, std)       uint8 batch -> normalized float, on its device      (PyTorch)

Train's val photos (both pipelines), evaluate, predict, export's parity check and serve all go through
open_eval_photo + eval_tensor + normalize_batch, so a checkpoint scores the same photo the same way everywhere. The ONNX
classifier runs without PyTorch: eval_array does the same geometry with Pillow's antialiased bilinear
resize, which follows torch's within a grey level or so (tests/ compare the two).
`resize` is "squash" (to size x size, as the tutorial) or "center_crop" (short side to size / 0.875,
then the center size x size: torchvision's Resize + CenterCrop arithmetic). PyTorch is imported only by
the functions that use it.
"""

import numpy as np
from PIL import Image

from petalnet.data.images import open_photo

CROP_RATIO = 0.875  # center_crop: the crop is this fraction of the resized short side


def eval_geometry(height, width, size, resize):
    """((resize_h, resize_w), crop) for a height x width photo; crop is None for squash."""
    if resize == "squash":
        return (size, size), None
    short = round(size / CROP_RATIO)
    if height <= width:
        return (short, int(short * width / height)), size
    return (int(short * height / width), short), size


def crop_offsets(height, width, crop):
    """(top, left) of the centered crop x crop square."""
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def eval_tensor(image, size, resize):
    """A decoded photo (uint8 (3, H, W) tensor or RGB PIL image) -> uint8 (3, S, S) as the model sees it."""
    from petalnet.pipeline.decode import pil_to_uint8, resize_uint8

    if isinstance(image, Image.Image):
        image = pil_to_uint8(image)
    resize_to, crop = eval_geometry(image.shape[1], image.shape[2], size, resize)
    image = resize_uint8(image, resize_to)
    if crop is not None:
        top, left = crop_offsets(image.shape[1], image.shape[2], crop)
        image = image[:, top:top + crop, left:left + crop]
    return image.contiguous()


def eval_short_side(size, resize):
    """The side a photo's short side is resized to before the crop (squash: size, both sides)."""
    return size if resize == "squash" else round(size / CROP_RATIO)


def open_eval_photo(source, size, resize):
    """open_photo for the eval transform: a JPEG whose short side is at least twice eval_short_side is
    decoded at 1/2, 1/4 or 1/8 scale by libjpeg (Pillow's draft), never below that side; several times
    faster for camera photos, and the resize that follows has less to average."""
    return open_photo(source, reduce_to=eval_short_side(size, resize))


def load_eval_photo(source, spec):
    """A path, file object or PIL image -> uint8 (3, S, S) for the model of `spec` (models/spec.py)."""
    return eval_tensor(open_eval_photo(source, spec.image_size, spec.eval_resize), spec.image_size,
                       spec.eval_resize)


def eval_array(image, spec):
    """An RGB PIL image -> normalized float32 (3, S, S) NumPy array, without PyTorch (the ONNX path)."""
    (height, width), crop = eval_geometry(image.height, image.width, spec.image_size, spec.eval_resize)
    image = image.resize((width, height), Image.BILINEAR)
    if crop is not None:
        top, left = crop_offsets(height, width, crop)
        image = image.crop((left, top, left + crop, top + crop))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return array.transpose(2, 0, 1)


def normalize_batch(images, mean, std, channels_last=False):
    """uint8 (or 0-255 float) (N, 3, H, W) -> float32 (x / 255 - mean) / std, as ToDtype + Normalize do.

    One pass: addcmul reads the uint8 and writes float32 (a separate .float() first costs a second pass).
    """
    import torch

    mean, std = (torch.tensor(v, device=images.device, dtype=torch.float32).view(1, -1, 1, 1) for v in (mean, std))
    scale, shift = 1.0 / (std * 255.0), -mean / std
    images = images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return torch.addcmul(shift, images, scale)  # x * scale + shift, in float32


class NormalizedBatches:
    """Wraps a loader of (uint8 images, targets): yields normalized float images on `device`."""

    def __init__(self, loader, mean, std, device, channels_last):
        self.loader, self.mean, self.std, self.device, self.channels_last = loader, mean, std, device, channels_last

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __iter__(self):
        for images, targets in self.loader:
            images = images.to(self.device, non_blocking=True)
            yield normalize_batch(images, self.mean, self.std, self.channels_last), targets
