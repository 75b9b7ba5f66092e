"""Training augmentation for whole batches of decoded photos (the cache pipeline).

RandomResizedCrop + horizontal flip:

    boxes = sample_crop_boxes(heights, widths, scale=(0.08, 1.0), generator=g)   # (N, 4) top, left, h, w
    flips = sample_flips(n, generator=g)
    crops = resized_crops(photos, boxes, size=224, method="loop", flips=flips)   # uint8 (N, 3, 224, 224)

sample_crop_boxes draws from exactly the distribution of torchvision's RandomResizedCrop.get_params
(ten tries of area fraction ~ U(scale) and log aspect ~ U(log ratio), then the same center-crop
fallback), for a batch at once. tests/test_pipeline_augment.py checks the distributions against torchvision's.

Two ways to cut and resize, same boxes: "loop" (one antialiased uint8 resize per photo, the fastest on
CPUs: per photo) and "roi" (torchvision.ops.roi_align, one kernel for the whole batch, for GPUs).

Beyond crop and flip (torchvision.transforms.v2):

    policy = photo_policy(config)            # None when the recipe asks for none of these
    images = policy(uint8_images)            # TrivialAugment / RandAugment / color jitter, each photo its own draw
    images = erase_boxes(images, p)          # random erasing, on the normalized batch (box -> 0, the mean)
    mixer = batch_mixer(config, num_classes) # MixUp / CutMix: images, soft_targets = mixer(images, targets)

Random draws come from torch's global generator, which train.py reseeds at every epoch: a run and its
resumed copy see the same augmentations. torchvision is imported only when a recipe uses these.

The pil pipeline augments photo by photo instead: pil_train_transform(config) (torchvision's transforms).
"""

import math

import torch
import torch.nn.functional as F

RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's RandomResizedCrop default aspect-ratio range
TRIES = 10


def sample_crop_boxes(heights, widths, scale, ratio=RATIO, generator=None):
    """(top, left, height, width) per photo, as int64 (N, 4), drawn like torchvision's get_params."""
    heights, widths = heights.double(), widths.double()
    n = len(heights)
    area = (heights * widths)[:, None]
    target = area * torch.empty(n, TRIES, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(torch.empty(n, TRIES, dtype=torch.float64).uniform_(*log_ratio, generator=generator))
    w, h = torch.round(torch.sqrt(target * aspect)), torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (h > 0) & (w <= widths[:, None]) & (h <= heights[:, None])
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first try that fits
    found = fits.any(dim=1)
    fallback_h, fallback_w = _fallback_size(heights, widths, ratio)
    h = torch.where(found, h.gather(1, first)[:, 0], fallback_h)
    w = torch.where(found, w.gather(1, first)[:, 0], fallback_w)
    u_top, u_left = torch.rand(2, n, dtype=torch.float64, generator=generator)
    top = torch.where(found, torch.floor(u_top * (heights - h + 1)), torch.floor((heights - h) / 2))
    left = torch.where(found, torch.floor(u_left * (widths - w + 1)), torch.floor((widths - w) / 2))
    return torch.stack([top, left, h, w], dim=1).long()


def _fallback_size(heights, widths, ratio):
    """torchvision's fallback after ten misses: the whole photo, cut to the nearest allowed aspect."""
    in_ratio = widths / heights
    too_tall, too_wide = in_ratio < min(ratio), in_ratio > max(ratio)
    h = torch.where(too_tall, torch.round(widths / min(ratio)), heights)
    w = torch.where(too_wide, torch.round(heights * max(ratio)), widths)
    return h, w


def sample_flips(n, p=0.5, generator=None):
    """True where a photo is mirrored, each with probability p (RandomHorizontalFlip)."""
    return torch.rand(n, generator=generator) < p


def resized_crops(images, boxes, size, method="loop", flips=None, device=None):
    """Cut boxes[k] out of images[k] and resize each to size x size (bilinear, antialiased).

    images: uint8 (3, h, w) photos of any sizes, on any device; boxes: (top, left, h, w) in their pixels.
    Crops are mirrored left-right where flips[k] (optional). The result is uint8 for "loop" and float
    (0-255, on `device`, default the photos') for "roi".
    """
    flips = torch.zeros(len(images), dtype=torch.bool) if flips is None else flips
    if method == "roi":
        return apply_flips(_roi_batch(images, boxes, size, torch.device(device or images[0].device)), flips)
    crops = torch.cat([F.interpolate(image[None, :, top:top + h, left:left + w], size=(size, size), mode="bilinear",
                                     antialias=True) for image, (top, left, h, w) in zip(images, boxes.tolist())])
    if flips.any():  # flip the few that need it, in place (cheaper in uint8)
        crops[flips] = crops[flips].flip(-1)
    return crops


def _roi_batch(images, boxes, size, device):
    """roi_align's crops of photos laid on one canvas, portrait ones transposed (a view) so that the canvas
    is at most S x 2S for photos of short side S, then the crops transposed back."""
    portrait = torch.tensor([image.shape[1] > image.shape[2] for image in images])
    upright = [image.transpose(1, 2) if tall else image for image, tall in zip(images, portrait.tolist())]
    boxes = torch.where(portrait[:, None], boxes[:, [1, 0, 3, 2]], boxes)
    canvas = padded(upright, pin=upright[0].device.type == "cpu" and device.type == "cuda")
    crops = _roi_crops(canvas.to(device, non_blocking=True), boxes, size)
    return torch.where(portrait.to(device).view(-1, 1, 1, 1), crops.transpose(2, 3), crops)


def padded(images, pin=False):
    """Photos of any sizes on one zero-padded canvas (N, 3, max h, max w), channels_last; `pin`: in pinned
    memory, so that the copy to a GPU does not wait."""
    height, width = max(image.shape[1] for image in images), max(image.shape[2] for image in images)
    canvas = torch.zeros(len(images), height, width, 3, dtype=torch.uint8, device=images[0].device, pin_memory=pin)
    canvas = canvas.permute(0, 3, 1, 2)
    for k, image in enumerate(images):
        canvas[k, :, :image.shape[1], :image.shape[2]] = image
    return canvas


def _roi_crops(canvas, boxes, size):
    from torchvision.ops import roi_align

    images = canvas.float()
    top, left, h, w = boxes.to(canvas.device, torch.float32).unbind(dim=1)
    rois = torch.stack([torch.arange(len(canvas), device=canvas.device, dtype=torch.float32),
                        left, top, left + w, top + h], dim=1)
    # aligned=True: pixel k spans [k, k+1), so the box covers exactly the crop; adaptive sampling
    # (ceil(box / size) points per output pixel, averaged) acts as the antialiasing filter.
    return roi_align(images, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def apply_flips(images, flips):
    """Mirror images[k] left-right where flips[k]."""
    flips = flips.to(images.device).view(-1, 1, 1, 1)
    return torch.where(flips, images.flip(-1), images)


def photo_policy(config):
    """A callable that augments a uint8 batch (N, 3, H, W) photo by photo, or None."""
    steps = []
    if config.auto_augment != "none" or config.color_jitter > 0:
        from torchvision.transforms import v2
    if config.auto_augment == "trivial":
        steps.append(v2.TrivialAugmentWide())
    elif config.auto_augment == "randaugment":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    if config.color_jitter > 0:
        strength = config.color_jitter
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    if not steps:
        return None
    transform = steps[0] if len(steps) == 1 else v2.Compose(steps)
    return lambda images: torch.stack([transform(image) for image in images])


def erase_boxes(images, p):
    """torchvision's RandomErasing for each normalized image of a batch (a new tensor)."""
    from torchvision.transforms import v2

    eraser = v2.RandomErasing(p=p, value=0)
    return torch.stack([eraser(image) for image in images]).contiguous(memory_format=_format(images))


def _format(images):
    return torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def batch_mixer(config, num_classes):
    """MixUp and/or CutMix (one of them, chosen per batch), or None: (images, labels) -> (images, soft labels)."""
    if config.mixup_alpha <= 0 and config.cutmix_alpha <= 0:
        return None
    from torchvision.transforms import v2

    choices = []
    if config.mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=config.mixup_alpha, num_classes=num_classes))
    if config.cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=config.cutmix_alpha, num_classes=num_classes))
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)


def pil_train_transform(config):
    """The pil pipeline's (the tutorial's) per-photo path: PIL image -> cropped, flipped, normalized float."""
    from torchvision.transforms import v2

    steps = [v2.RandomResizedCrop(config.image_size, scale=tuple(config.crop_scale), antialias=True)]
    if config.hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                               v2.Normalize(mean=config.mean, std=config.std)])
