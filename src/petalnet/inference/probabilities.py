"""Logits -> probabilities -> the top classes of a record, with NumPy: one softmax and one top-k for every
model format (classifier.py), serve's batcher and export's int8 check.

    probs = softmax(logits)                   # float32 (N, C) -> (N, C), each row sums to 1
    top_classes(probs[0], classes, k=3)       # [{"class": "roses", "prob": 0.91}, ...], most probable first
"""

import numpy as np


def softmax(logits):
    """Row-wise softmax of (N, C) logits, in their dtype (float32 stays float32)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def top_classes(probs, classes, k):
    """The k most probable classes of one row of probabilities (ties: the lower class index first)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": classes[j], "prob": float(probs[j])} for j in order]
