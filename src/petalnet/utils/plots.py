"""Pictures of a run, drawn with matplotlib's file-only backend and saved atomically."""

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from petalnet.errors import UserError  # noqa: E402
from petalnet.utils.fileio import atomic_path  # noqa: E402


def picture_format(path):
    """The matplotlib format a path's suffix asks for (png when there is none), or UserError."""
    kind = Path(path).suffix.lower().lstrip(".") or "png"
    kind = "jpeg" if kind == "jpg" else kind
    if kind not in ("png", "jpeg", "pdf", "svg"):
        raise UserError(f"cannot save a picture as .{kind}: use .png, .jpg, .pdf or .svg")
    return kind


def save_figure(fig, path, dpi=100):
    """Save as the path's suffix says (png, jpg, pdf, svg)."""
    kind = picture_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=kind, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def plot_curves(history, path, title="training curves"):
    """Loss (train and val) and val accuracy per epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    ax_loss.plot(epochs, [row["val_loss"] for row in history], "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [row["val_acc"] for row in history], "o-", color="tab:green")
    best = max(history, key=lambda row: row["val_acc"])
    ax_acc.annotate(f"best {best['val_acc']:.3f}", (best["epoch"], best["val_acc"]),
                    textcoords="offset points", xytext=(0, -14), ha="center")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="val accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    save_figure(fig, path)


def image_grid(tiles, path, title=None, columns=6):
    """Save [(PIL image, caption), ...] as one picture: a single photo, or a labelled grid."""
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False,
                             layout="constrained")  # room for the title above the first row's captions
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, caption) in zip(axes.flat, tiles):
        ax.imshow(image)
        ax.set_title(caption, fontsize=9 if columns > 1 else 12)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_confusion(confusion, classes, path, title="confusion matrix"):
    """Counts and row-normalized (recall) matrices side by side, true class on the rows."""
    counts = np.asarray(confusion, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = 1.6 + 0.7 * len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 0.5, size))
    for ax, values, name, fmt in ((axes[0], counts, "counts", "{:.0f}"),
                                  (axes[1], normalized, "row-normalized (recall)", "{:.2f}")):
        ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
               title=name)
        ax.set_xticklabels(classes, rotation=45, ha="right")
        ax.set_yticklabels(classes)
        peak = values.max() or 1
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > 0.6 * peak else "black")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_reliability(calibration, ece, path, title="reliability"):
    """A reliability diagram: accuracy per confidence bin as bars against the diagonal (perfect calibration),
    the gap to each bin's mean confidence hatched, its photo count above it; the ECE in the title.

    calibration: {"edges": [bins + 1 floats], "count", "accuracy", "confidence": one value per bin (None when
    the bin is empty)}."""
    edges = np.asarray(calibration["edges"], dtype=float)
    lefts, widths = edges[:-1], np.diff(edges)
    filled = [m for m, c in enumerate(calibration["count"]) if c]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.bar(lefts[filled], [calibration["accuracy"][m] for m in filled], width=widths[filled], align="edge",
           color="tab:blue", edgecolor="black", alpha=0.8, label="accuracy in the bin")
    accuracy = np.array([calibration["accuracy"][m] for m in filled], dtype=float)
    confidence = np.array([calibration["confidence"][m] for m in filled], dtype=float)
    ax.bar(lefts[filled], np.abs(confidence - accuracy), bottom=np.minimum(accuracy, confidence),
           width=widths[filled], align="edge", color="tab:red", alpha=0.3, hatch="//", edgecolor="tab:red",
           label="gap to the mean confidence")
    for m in filled:
        ax.text(lefts[m] + widths[m] / 2, min(calibration["accuracy"][m] + 0.01, 0.97),
                str(calibration["count"][m]), ha="center", va="bottom", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy",
           title=f"{title}\nECE {ece:.4f} ({len(widths)} equal-width bins, n={sum(calibration['count'])})")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def plot_run_comparison(curves, path, title="val accuracy by run"):
    """Val accuracy of several runs, against epochs and against wall time, one line per run.

    curves: [(name, epochs, accuracies, seconds or None), ...]; a run without timings is left out of the
    wall-time panel (its legend says so)."""
    fig, (ax_epoch, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, (name, epochs, accuracies, seconds) in enumerate(curves):
        color = f"C{k % 10}"
        ax_epoch.plot(epochs, accuracies, "o-", color=color, label=name, markersize=3)
        if seconds is not None:
            ax_time.plot(seconds, accuracies, "o-", color=color, label=name, markersize=3)
        else:
            ax_time.plot([], [], "o-", color=color, label=f"{name} (no timings)")
    ax_epoch.set(xlabel="epoch", ylabel="top-1 accuracy", title="against epochs", ylim=(0, 1))
    ax_epoch.xaxis.get_major_locator().set_params(integer=True)
    ax_time.set(xlabel="wall time (s)", ylabel="top-1 accuracy", title="against wall time", ylim=(0, 1))
    for ax in (ax_epoch, ax_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_precision_recall(curves, path, title="precision-recall per class"):
    """One precision-recall curve per class of a multi-label model, its AP in the legend, a dot where its
    threshold puts it.

    curves: [(name, precision, recall, ap, (recall, precision) at the threshold), ...]; a class without a
    positive photo has precision, recall and ap None (no curve; its legend says so)."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for k, (name, precision, recall, ap, point) in enumerate(curves):
        color = f"C{k % 10}"
        if precision is None:
            ax.plot([], [], color=color, label=f"{name} (no positive photo)")
            continue
        # AP sums precision over each step of recall: a step up to each point draws that area
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", color=color,
                label=f"{name} (AP {ap:.3f})")
        ax.plot(*point, "o", color=color, markersize=5)
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title=f"{title}\n(dots: the stored thresholds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
