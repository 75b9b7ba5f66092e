"""One epoch of training, and one pass of evaluation. `train` and `evaluate` both use `evaluate`."""

import time
from dataclasses import dataclass

import torch
from torch import nn

from petalnet.progress import progress_bar


def train_one_epoch(model, loader, criterion, optimizer, scheduler, device, desc="train", progress=True):
    """Train for one pass over `loader`; returns mean loss, image count and seconds."""
    model.train()
    total_loss, seen, start = 0.0, 0, time.perf_counter()
    bar = progress_bar(loader, progress, desc=desc, unit="batch", leave=False)
    for images, targets in bar:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(targets)
        seen += len(targets)
        rate = seen / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", img_s=f"{rate:.1f}")
    seconds = time.perf_counter() - start
    return {"loss": total_loss / max(seen, 1), "images": seen, "seconds": seconds}


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
def evaluate(model, loader, device, desc="val", progress=True):
    """Run the model over a labelled loader: loss, top-1 accuracy and every probability."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total_loss, all_targets, all_probs, start = 0.0, [], [], time.perf_counter()
    for images, targets in progress_bar(loader, progress, desc=desc, unit="batch", leave=False):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        logits = model(images).float()
        total_loss += criterion(logits, targets).item()
        all_targets.append(targets.cpu())
        all_probs.append(logits.softmax(dim=1).cpu())
    targets = torch.cat(all_targets) if all_targets else torch.zeros(0, dtype=torch.long)
    probs = torch.cat(all_probs) if all_probs else torch.zeros(0, 0)
    n = len(targets)
    accuracy = (probs.argmax(dim=1) == targets).float().mean().item() if n else 0.0
    return EvalResult(loss=total_loss / max(n, 1), accuracy=accuracy, targets=targets, probs=probs,
                      seconds=time.perf_counter() - start)
