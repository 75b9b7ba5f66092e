"""Photo file -> uint8 tensor (3, H, W), and the eval resize on such tensors.

    decode_photo(path)            Pillow (images.open_rgb: EXIF, any mode, bombs refused) -> tensor
    eval_tensor(image, meta)      what the model sees at evaluation, as uint8 (3, S, S)
    normalize_batch(u8, ...)      uint8 batch -> normalized float, on the batch's device

`predict`, `evaluate` and the cached val photos all go through eval_tensor, so a checkpoint scores the
same photos the same way everywhere. This module imports torch and Pillow only (torchvision costs 1-2.5 s
of start-up, which `petalnet predict` on one photo should not pay). torchvision.io.decode_jpeg was 16%
faster per photo here, but torchvision 0.29 deprecates its decoders, and one decoder everywhere means
train and evaluate see identical pixels.
"""


import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from petalnet.images import eval_size, open_photo, open_rgb


def decode_photo(path, reduce_to=None):
    """Decode the photo at `path` to a uint8 (3, H, W) tensor, upright (EXIF), RGB.

    reduce_to: see images.open_rgb (big JPEGs decoded at a reduced scale, short side >= reduce_to).
    """
    return pil_to_uint8(open_rgb(path, reduce_to))


def pil_to_uint8(image):
    """An RGB PIL image -> uint8 (3, H, W) tensor (a copy: the array Pillow gives is read-only)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


def resize_uint8(image, size):
    """Bilinear resize with antialiasing of a uint8 (3, H, W) tensor to `size` = (h, w); uint8 out."""
    batch = image[None].contiguous(memory_format=torch.channels_last)
    return F.interpolate(batch, size=size, mode="bilinear", antialias=True)[0]


def eval_tensor(image, meta):
    """A decoded photo (uint8 tensor or RGB PIL image) -> uint8 (3, S, S) as the model sees it."""
    if isinstance(image, Image.Image):
        image = pil_to_uint8(image)
    resize_to, crop = eval_size(image.shape[1], image.shape[2], meta)
    image = resize_uint8(image, resize_to)
    if crop is not None:
        top = int(round((image.shape[1] - crop) / 2.0))
        left = int(round((image.shape[2] - crop) / 2.0))
        image = image[:, top:top + crop, left:left + crop]
    return image.contiguous()


def normalize_batch(images, mean, std, channels_last=False):
    """uint8 (or 0-255 float) (N, 3, H, W) -> float32 (x / 255 - mean) / std, as ToDtype + Normalize do.

    One pass: addcmul reads the uint8 and writes float32 (a separate .float() first costs a second pass).
    """
    mean, std = (torch.tensor(v, device=images.device, dtype=torch.float32).view(1, -1, 1, 1) for v in (mean, std))
    scale, shift = 1.0 / (std * 255.0), -mean / std
    images = images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return torch.addcmul(shift, images, scale)  # x * scale + shift, in float32


def load_eval_photo(source, meta):
    """open_photo + eval_tensor: the one decoder of evaluate, predict, serve and the cached val photos."""
    return eval_tensor(open_photo(source), meta)


class NormalizedBatches:
    """Wraps a loader of (uint8 images, targets): yields normalized float images on `device`."""

    def __init__(self, loader, meta, device, channels_last):
        self.loader, self.meta, self.device, self.channels_last = loader, meta, device, channels_last

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for images, targets in self.loader:
            images = images.to(self.device, non_blocking=True)
            yield normalize_batch(images, self.meta["mean"], self.meta["std"], self.channels_last), targets
