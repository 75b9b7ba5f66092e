"""Photos with several labels: how label sets travel as integers, and how a multi-label model is scored.

    targets = multi_hot(bitmasks, num_classes)            # int64 (n,) bit masks -> float (n, C) 0/1
    mask = label_mask((0, 3))                              # the photo's classes as one integer: 0b1001
    thresholds = best_f1_thresholds(probs, targets)        # per class, chosen on val (train stores them)
    report = multilabel_report(probs, targets, thresholds) # map, per class AP / precision / recall / F1, ...

A label set travels through the pipeline (stores, loaders, torchrun's shares) as one int64 bit mask per photo,
so everything built for one class index a photo carries it unchanged; MAX_CLASSES classes fit. Average
precision is the area under the precision-recall steps (scikit-learn's average_precision_score: no
interpolation); a class without a positive photo has no AP and is left out of the mean, as scikit-learn does.
"""

import numpy as np
import torch

MAX_CLASSES = 63  # bits of an int64 bit mask, the sign bit aside
DEFAULT_THRESHOLD = 0.5


def label_mask(labels):
    """A label set (class indices) as one int bit mask."""
    mask = 0
    for label in labels:
        mask |= 1 << int(label)
    return mask


def multi_hot(masks, num_classes):
    """int64 bit masks (n,) -> float 0/1 targets (n, num_classes)."""
    bits = torch.arange(num_classes, device=masks.device)
    return ((masks.long().unsqueeze(1) >> bits) & 1).float()


def average_precision(scores, positives):
    """AP of one class: sum over the ranks of each positive of (precision there) / positives; None: no positive."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    total = int(positives.sum())
    if total == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, positives = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last rank of each distinct score
    hits = np.cumsum(positives)[last]
    precision, recall = hits / (last + 1), hits / total
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_thresholds(probs, targets, fallback=DEFAULT_THRESHOLD):
    """Per class, the probability threshold with the best F1 on these photos (the midpoint between the
    chosen score and the next lower one, so that a photo scored like the chosen one is in); `fallback`
    for a class without a positive photo."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    chosen = []
    for c in range(probs.shape[1]):
        scores, positives = probs[:, c], targets[:, c]
        if not positives.any():
            chosen.append(float(fallback))
            continue
        order = np.argsort(-scores, kind="stable")
        ranked, hits = scores[order], np.cumsum(positives[order])
        last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
        f1 = 2 * hits[last] / (last + 1 + positives.sum())
        best = last[int(np.argmax(f1))]
        below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
        chosen.append(float((ranked[best] + below) / 2))
    return tuple(chosen)


def _f1(tp, fp, fn):
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def multilabel_report(probs, targets, thresholds, classes=None):
    """Everything `evaluate` reports for a multi-label model: `map` (macro mean AP over classes with a
    positive), per class AP / precision / recall / F1 / threshold / support, micro and macro F1, subset
    accuracy (every label right) and Hamming loss (the share of wrong photo-class decisions)."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    given = probs >= np.asarray(thresholds)[None, :]
    names = list(classes) if classes is not None else [str(i) for i in range(probs.shape[1])]
    per_class, aps, f1s = {}, [], []
    for c, name in enumerate(names):
        tp = int((given[:, c] & targets[:, c]).sum())
        fp, fn = int((given[:, c] & ~targets[:, c]).sum()), int((~given[:, c] & targets[:, c]).sum())
        ap = average_precision(probs[:, c], targets[:, c])
        per_class[name] = {"ap": ap, "precision": tp / (tp + fp) if tp + fp else 0.0,
                           "recall": tp / (tp + fn) if tp + fn else 0.0, "f1": _f1(tp, fp, fn),
                           "threshold": float(thresholds[c]), "support": int(targets[:, c].sum())}
        aps += [ap] if ap is not None else []
        f1s.append(per_class[name]["f1"])
    tp, fp, fn = int((given & targets).sum()), int((given & ~targets).sum()), int((~given & targets).sum())
    n = len(probs)
    return {"map": float(np.mean(aps)) if aps else None, "micro_f1": _f1(tp, fp, fn),
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "subset_accuracy": float((given == targets).all(axis=1).mean()) if n else 0.0,
            "hamming_loss": float((given != targets).mean()) if n else 0.0, "per_class": per_class}


def mean_average_precision(probs, targets):
    """Macro mean AP over the classes with a positive photo (None when none has)."""
    probs, targets = np.asarray(probs), np.asarray(targets) > 0.5
    aps = [ap for ap in (average_precision(probs[:, c], targets[:, c]) for c in range(probs.shape[1]))
           if ap is not None]
    return float(np.mean(aps)) if aps else None
