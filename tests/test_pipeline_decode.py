"""pipeline/decode.py: photo files -> uint8 tensors, and the antialiased uint8 resize."""

import torch
from PIL import Image

from imagegen import noise_image
from petalnet.pipeline.decode import decode_photo, pil_to_uint8, resize_uint8


def test_big_jpegs_are_decoded_reduced_but_never_below_the_asked_short_side(tmp_path):
    path = tmp_path / "big.jpg"
    noise_image(4, size=(40, 30)).resize((2400, 1800), Image.BICUBIC).save(path, quality=90)  # smooth
    full, reduced = decode_photo(path), decode_photo(path, reduce_to=256)
    assert full.shape == (3, 1800, 2400)
    assert reduced.shape == (3, 450, 600)  # 1/4 scale: the smallest with a short side >= 256
    shrunk = pil_to_uint8(Image.open(path).convert("RGB").resize((600, 450), Image.BILINEAR, reducing_gap=None))
    assert (reduced.float() - shrunk.float()).abs().mean() < 3  # the same picture, smaller
    assert decode_photo(path, reduce_to=1000).shape == (3, 1800, 2400)  # 1/2 would be under 1000: full size


def test_pil_to_uint8_is_channels_first_and_writable():
    image = noise_image(1, size=(5, 3))
    tensor = pil_to_uint8(image)
    assert tensor.shape == (3, 3, 5) and tensor.dtype == torch.uint8
    assert tensor[:, 2, 4].tolist() == list(image.getpixel((4, 2)))
    tensor[0, 0, 0] = 7  # a copy, not Pillow's read-only buffer


def test_resize_uint8_keeps_a_flat_colour_and_gives_uint8():
    flat = torch.full((3, 90, 120), 200, dtype=torch.uint8)
    out = resize_uint8(flat, (30, 40))
    assert out.shape == (3, 30, 40) and out.dtype == torch.uint8 and bool((out == 200).all())
