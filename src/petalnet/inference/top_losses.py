"""`evaluate --top-losses N`: the photos the model finds hardest to believe, and the classes it mixes up.

    report["top_losses"] = top_losses(result, paths, classes, 16)     # highest loss first
    report["confused_pairs"] = confused_pairs(report["confusion"], classes)
    print(format_top_losses(report))

A photo's loss is what training minimizes for it: the cross-entropy of its given class (a multi-label
model: its summed binary cross-entropy), so the highest losses are the photos whose label the model
disbelieves most, confidently wrong or barely right: where wrong labels and odd photos are found first
(fastai's plot_top_losses). A pair (given, predicted) counts the photos of one class predicted as another.
"""

from petalnet.inference.probabilities import label_set

TOP_PAIRS = 10  # confused pairs shown in the text report


def top_losses(result, paths, classes, count, thresholds=None):
    """The `count` photos with the highest loss, highest first (ties: the earlier photo): path, loss, given and
    predicted class with their probabilities (a multi-label model, `thresholds` its own: the given and
    predicted sets and every class's probability)."""
    order = sorted(range(len(paths)), key=lambda i: (-float(result.losses[i]), i))[:count]
    if result.targets.dim() == 2:
        return [{"path": str(paths[i]), "loss": float(result.losses[i]),
                 "given": [c for j, c in enumerate(classes) if result.targets[i, j] > 0.5],
                 "predicted": label_set(result.probs[i].numpy(), list(classes), thresholds)["labels"],
                 "probs": dict(zip(classes, map(float, result.probs[i])))} for i in order]
    rows = []
    for i in order:
        given, predicted = int(result.targets[i]), int(result.probs[i].argmax())
        rows.append({"path": str(paths[i]), "loss": float(result.losses[i]), "given": classes[given],
                     "given_probability": float(result.probs[i, given]), "predicted": classes[predicted],
                     "probability": float(result.probs[i, predicted])})
    return rows


def confused_pairs(confusion, classes):
    """[{"given", "predicted", "count"}] for every off-diagonal cell of the confusion matrix that is not 0, the
    largest first."""
    pairs = [{"given": classes[i], "predicted": classes[j], "count": int(n)}
             for i, row in enumerate(confusion) for j, n in enumerate(row) if i != j and n]
    return sorted(pairs, key=lambda pair: -pair["count"])


def format_top_losses(report):
    """The text report's lines for the top losses and, for a single-label model, the most-confused pairs."""
    lines = ["", f"top {len(report['top_losses'])} losses (highest first)"]
    for row in report["top_losses"]:
        if "probability" in row:
            said = f"given {row['given']} ({row['given_probability']:.3f}), predicted {row['predicted']} " \
                   f"({row['probability']:.3f})"
        else:
            said = f"given {', '.join(row['given']) or 'none'}, predicted {', '.join(row['predicted']) or 'none'}"
        lines.append(f"  {row['loss']:8.3f}  {row['path']}  {said}")
    if "confused_pairs" in report:
        pairs = report["confused_pairs"]
        lines += ["", f"most-confused pairs ({len(pairs)} with mistakes)"]
        lines += [f"  {pair['given']} -> {pair['predicted']}: {pair['count']}" for pair in pairs[:TOP_PAIRS]]
    return lines


def top_loss_caption(row):
    """A top-loss photo's title in the picture."""
    if "probability" in row:
        return f"given: {row['given']} ({row['given_probability']:.2f})\npred: {row['predicted']} " \
               f"({row['probability']:.2f}) loss {row['loss']:.2f}"
    return f"given: {', '.join(row['given']) or 'none'}\npred: {', '.join(row['predicted']) or 'none'} " \
           f"loss {row['loss']:.2f}"
