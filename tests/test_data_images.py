"""images.open_rgb: every mode becomes the RGB picture it shows."""

import numpy as np
import pytest
from PIL import Image

from imagegen import noise_image, save_variants, truncated_jpeg
from petalnet.data.images import UnreadableImage, open_rgb


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    base = Image.radial_gradient("L").resize((96, 64)).convert("RGB")
    base = Image.merge("RGB", (base.getchannel(0), base.getchannel(0).rotate(90), noise_image(1, (96, 64), "L")))
    return base, save_variants(base, tmp_path_factory.mktemp("variants"))


def pixels(source):
    return np.asarray(open_rgb(source), dtype=np.int16)


@pytest.mark.parametrize("name", ["rgba_opaque.png", "photo.webp", "photo.bmp", "photo.tif"])
def test_lossless_variants_decode_to_the_same_pixels(variants, name):
    base, paths = variants
    assert np.array_equal(pixels(paths[name]), np.asarray(base, dtype=np.int16))


@pytest.mark.parametrize("name, tolerance", [("cmyk.jpg", 12), ("palette.png", 12), ("first_frame.gif", 20)])
def test_lossy_variants_look_like_the_photo(variants, name, tolerance):
    base, paths = variants
    assert np.abs(pixels(paths[name]) - np.asarray(base, dtype=np.int16)).mean() < tolerance


def test_sixteen_bit_grayscale_is_scaled_not_clipped(variants):
    _, paths = variants
    assert Image.open(paths["gray16.png"]).mode.startswith("I")
    assert np.array_equal(pixels(paths["gray16.png"]), pixels(paths["gray.png"]))


def test_exif_orientation_is_applied(variants):
    _, paths = variants
    rotated, upright = pixels(paths["exif_rotated.jpg"]), pixels(paths["upright.jpg"])
    assert rotated.shape == upright.shape == (64, 96, 3)
    assert np.abs(rotated - upright).mean() < 3


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert open_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("data, reason", [(b"", "not an image"), (b"hello", "not an image"),
                                          (truncated_jpeg(), "truncated")])
def test_unreadable_files_raise_one_line(tmp_path, data, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(UnreadableImage, match=reason) as err:
        open_rgb(path)
    assert "\n" not in str(err.value)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 2 + 1)  # between 1x and 2x: a warning
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        open_rgb(path)
