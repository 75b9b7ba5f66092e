"""petalnet: train, evaluate and use image classifiers on folders of photos.

    from petalnet import load_classifier, train
    train("flower_photos", "runs/seed", recipe="seed")   # or train(config=TrainConfig(...), out=...)
    clf = load_classifier("runs/seed")
    clf.predict(["rose.jpg"])

The path of a photo through the package is its folder tree (docs/architecture.md): data/ (photos on
disk) -> pipeline/ (tensors, batches) -> models/ (networks, checkpoints) -> training/ -> inference/
(predictions) -> serving/ (HTTP); config/ holds what a run learns, devices/ where it runs.
"""

__version__ = "0.2.0"
__all__ = ["load_classifier", "Classifier", "train", "__version__"]


def __getattr__(name):
    # Imported on first use, so that `petalnet --help` does not wait for torch.
    if name in ("load_classifier", "Classifier"):
        from petalnet.inference import classifier

        return getattr(classifier, name)
    if name == "train":
        from petalnet.training.train import train

        return train
    raise AttributeError(f"module 'petalnet' has no attribute {name!r}")
