"""petalnet: train, evaluate and use image classifiers on folders of photos.

    from petalnet import load_classifier
    clf = load_classifier("runs/seed")
    clf.predict(["rose.jpg"])

The path of a photo through the package: images (decode) -> folders, split (which photos) ->
dataset, transforms (batches) -> models -> engine, train (checkpoint) -> classifier, predict, evaluate.
"""

__version__ = "0.2.0"
__all__ = ["load_classifier", "Classifier", "__version__"]


def __getattr__(name):
    # Imported on first use, so that `petalnet --help` does not wait for torch.
    if name in ("load_classifier", "Classifier"):
        from petalnet import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'petalnet' has no attribute {name!r}")
