"""pipeline/preprocess.py: the one eval transform, against torchvision's classic one and its NumPy twin
(eval_array, what the ONNX classifier runs without PyTorch)."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from petalnet.data.images import open_photo
from petalnet.models.spec import InferenceSpec
from petalnet.pipeline.preprocess import NormalizedBatches, eval_array, eval_geometry, eval_tensor, normalize_batch

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # not the seed's 0.5s: channels must not mix up


def spec(size, resize):
    return InferenceSpec(model="alexnet_half", classes=("a", "b"), image_size=size, eval_resize=resize, mean=MEAN,
                         std=STD)


def torchvision_eval(size, resize):
    """The eval transform as torchvision's references write it (Pillow resizes the PIL image)."""
    steps = [v2.Resize((size, size))] if resize == "squash" else [v2.Resize(round(size / 0.875)), v2.CenterCrop(size)]
    return v2.Compose([*steps, v2.PILToTensor()])


def test_geometry_squashes_or_keeps_the_aspect_and_crops_the_center():
    assert eval_geometry(300, 500, 224, "squash") == ((224, 224), None)
    assert eval_geometry(300, 500, 224, "center_crop") == ((256, 426), 224)  # short side 224 / 0.875
    assert eval_geometry(500, 300, 224, "center_crop") == ((426, 256), 224)


@pytest.mark.parametrize("resize", ["squash", "center_crop"])
@pytest.mark.parametrize("size", [64, 224])
def test_eval_tensor_matches_torchvisions_eval_transform(sample_photos, resize, size):
    for path in sample_photos:
        image = open_photo(path)
        mine, reference = eval_tensor(image, size, resize), torchvision_eval(size, resize)(image)
        assert mine.shape == reference.shape == (3, size, size) and mine.dtype == torch.uint8
        assert (mine.float() - reference.float()).abs().mean() < 2, path  # of 255: torch's vs Pillow's filter


@pytest.mark.parametrize("resize", ["squash", "center_crop"])
@pytest.mark.parametrize("size", [64, 96, 224, 300])  # smaller and larger than the photos
def test_onnx_preprocessing_agrees_with_the_torch_path_within_two_grey_levels(sample_photos, resize, size):
    """eval_array (Pillow + NumPy) and eval_tensor + normalize_batch (torch) show a model the same photo:
    per pixel within 2/255 before normalization, that is 2/255/std after it."""
    for path in sample_photos:
        image = open_photo(path)
        numpy_path = eval_array(image, spec(size, resize))
        torch_path = normalize_batch(eval_tensor(image, size, resize)[None], MEAN, STD)[0].numpy()
        assert numpy_path.shape == torch_path.shape == (3, size, size) and numpy_path.dtype == np.float32
        levels = np.abs(numpy_path - torch_path) * np.asarray(STD, np.float32)[:, None, None] * 255
        assert levels.max() <= 2 + 1e-3, (path, float(levels.max()))
    shifted = eval_array(image.transpose(0), spec(size, resize))  # a mirrored photo is told apart
    assert (np.abs(shifted - torch_path) * np.asarray(STD, np.float32)[:, None, None] * 255).max() > 2


def test_normalize_batch_is_to_dtype_then_normalize_and_keeps_the_memory_format():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = v2.Normalize(MEAN, STD)(images.float() / 255)
    out = normalize_batch(images, MEAN, STD, channels_last=True)
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_normalized_batches_wrap_a_loader_and_pass_set_epoch_on():
    class Loader(list):
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

    loader = Loader([(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), torch.tensor([1]))])
    batches = NormalizedBatches(loader, (0.5,) * 3, (0.5,) * 3, "cpu", channels_last=False)
    batches.set_epoch(4)
    (images, targets), = list(batches)
    assert loader.epoch == 4 and len(batches) == 1 and targets.tolist() == [1]
    assert torch.allclose(images, torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize("resize", ["center_crop", "squash"])
def test_a_big_jpeg_is_decoded_at_a_reduced_scale_and_looks_the_same(tmp_path, resize):
    """open_eval_photo: libjpeg's DCT scaling for a camera-sized JPEG (4x and more the model's side),
    never below the side the eval transform resizes to; a PNG is decoded whole."""
    from PIL import Image

    from imagegen import flower_image
    from petalnet.pipeline.preprocess import eval_short_side, open_eval_photo

    big = flower_image(1, 7, size=(1600, 1200))
    big.save(tmp_path / "big.jpg", quality=92)
    big.save(tmp_path / "big.png")
    side = eval_short_side(64, resize)
    reduced = open_eval_photo(tmp_path / "big.jpg", 64, resize)
    assert reduced.size == (1600 // 8, 1200 // 8) and min(reduced.size) >= side
    assert open_eval_photo(tmp_path / "big.png", 64, resize).size == (1600, 1200)
    whole = eval_tensor(open_photo(tmp_path / "big.jpg"), 64, resize).int()
    fast = eval_tensor(reduced, 64, resize).int()
    assert fast.shape == whole.shape == (3, 64, 64)
    assert (fast - whole).abs().float().mean() < 1.5 and not torch.equal(fast, whole)
    assert open_eval_photo(tmp_path / "big.jpg", 320, resize).size == (1600 // 2, 1200 // 2)  # 1/4 is too small
    assert isinstance(open_eval_photo(Image.open(tmp_path / "big.jpg"), 64, resize), Image.Image)
