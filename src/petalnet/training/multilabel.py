"""Training on photos with several labels: which task a run has, its loss, and what it keeps from val.

    config = resolve_task(config, photos)        # auto -> single or multilabel, from the photos
    criterion = multilabel_loss(config)          # BCE or asymmetric loss over bit-mask targets
    spec = with_thresholds(spec, result)         # each class's threshold: the best F1 on this epoch's val

A multi-label network is a single-label one (a logit a class); only its loss, its output function (a sigmoid a
class) and how a photo's classes are read (each class at or above its own threshold) differ. Label sets travel
as bit masks (inference/multilabel.py). Thresholds are chosen on the val photos each epoch and stored in the
checkpoint with the weights val scored, so best.pt's thresholds are those of best.pt's weights.

The loss sums over classes and averages over photos (one photo's binary cross-entropies add up to about what
one softmax cross-entropy is, so the recipes' learning rates carry over). Label smoothing moves each target
toward 1/2 by half the smoothing. The asymmetric loss (Ridnik et al., ICCV 2021) down-weights easy negatives:
(1 - p)^gamma_pos log p for positives and p_m^gamma_neg log(1 - p_m) for negatives, p_m = max(p - clip, 0).
"""

import dataclasses

import torch
from torch import nn

from petalnet.config.train import validate_config
from petalnet.errors import UserError
from petalnet.inference.multilabel import MAX_CLASSES, best_f1_thresholds, label_mask, multi_hot

ASL_GAMMA_NEG, ASL_GAMMA_POS, ASL_CLIP = 4.0, 0.0, 0.05  # the paper's defaults for multi-label photos


def resolve_task(config, multilabel_data, classes):
    """The config with its task settled: auto follows the data; single-label data may train as multilabel
    (each photo's one class as a set of one); several labels a photo cannot train as single."""
    task = config.task if config.task != "auto" else ("multilabel" if multilabel_data else "single")
    if task == "single" and multilabel_data:
        raise UserError("--task single needs one class a photo: these photos have a labels column (several "
                        "classes a photo); drop --task or pass --task multilabel")
    if task == "multilabel" and len(classes) > MAX_CLASSES:
        raise UserError(f"multi-label training takes at most {MAX_CLASSES} classes, these photos have {len(classes)}")
    if task == config.task:
        return config
    resolved = dataclasses.replace(config, task=task)
    validate_config(resolved)
    return resolved


def as_masks(labels, multilabel_data):
    """A part's labels as the bit masks a multi-label run trains on."""
    return [label_mask(label if multilabel_data else (label,)) for label in labels]


def with_masks(photos):
    """A run's TrainData (training/photos.py) with its labels as bit masks."""
    return dataclasses.replace(photos, train_labels=as_masks(photos.train_labels, photos.multilabel),
                               val_labels=as_masks(photos.val_labels, photos.multilabel))


class MultiLabelLoss(nn.Module):
    """Binary cross-entropy (or asymmetric loss) of a logit a class against bit-mask targets, summed over
    classes and averaged over photos."""

    def __init__(self, kind="bce", label_smoothing=0.0):
        super().__init__()
        self.kind, self.label_smoothing = kind, label_smoothing

    def forward(self, logits, masks):
        logits = logits.float()
        targets = multi_hot(masks, logits.shape[1])
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / 2
        if self.kind == "bce":
            losses = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        else:
            losses = asymmetric_loss(logits, targets)
        return losses.sum(dim=1).mean()


def asymmetric_loss(logits, targets, gamma_neg=ASL_GAMMA_NEG, gamma_pos=ASL_GAMMA_POS, clip=ASL_CLIP):
    """Element-wise asymmetric loss (targets may be smoothed: each element weighs both sides)."""
    p = torch.sigmoid(logits)
    p_shifted = (p - clip).clamp(min=0)
    log_p = nn.functional.logsigmoid(logits)
    log_not = torch.log((1 - p_shifted).clamp(min=1e-8))
    positive = (1 - p) ** gamma_pos * log_p if gamma_pos else log_p
    negative = p_shifted ** gamma_neg * log_not
    return -(targets * positive + (1 - targets) * negative)


def multilabel_loss(config):
    return MultiLabelLoss(config.multilabel_loss, config.label_smoothing)


def with_thresholds(spec, result):
    """A multi-label InferenceSpec with each class's best-F1 threshold on this val result."""
    thresholds = best_f1_thresholds(result.probs.numpy(), result.targets.numpy())
    return dataclasses.replace(spec, task="multilabel", thresholds=thresholds)
