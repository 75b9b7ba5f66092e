"""One photo in, one RGB PIL image out: the only place petalnet opens image files.

Handles what users' folders really hold: EXIF rotation, grayscale, palette (with transparency), RGBA
(composited on white, as a browser shows it), CMYK, 16-bit PNG, multi-frame GIF (first frame).
Anything Pillow cannot decode, or a decompression bomb, raises `UnreadableImage` with one line.
"""

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from petalnet.errors import one_line

# What counts as an image file by name; other files in class folders are ignored (torchvision's list).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class UnreadableImage(Exception):
    """The file is not an image Pillow can decode completely."""


def is_image_name(path):
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def open_rgb(source, reduce_to=None):
    """Decode `source` (a path, a file object or a PIL image) fully into an RGB image.

    reduce_to: a JPEG at least twice that short side may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's
    DCT scaling, Pillow's draft), never below it: several times faster for big camera photos.
    """
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if reduce_to and img.format == "JPEG" and min(img.size) >= 2 * reduce_to:
                    scale = reduce_to / min(img.size)
                    img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
                img.load()
                return to_rgb(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableImage(f"too many pixels (decompression bomb?): {err}") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnreadableImage(one_line(err) or type(err).__name__) from None


def open_photo(source, reduce_to=None):
    """A path, file object or PIL image -> upright RGB PIL image; UnreadableImage (one line) if not a photo.
    reduce_to: as open_rgb."""
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise UnreadableImage("no such file" if not Path(source).exists() else "not a file")
    return open_rgb(source, reduce_to)


def to_rgb(img):
    """Convert any Pillow mode to RGB the way the picture looks."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _high_bit_depth_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def _high_bit_depth_to_l(img):
    """16-bit and 32-bit grayscale: scale to 8 bits instead of clipping at 255 as convert() does."""
    array = np.asarray(img, dtype=np.float64)
    peak = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
    if img.mode == "F":
        peak = max(float(array.max()), 1e-12) if array.max() > 1.0 else 1.0
    scaled = np.clip(np.rint(array / peak * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)  # uint8 2-D: mode L


def small_copy(image, longest=512):
    """A copy of a PIL image with its longest side at most `longest` (for pictures and heat maps)."""
    copy = image.copy()
    copy.thumbnail((longest, longest))
    return copy
