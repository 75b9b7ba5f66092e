"""Classification metrics from true and predicted class indices: confusion matrix, per-class P/R/F1."""

import torch


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


def classification_report(targets, predictions, classes):
    """The `evaluate --json` object: accuracy, n, classes, per_class, confusion."""
    confusion = confusion_matrix(targets, predictions, len(classes))
    n = int(confusion.sum())
    accuracy = confusion.diag().sum().item() / n if n else 0.0
    return {"accuracy": accuracy, "n": n, "classes": list(classes),
            "per_class": per_class_metrics(confusion, classes), "confusion": confusion.tolist()}


def format_report(report):
    classes = report["classes"]
    width = max(12, *(len(c) + 2 for c in classes))
    lines = [f"accuracy {report['accuracy']:.4f} on {report['n']} photos", "",
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
