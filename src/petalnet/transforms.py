"""Image -> normalized tensor, for training (random) and for evaluation (deterministic).

The eval transform is rebuilt from what a checkpoint carries (image_size, eval_resize, mean, std), so a
checkpoint alone is enough to classify a photo the way it was validated.
"""

import torch
from torchvision.transforms import v2


def to_normalized_tensor(mean, std):
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)]


def train_transform(config):
    steps = [v2.RandomResizedCrop(config["image_size"], scale=tuple(config["crop_scale"]), antialias=True)]
    if config["hflip"]:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + to_normalized_tensor(config["mean"], config["std"]))


def eval_transform(info):
    """`info` holds image_size, eval_resize, mean and std (a config or a checkpoint's `meta`)."""
    size = info["image_size"]
    if info["eval_resize"] == "squash":
        steps = [v2.Resize((size, size), antialias=True)]
    else:  # center_crop: resize the short side to size/0.875, then crop the center
        steps = [v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size)]
    return v2.Compose(steps + to_normalized_tensor(info["mean"], info["std"]))
