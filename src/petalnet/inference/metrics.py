"""Classification metrics: confusion matrix, per-class P/R/F1, balanced accuracy, macro/weighted F1, a Wilson
interval for accuracy (from class indices), top-k accuracy and calibration (from probabilities).

    report = {**classification_report(targets, predictions, classes), **probability_report(targets, probs)}
    report = label_set_report(probs, targets, thresholds, classes, paths)   # a multi-label model's

A multi-label model's report (label_set_report) holds mAP, micro and macro F1, subset accuracy, Hamming loss
and per class AP / precision / recall / F1 at its thresholds (multilabel.py), and the photos with the most
wrong labels; precision_recall_curve draws its per-class picture.
"""

import math
from statistics import NormalDist

import numpy as np
import torch

from petalnet.inference.multilabel import multilabel_report

CALIBRATION_BINS = 15  # equal-width bins of the top-1 probability, as in Guo et al. 2017
TOP_K = (1, 3, 5)  # top-k accuracies reported, each k below the number of classes (1 always)


def confusion_matrix(targets, predictions, num_classes):
    """confusion[i][j] counts photos of true class i predicted as class j."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    if len(targets):
        matrix.index_put_((targets.long(), predictions.long()), torch.ones(len(targets), dtype=torch.long),
                          accumulate=True)
    return matrix


def per_class_metrics(confusion, classes):
    """{class: {precision, recall, f1, support}}; 0.0 where a ratio has nothing to divide by."""
    result = {}
    for i, name in enumerate(classes):
        true_positive = confusion[i, i].item()
        predicted = confusion[:, i].sum().item()
        support = confusion[i, :].sum().item()
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[name] = {"precision": precision, "recall": recall, "f1": f1,
                        "support": support}
    return result


def wilson_interval(successes, n, level=0.95):
    """The Wilson score interval of a proportion (closed form); (0.0, 1.0) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p, z2 = successes / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo, hi = center - half, center + half  # exactly 0 at no successes, 1 at all (not 3e-17 off)
    return (0.0 if successes == 0 else max(0.0, lo)), (1.0 if successes == n else min(1.0, hi))


def summary_metrics(confusion, per_class):
    """Balanced accuracy (mean recall over the classes that have photos), macro F1 (mean F1 over the classes
    that have photos or predictions: a class absent from both says nothing) and support-weighted F1."""
    metrics = list(per_class.values())
    support, predicted = confusion.sum(dim=1).tolist(), confusion.sum(dim=0).tolist()
    present = [m for m, s in zip(metrics, support) if s]
    seen = [m for m, s, p in zip(metrics, support, predicted) if s or p]
    n = sum(support)
    return {"balanced_accuracy": sum(m["recall"] for m in present) / len(present) if present else 0.0,
            "macro_f1": sum(m["f1"] for m in seen) / len(seen) if seen else 0.0,
            "weighted_f1": sum(m["f1"] * m["support"] for m in present) / n if n else 0.0}


def classification_report(targets, predictions, classes):
    """The `evaluate --json` object's counting part: accuracy, n, classes, per_class, confusion, then
    accuracy_ci95 (Wilson, 95%), balanced_accuracy, macro_f1, weighted_f1."""
    confusion = confusion_matrix(targets, predictions, len(classes))
    n, correct = int(confusion.sum()), int(confusion.diag().sum())
    per_class = per_class_metrics(confusion, classes)
    return {"accuracy": correct / n if n else 0.0, "n": n, "classes": list(classes), "per_class": per_class,
            "confusion": confusion.tolist(), "accuracy_ci95": list(wilson_interval(correct, n)),
            "accuracy_ci_method": "wilson", **summary_metrics(confusion, per_class)}


def top_k_accuracy(targets, probs, ks=TOP_K):
    """{"k": share of photos whose true class is among the k most probable}, for each k below the number
    of classes (k=1 always). Ties rank the lower class index first, as argmax does, so top-1 == accuracy."""
    num_classes = probs.shape[1] if probs.dim() == 2 else 0
    order = torch.sort(probs, dim=1, descending=True, stable=True).indices if len(targets) else None
    result = {}
    for k in ks:
        if k != 1 and k >= num_classes:
            continue
        hits = 0 if order is None else int((order[:, :k] == targets.long()[:, None]).any(dim=1).sum())
        result[str(k)] = hits / len(targets) if len(targets) else 0.0
    return result


def calibration(targets, probs, bins=CALIBRATION_BINS):
    """Expected calibration error over `bins` equal-width bins of the top-1 probability, bin m holding
    confidences in (edges[m], edges[m+1]] (the first also 0): ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|.
    Returns (ece, {"bins", "edges", "count", "accuracy", "confidence"}); an empty bin's accuracy and
    confidence are None."""
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    table = {"bins": bins, "edges": edges.tolist(), "count": [0] * bins, "accuracy": [None] * bins,
             "confidence": [None] * bins}
    n = len(targets)
    if not n:
        return 0.0, table
    confidence, predicted = probs.double().max(dim=1)
    correct = (predicted == targets.long()).double()
    which = torch.searchsorted(edges[1:-1].contiguous(), confidence.contiguous())  # side left: (lo, hi]
    ece = 0.0
    for m in range(bins):
        members = which == m
        size = int(members.sum())
        if size:
            accuracy, mean_confidence = correct[members].mean().item(), confidence[members].mean().item()
            table["count"][m], table["accuracy"][m], table["confidence"][m] = size, accuracy, mean_confidence
            ece += size / n * abs(accuracy - mean_confidence)
    return ece, table


def probability_report(targets, probs):
    """The part of the report that needs every probability: top_k_accuracy, ece, calibration."""
    ece, bins = calibration(targets, probs)
    return {"top_k_accuracy": top_k_accuracy(targets, probs), "ece": ece, "calibration": bins}


def format_report(report):
    classes = report["classes"]
    width = max(12, *(len(c) + 2 for c in classes))
    lines = [*headline(report), "",
             f"{'class':<{width}}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for name in classes:
        m = report["per_class"][name]
        lines.append(f"{name:<{width}}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['support']:>9}")
    macro = {k: sum(report["per_class"][c][k] for c in classes) / len(classes) for k in ("precision", "recall", "f1")}
    lines.append(f"{'macro avg':<{width}}{macro['precision']:>10.3f}{macro['recall']:>8.3f}{macro['f1']:>8.3f}"
                 f"{report['n']:>9}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    col = max(6, *(len(c) + 1 for c in classes))
    lines.append(" " * width + "".join(f"{c:>{col}}" for c in classes))
    for name, row in zip(classes, report["confusion"]):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{col}}" for v in row))
    return "\n".join(lines)


def headline(report):
    """The report's first lines: accuracy with its interval, then the other summary numbers that are there."""
    first = f"accuracy {report['accuracy']:.4f} on {report['n']} photos"
    if "accuracy_ci95" in report:
        lo, hi = report["accuracy_ci95"]
        first += f" (95% CI {lo:.3f}-{hi:.3f}, {report.get('accuracy_ci_method', 'wilson').capitalize()})"
    parts = [f"{label} {report[key]:.3f}" for key, label in
             (("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1"))
             if key in report]
    parts += [f"top-{k} {v:.3f}" for k, v in report.get("top_k_accuracy", {}).items() if k != "1"]
    if "ece" in report:
        parts.append(f"ECE {report['ece']:.3f} ({report['calibration']['bins']} bins)")
    return [first, ", ".join(parts)] if parts else [first]


MOST_WRONG = 20  # photos listed in a multi-label report's most_wrong


def precision_recall_curve(scores, positives):
    """One class's (precision, recall) arrays at each distinct score taken as the threshold, highest first: the
    steps multilabel.py's average_precision sums; None when the class has no positive photo."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    if not positives.any():
        return None
    order = np.argsort(-scores, kind="stable")
    ranked, found = scores[order], np.cumsum(positives[order])
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last rank of each distinct score
    return found[ends] / (ends + 1), found[ends] / positives.sum()


def most_wrong(probs, targets, thresholds, classes, paths, limit=MOST_WRONG):
    """The photos with the most wrong class decisions at the thresholds, most wrong first (ties: the larger
    summed distance of the probabilities from the labels first, then the evaluated order): [{"path", "given",
    "predicted" (most probable first), "wrong"}]."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    given = probs >= np.asarray(thresholds, dtype=np.float64)[None, :]
    wrong, distance = (given != targets).sum(axis=1), np.abs(probs - targets).sum(axis=1)
    chosen = sorted(np.flatnonzero(wrong), key=lambda i: (-wrong[i], -distance[i]))[:limit]
    return [{"path": str(paths[i]), "given": [classes[c] for c in np.flatnonzero(targets[i])],
             "predicted": [classes[c] for c in np.argsort(-probs[i], kind="stable") if given[i, c]],
             "wrong": int(wrong[i])} for i in chosen]


def label_set_report(probs, targets, thresholds, classes, paths):
    """The `evaluate --json` object of a multi-label model: task, map, micro_f1, macro_f1, subset_accuracy,
    hamming_loss, n, classes, per_class (multilabel.py's multilabel_report), most_wrong."""
    scores = multilabel_report(probs, targets, thresholds, classes)
    per_class = scores.pop("per_class")
    return {"task": "multilabel", **scores, "n": len(probs), "classes": list(classes), "per_class": per_class,
            "most_wrong": most_wrong(probs, targets, thresholds, classes, paths)}


def format_label_report(report):
    """A multi-label report as text: the summary line, then AP, precision, recall, F1, threshold and support
    per class."""
    classes, width = report["classes"], max(12, *(len(c) + 2 for c in report["classes"]))
    summary = "mAP " + ("n/a (no class has a positive photo)" if report["map"] is None else f"{report['map']:.4f}")
    lines = [f"{summary} on {report['n']} photos, micro F1 {report['micro_f1']:.3f}, macro F1 "
             f"{report['macro_f1']:.3f}, subset accuracy {report['subset_accuracy']:.3f}, Hamming loss "
             f"{report['hamming_loss']:.3f}", "",
             f"{'class':<{width}}{'AP':>7}{'precision':>11}{'recall':>8}{'f1':>8}{'threshold':>11}{'support':>9}"]
    for name in classes:
        m = report["per_class"][name]
        ap = "n/a" if m["ap"] is None else f"{m['ap']:.3f}"
        lines.append(f"{name:<{width}}{ap:>7}{m['precision']:>11.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}"
                     f"{m['threshold']:>11.3f}{m['support']:>9}")
    return "\n".join(lines)
