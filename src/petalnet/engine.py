"""One epoch of training, and one pass of evaluation. `train` and `evaluate` both use `evaluate`.

Loaders yield (images, targets); anything not yet on the device is moved there. `settings` are the
device settings of tuning.py (autocast precision, channels_last); None means plain fp32.
"""

import contextlib
import time
from dataclasses import dataclass

import torch
from torch import nn

from petalnet import distributed
from petalnet.progress import progress_bar
from petalnet.tuning import autocast


def _to_device(images, targets, device, settings):
    memory_format = torch.channels_last if settings and settings["channels_last"] else torch.contiguous_format
    return (images.to(device, non_blocking=True, memory_format=memory_format),
            targets.to(device, non_blocking=True))


def _precision(device, settings, training):
    return autocast(device, settings, training) if settings else contextlib.nullcontext()


def train_one_epoch(model, loader, criterion, optimizer, scheduler, device, desc="train", progress=True,
                    settings=None, scaler=None, ema=None):
    """Train for one pass over `loader`; returns this process's loss sum, image count and seconds.

    Targets may be class indices or soft labels (MixUp/CutMix); `ema` (ema.py) is updated after each step.
    """
    model.train()
    total_loss, seen, start = torch.zeros((), device=device), 0, time.perf_counter()
    bar = progress_bar(loader, progress, desc=desc, unit="batch", leave=False)
    for step, (images, targets) in enumerate(bar):
        images, targets = _to_device(images, targets, device, settings)
        with _precision(device, settings, training=True):
            loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update()
        total_loss += loss.detach().float() * len(targets)
        seen += len(targets)
        if progress and step % 10 == 0:  # .item() waits for the GPU: not every step
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{total_loss.item() / seen:.4f}", img_s=f"{rate:.1f}", refresh=False)
    return {"loss_sum": total_loss.item(), "images": seen, "seconds": time.perf_counter() - start}


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    targets: torch.Tensor  # (n,) true class indices
    probs: torch.Tensor  # (n, num_classes) softmax probabilities
    seconds: float

    @property
    def predictions(self):
        return self.probs.argmax(dim=1)


@torch.no_grad()
def evaluate(model, loader, device, desc="val", progress=True, settings=None, processes=None):
    """Run the model over a labelled loader: loss, top-1 accuracy and every probability.

    Under torchrun each rank evaluates its share and the results are gathered, in the loader's order.
    """
    model.eval()
    all_losses, all_targets, all_probs, start = [], [], [], time.perf_counter()
    for images, targets in progress_bar(loader, progress, desc=desc, unit="batch", leave=False):
        images, targets = _to_device(images, targets, device, settings)
        with _precision(device, settings, training=False):
            logits = model(images).float()
        all_losses.append(nn.functional.cross_entropy(logits, targets, reduction="none").cpu())
        all_targets.append(targets.cpu())
        all_probs.append(logits.softmax(dim=1).cpu())
    losses = torch.cat(all_losses) if all_losses else torch.zeros(0)
    targets = torch.cat(all_targets) if all_targets else torch.zeros(0, dtype=torch.long)
    probs = torch.cat(all_probs) if all_probs else torch.zeros(0, 0)
    if processes is not None and processes.active:
        losses, targets = distributed.gather_rows(losses, processes), distributed.gather_rows(targets, processes)
        probs = distributed.gather_rows(probs, processes)
    n = len(targets)
    accuracy = (probs.argmax(dim=1) == targets).float().mean().item() if n else 0.0
    return EvalResult(loss=losses.sum().item() / max(n, 1), accuracy=accuracy, targets=targets, probs=probs,
                      seconds=time.perf_counter() - start)
