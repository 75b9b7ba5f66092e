"""One pass of a model over labelled batches: loss, accuracy and every probability.

    result = evaluate_batches(model, loader, device)     # EvalResult: loss, accuracy, targets, probs
    result = evaluate_batches(model, loader, device, multilabel=True)   # targets: bit masks (multilabel.py)

What `petalnet evaluate` runs, and what train runs on its val photos after every epoch. Under torchrun
each process scores its share and the rows are gathered back in the loader's order (no padding).
"""

import time
from dataclasses import dataclass

import torch
from torch import nn

from petalnet.devices import distributed
from petalnet.devices.settings import batch_to_device, precision
from petalnet.inference.multilabel import mean_average_precision, multi_hot
from petalnet.utils.progress import progress_bar


@dataclass
class EvalResult:
    loss: float
    accuracy: float  # top-1 accuracy; multilabel: subset accuracy at probability 0.5
    targets: torch.Tensor  # (n,) true class indices; multilabel: (n, num_classes) 0/1
    probs: torch.Tensor  # (n, num_classes) softmax probabilities; multilabel: sigmoids
    seconds: float
    map: float | None = None  # multilabel: macro mean average precision (inference/multilabel.py)
    losses: torch.Tensor | None = None  # (n,) each photo's loss (multilabel: its summed binary cross-entropy)

    @property
    def predictions(self):
        return self.probs.argmax(dim=1)


@torch.no_grad()
def evaluate_batches(model, loader, device, desc="val", progress=True, settings=None, processes=None,
                     multilabel=False):
    """Run the model over a labelled loader: loss, top-1 accuracy and every probability (multilabel: the
    loader's targets are bit masks; binary cross-entropy, sigmoids, subset accuracy and mAP).

    Under torchrun each rank evaluates its share and the results are gathered, in the loader's order.
    """
    model.eval()
    all_losses, all_targets, all_probs, start = [], [], [], time.perf_counter()
    for images, targets in progress_bar(loader, progress, desc=desc, unit="batch", leave=False):
        images, targets = batch_to_device(images, targets, device, settings)
        with precision(device, settings, training=False):
            logits = model(images).float()
        if multilabel:
            targets = multi_hot(targets, logits.shape[1])
            losses = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)
            all_losses.append(losses.cpu())
            all_probs.append(logits.sigmoid().cpu())
        else:
            all_losses.append(nn.functional.cross_entropy(logits, targets, reduction="none").cpu())
            all_probs.append(logits.softmax(dim=1).cpu())
        all_targets.append(targets.cpu())
    losses = torch.cat(all_losses) if all_losses else torch.zeros(0)
    targets = torch.cat(all_targets) if all_targets else torch.zeros(0, dtype=torch.long)
    probs = torch.cat(all_probs) if all_probs else torch.zeros(0, 0)
    if processes is not None and processes.active:
        losses, targets = distributed.gather_rows(losses, processes), distributed.gather_rows(targets, processes)
        probs = distributed.gather_rows(probs, processes)
    n = len(targets)
    if multilabel:
        accuracy = ((probs >= 0.5) == (targets > 0.5)).all(dim=1).sum().item() / n if n else 0.0
        return EvalResult(loss=losses.sum().item() / max(n, 1), accuracy=accuracy, targets=targets, probs=probs,
                          seconds=time.perf_counter() - start, losses=losses,
                          map=mean_average_precision(probs.numpy(), targets.numpy()))
    accuracy = (probs.argmax(dim=1) == targets).sum().item() / n if n else 0.0  # exactly 2/10, not float32 0.2000000029
    return EvalResult(loss=losses.sum().item() / max(n, 1), accuracy=accuracy, targets=targets, probs=probs,
                      seconds=time.perf_counter() - start, losses=losses)
