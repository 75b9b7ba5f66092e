"""Imbalanced classes: loss weights and class-balanced draws (`train --class-weights`, `--sampler`).

    weights = balanced_weights(labels, num_classes)     # float (C,): n / (C * count_c)
    order = balanced_draw(labels, n, generator)         # n photo positions, classes equally likely

balanced_weights is scikit-learn's class_weight="balanced": the weighted loss counts every class as if it
had as many photos as the average class. balanced_draw is torch's WeightedRandomSampler with weight
1 / count_c per photo: each draw picks a class uniformly, then one of its photos; photos of a small class
repeat within an epoch, those of a large one are skipped now and then.
"""

import torch

from petalnet.errors import UserError


def class_counts(labels, num_classes):
    return torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_classes)


def balanced_weights(labels, num_classes, classes=None):
    """Loss weights n / (C * count_c); UserError naming a class without train photos."""
    counts = class_counts(labels, num_classes)
    if num_classes < 2:
        raise UserError("--class-weights balanced needs at least two classes")
    empty = [classes[k] if classes else str(k) for k in range(num_classes) if counts[k] == 0]
    if empty:
        raise UserError(f"--class-weights balanced: class(es) {', '.join(empty)} have no train photos")
    return (counts.sum() / (num_classes * counts)).float()


def balanced_draw(labels, n, generator):
    """n positions into `labels`, drawn with replacement, each class equally likely."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(labels)
    return torch.multinomial(1.0 / counts[labels].double(), n, replacement=True, generator=generator)
