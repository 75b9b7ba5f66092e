"""pipeline/augment.py: batch augmentation against torchvision (crop-box distributions, pixels), the
per-photo policies, random erasing and MixUp/CutMix."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from imagegen import noise_image
from petalnet.config.train import TrainConfig
from petalnet.devices.settings import DeviceSettings
from petalnet.pipeline.augment import (batch_mixer, erase_boxes, photo_policy, resized_crops, sample_crop_boxes,
                                       sample_flips)
from petalnet.pipeline.cache import decoded_photos
from petalnet.pipeline.decode import decode_photo
from petalnet.pipeline.loaders import CachedTrainBatches

SEED = TrainConfig()  # the seed recipe: TrainConfig's defaults

DRAWS = 4000
KS_CRITICAL = 1.95 * math.sqrt(2 / DRAWS)  # two-sample Kolmogorov-Smirnov, alpha = 0.001


def ks_statistic(a, b):
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    return np.max(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                         - np.searchsorted(b, grid, side="right") / len(b)))


def box_features(boxes, height, width):
    """Area fraction, log aspect ratio, and the crop center's relative position."""
    top, left, h, w = (np.asarray(c, float) for c in zip(*boxes))
    return {"area": h * w / (height * width), "log_aspect": np.log(w / h),
            "center_y": (top + h / 2) / height, "center_x": (left + w / 2) / width}


def ours(height, width, scale=(0.08, 1.0), seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes = sample_crop_boxes(torch.full((DRAWS,), height), torch.full((DRAWS,), width), scale, generator=g)
    return box_features(boxes.tolist(), height, width)


def torchvisions(height, width):
    torch.manual_seed(1)
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    boxes = [RandomResizedCrop.get_params(image, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3]) for _ in range(DRAWS)]
    return box_features(boxes, height, width)


@pytest.mark.parametrize("height,width", [(240, 320), (333, 500), (64, 640), (500, 180)])
def test_crop_boxes_follow_torchvisions_distribution(height, width):
    mine, reference = ours(height, width), torchvisions(height, width)
    for feature in mine:
        d = ks_statistic(mine[feature], reference[feature])
        assert d < KS_CRITICAL, f"{feature}: KS D={d:.4f} >= {KS_CRITICAL:.4f} at {height}x{width}"


def test_the_distribution_check_notices_a_different_scale():
    """The test above has the power to fail: a crop-scale range of (0.2, 1) is told apart."""
    d = ks_statistic(ours(240, 320, scale=(0.2, 1.0))["area"], torchvisions(240, 320)["area"])
    assert d > 3 * KS_CRITICAL


def test_flips_are_fair_coins():
    flips = sample_flips(DRAWS, generator=torch.Generator().manual_seed(3)).float().mean().item()
    assert abs(flips - 0.5) < 4 * math.sqrt(0.25 / DRAWS)


def test_boxes_always_fit_inside_the_photo():
    g = torch.Generator().manual_seed(5)
    heights, widths = torch.randint(20, 900, (5000,)), torch.randint(20, 900, (5000,))
    top, left, h, w = sample_crop_boxes(heights, widths, (0.08, 1.0), generator=g).unbind(dim=1)
    assert bool((top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all())
    assert bool((top + h <= heights).all() and (left + w <= widths).all())


def test_crops_match_torchvision_resized_crop_pixel_for_pixel(sample_photos):
    for path in sample_photos:
        photo = decode_photo(path)
        stored = photo.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # as the store keeps it: HWC bytes
        height, width = photo.shape[1:]
        for box in ([10, 20, 60, 90], [0, 0, height, width], [30, 40, height - 30, width - 40]):
            mine = resized_crops([stored], torch.tensor([box]), 64)[0]
            reference = TF.resized_crop(photo, *box, size=[64, 64], antialias=True)
            assert (mine.int() - reference.int()).abs().max() <= 1, (path, box)


def test_gpu_method_roi_align_agrees_with_the_cpu_method(sample_photos):
    photo = decode_photo(sample_photos[1])
    photo = photo[:, :min(photo.shape[1:]) * 3 // 4]  # landscape, whatever the sample's shape
    height, width = photo.shape[1:]
    other = photo[:, height // 2:, width // 2:]  # photos of different sizes share one padded canvas
    portrait = photo.transpose(1, 2)  # (laid on the canvas transposed, its crop transposed back)
    photos = [photo, portrait, other]
    boxes = torch.tensor([[5, 5, 60, 80], [0, 0, width, height], [5, 10, height // 2 - 10, width // 2 - 20]])
    loop = resized_crops(photos, boxes, 112, "loop").float()
    roi = resized_crops(photos, boxes, 112, "roi")
    assert (loop - roi).abs().mean() < 3.0  # of 255: different antialias filters, same picture
    assert (loop - roi.flip(0)).abs().mean() > 3.0  # other boxes are told apart: the test can fail


def test_portrait_and_landscape_photos_are_cropped_upright_and_flipped(tmp_path):
    portrait, landscape = tmp_path / "portrait.png", tmp_path / "landscape.png"
    noise_image(1, size=(60, 90)).save(portrait)  # 60 wide, 90 tall
    noise_image(2, size=(90, 60)).save(landscape)
    photos, _ = decoded_photos({"train": ([portrait, landscape], [0, 1]), "val": ([], [])}, 200, 32, "squash",
                               progress=False)
    assert photos.sizes.tolist() == [[90, 60], [60, 90]]
    config = dataclasses.replace(SEED, image_size=32)
    batches = CachedTrainBatches(photos, config, "cpu", DeviceSettings(channels_last=False))
    box = torch.tensor([[10, 5, 70, 50], [5, 10, 50, 70]])  # upright boxes, one per photo
    out = batches.render(torch.arange(2), box, torch.tensor([True, False]))
    for k, path in enumerate([portrait, landscape]):
        reference = TF.resized_crop(decode_photo(path), *box[k].tolist(), size=[32, 32], antialias=True)
        if k == 0:
            reference = reference.flip(-1)
        assert torch.equal(out[k], reference)


def test_photo_policy_gives_each_photo_its_own_draw():
    assert photo_policy(SEED) is None
    torch.manual_seed(0)
    photo = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    batch = photo.expand(16, 3, 48, 48).contiguous()
    out = photo_policy(dataclasses.replace(SEED, auto_augment="trivial"))(batch)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert len({tuple(image.flatten()[:200].tolist()) for image in out}) >= 4  # not one op for the whole batch
    jitter = photo_policy(dataclasses.replace(SEED, color_jitter=0.4))(batch)
    assert not torch.equal(jitter[0], jitter[1])


def test_random_erasing_zeroes_one_box_per_photo():
    images = torch.ones(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    erased = erase_boxes(images, p=1.0)
    zero_fraction = (erased == 0).float().mean(dim=(1, 2, 3))
    assert bool(((zero_fraction > 0) & (zero_fraction < 0.5)).all())
    assert erased.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(erase_boxes(images, p=0.0), images)


def test_mixup_and_cutmix_give_soft_labels():
    assert batch_mixer(SEED, 5) is None
    torch.manual_seed(0)
    mixer = batch_mixer(dataclasses.replace(SEED, mixup_alpha=0.2, cutmix_alpha=1.0), 5)
    images, labels = mixer(torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0]))
    assert images.shape == (6, 3, 16, 16) and labels.shape == (6, 5)
    assert torch.allclose(labels.sum(dim=1), torch.ones(6))
    assert (labels.max(dim=1).values < 1).any()  # some targets are mixed, not one-hot
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(torch.randn(6, 5), labels)
    assert math.isfinite(loss.item())
