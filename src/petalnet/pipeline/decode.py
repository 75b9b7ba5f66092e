"""Photo file -> uint8 tensor (3, H, W), and the antialiased resize of such tensors.

    decode_photo(path)            Pillow (images.open_rgb: EXIF, any mode, bombs refused) -> tensor
    resize_uint8(image, (h, w))   bilinear with antialiasing, uint8 in and out

What a model sees at evaluation is preprocess.py's. This module imports torch and Pillow only (torchvision's
start-up is what `petalnet predict` on one photo should not pay). torchvision.io.decode_jpeg is a little
faster per photo, but torchvision 0.29 deprecates its decoders, and one decoder everywhere means train
and evaluate see identical pixels.
"""


import numpy as np
import torch
import torch.nn.functional as F

from petalnet.data.images import open_rgb


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
