"""Augmentation beyond crop and flip, for the cache pipeline's batches (torchvision.transforms.v2).

    policy = photo_policy(config)            # None when the recipe asks for none of these
    images = policy(uint8_images)            # TrivialAugment / RandAugment / color jitter, each photo its own draw
    images = erase_boxes(images, p)          # random erasing, on the normalized batch (box -> 0, the mean)
    mixer = batch_mixer(config, num_classes) # MixUp / CutMix: images, soft_targets = mixer(images, targets)

Random draws come from torch's global generator, which train.py reseeds at every epoch: a run and its
resumed copy see the same augmentations. torchvision is imported only when a recipe uses these.
"""

import torch


def photo_policy(config):
    """A callable that augments a uint8 batch (N, 3, H, W) photo by photo, or None."""
    steps = []
    if config["auto_augment"] != "none" or config["color_jitter"] > 0:
        from torchvision.transforms import v2
    if config["auto_augment"] == "trivial":
        steps.append(v2.TrivialAugmentWide())
    elif config["auto_augment"] == "randaugment":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    if config["color_jitter"] > 0:
        strength = config["color_jitter"]
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
    if config["mixup_alpha"] <= 0 and config["cutmix_alpha"] <= 0:
        return None
    from torchvision.transforms import v2

    choices = []
    if config["mixup_alpha"] > 0:
        choices.append(v2.MixUp(alpha=config["mixup_alpha"], num_classes=num_classes))
    if config["cutmix_alpha"] > 0:
        choices.append(v2.CutMix(alpha=config["cutmix_alpha"], num_classes=num_classes))
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
