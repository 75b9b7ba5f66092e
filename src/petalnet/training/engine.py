"""One epoch of training: the loop torchvision's references call train_one_epoch; and, before the first,
fit_to_photos for a model with a layer set from data (resnet9's whitening).

The loader yields (images, targets); anything not yet on the device is moved there. `settings` are the
DeviceSettings of devices/settings.py (autocast precision, channels_last); None means plain fp32.
Validation is inference/scoring.py's evaluate_batches, the same pass `petalnet evaluate` runs.
"""

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from petalnet.utils.progress import progress_bar
from petalnet.devices.settings import batch_to_device, precision
from petalnet.training.ema import WeightAverage

WHITENING_PHOTOS = 512  # training crops a data-fitted first layer is set from


@dataclass
class Training:
    """What a training step uses and changes; model, optimizer, scheduler, scaler and ema are what --resume
    restores (`step_model` is the model as called: wrapped by DDP and torch.compile when they are on)."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    device: torch.device
    settings: object = None  # DeviceSettings
    ema: WeightAverage | None = None
    step_model: nn.Module | None = None
    frozen_norms: list = field(default_factory=list)  # BatchNorms of frozen layers: eval mode (training/layers.py)


def train_one_epoch(training, loader, desc="train", progress=True):
    """Train for one pass over `loader`; returns this process's loss sum, image count and seconds.

    Targets may be class indices or soft labels (MixUp/CutMix); the ema (ema.py) is updated after each step.
    """
    t, model = training, training.step_model or training.model
    model.train()
    for norm in t.frozen_norms:
        norm.eval()
    total_loss, seen, start = torch.zeros((), device=t.device), 0, time.perf_counter()
    bar = progress_bar(loader, progress, desc=desc, unit="batch", leave=False)
    for step, (images, targets) in enumerate(bar):
        images, targets = batch_to_device(images, targets, t.device, t.settings)
        with precision(t.device, t.settings, training=True):
            loss = t.criterion(model(images), targets)
        t.optimizer.zero_grad(set_to_none=True)
        if t.scaler is not None and t.scaler.is_enabled():
            t.scaler.scale(loss).backward()
            t.scaler.step(t.optimizer)
            t.scaler.update()
        else:
            loss.backward()
            t.optimizer.step()
        t.scheduler.step()
        if t.ema is not None:
            t.ema.update()
        total_loss += loss.detach().float() * len(targets)
        seen += len(targets)
        if progress and step % 10 == 0:  # .item() waits for the GPU: not every step
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{total_loss.item() / seen:.4f}", img_s=f"{rate:.1f}", refresh=False)
    return {"loss_sum": total_loss.item(), "images": seen, "seconds": time.perf_counter() - start}


def fit_to_photos(model, train_loader, photos=WHITENING_PHOTOS):
    """A model with layers set from data before training (resnet9's whitening: models/resnet9.py) gets
    the first `photos` training crops of epoch 1 (drawn again when epoch 1 starts). Under torchrun each
    rank fits its own; DDP then copies rank 0's to all."""
    if not hasattr(model, "fit_to_photos"):
        return
    train_loader.set_epoch(1)
    batches, seen = [], 0
    for images, _ in train_loader:
        batches.append(images.float())
        seen += len(images)
        if seen >= photos:
            break
    model.fit_to_photos(torch.cat(batches)[:photos])
