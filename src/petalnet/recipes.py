"""Training recipes as plain data. Every value can be overridden by the `train` flag of the same name.

    petalnet train --recipe seed                   # the tutorial, reproduced
    petalnet train --recipe seed --epochs 3 --lr 1e-4
"""

SEED = {
    # The tutorial (WZMIAOMIAO deep-learning-for-image-processing, pytorch_classification/Test2_alexnet).
    "model": "alexnet_half",
    "epochs": 10,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 2e-4,
    "momentum": 0.9,  # sgd only
    "weight_decay": 0.0,
    "scheduler": "constant",
    "warmup_epochs": 0,
    "label_smoothing": 0.0,
    "image_size": 224,  # RandomResizedCrop(224) for training
    "crop_scale": [0.08, 1.0],  # torchvision's RandomResizedCrop defaults
    "hflip": True,
    "eval_resize": "squash",  # Resize((224, 224)), aspect ratio not kept, as the tutorial does
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "val_fraction": 0.1,
    "seed": 0,
}

RECIPES = {"seed": SEED}

# How photos become batches (pipeline.py); part of every run's config, not of what a recipe learns.
PIPELINE_DEFAULTS = {
    "pipeline": "cache",  # decode once, augment whole batches on the device; "pil": the tutorial's path
    "cache_size": None,  # short side of the decoded photos kept for cropping; None: image_size * 8/7 (256)
}
DEFAULT_RECIPE = "seed"

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "cosine")
EVAL_RESIZES = ("squash", "center_crop")
PIPELINES = ("cache", "pil")
