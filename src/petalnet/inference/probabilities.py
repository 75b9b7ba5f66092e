"""Logits -> probabilities -> the classes of a record, with NumPy: one softmax, one sigmoid, one top-k and one
label set for every model format (classifier.py), serve's batcher and export's int8 check.

    probs = softmax(logits)                   # float32 (N, C) -> (N, C), each row sums to 1
    probs = probabilities(logits, spec)       # softmax, or a multi-label model's sigmoid per class
    top_classes(probs[0], classes, k=3)       # [{"class": "roses", "prob": 0.91}, ...], most probable first
    label_set(probs[0], classes, thresholds)  # {"labels": ["roses", "tulips"], "probs": {"daisy": 0.02, ...}}
"""

import numpy as np


def softmax(logits):
    """Row-wise softmax of (N, C) logits, in their dtype (float32 stays float32)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def sigmoid(logits):
    """Element-wise logistic function, in the logits' dtype, without overflow for large negative logits."""
    logits = np.asarray(logits)
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1 / (1 + e), e / (1 + e)).astype(logits.dtype, copy=False)


def probabilities(logits, spec):
    """The probabilities a model of this InferenceSpec gives: softmax over classes, or with a multi-label
    spec a sigmoid per class."""
    return sigmoid(logits) if spec.multilabel else softmax(logits)


def thresholds_of(spec):
    """A multi-label spec's per-class thresholds (0.5 each when it stores none)."""
    return tuple(spec.thresholds) if spec.thresholds is not None else (0.5,) * len(spec.classes)


def top_classes(probs, classes, k):
    """The k most probable classes of one row of probabilities (ties: the lower class index first)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": classes[j], "prob": float(probs[j])} for j in order]


def label_set(probs, classes, thresholds):
    """A multi-label record's classes from one row of sigmoids: "labels", the classes at or above their
    thresholds, most probable first (ties: the lower class index first; [] when none), and "probs", every
    class's probability in the model's class order. Compared in float64, as evaluate's report compares."""
    order = np.argsort(-probs, kind="stable")
    given = np.asarray(probs, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)
    return {"labels": [classes[j] for j in order if given[j]],
            "probs": {name: float(p) for name, p in zip(classes, probs)}}
