"""Training recipes as plain data. Every value can be overridden by the `train` flag of the same name.

    petalnet train --recipe seed                   # the tutorial, reproduced
    petalnet train --recipe fast                   # the default: 0.867-0.876 in 21-23 min on a 2-core CPU
                                                   # with bf16; without, --epochs 38: 0.840 in 26 min
    petalnet train --recipe best                   # the most accurate: 0.912 in ~1 h on a 2-core CPU,
                                                   # 0.924 in 6.5 min on one H200
    petalnet train --recipe seed --epochs 3 --lr 1e-4 --auto-augment trivial
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
    # Levers the tutorial does not use (all off here). Their effect is measured in the README's ablation.
    "dropout": 0.5,  # the tutorial's, before each hidden linear layer
    "auto_augment": "none",  # "trivial" (TrivialAugmentWide) or "randaugment" (2 ops, magnitude 9), per photo
    "color_jitter": 0.0,  # brightness, contrast and saturation jitter strength, per photo
    "random_erasing": 0.0,  # probability of erasing a random box of each photo
    "mixup_alpha": 0.0,  # MixUp's Beta(alpha, alpha); with cutmix_alpha too, one of them per batch
    "cutmix_alpha": 0.0,
    "min_image_size": None,  # progressive resizing: train at this size first, reaching image_size ...
    "resize_ramp": [0.0, 0.0],  # ... linearly between these fractions of the epochs (multiples of 16 px)
    "eval_image_size": None,  # evaluate (and predict) at this size; None: image_size
    "progressive_eval": False,  # while the training size grows, validate at it x eval_image_size / image_size
    "ema_decay": 0.0,  # exponential moving average of the weights (per step); val and best.pt use it
    "tta_flip": False,  # evaluate and predict on each photo and its mirror image, logits averaged
}

# Under 30 minutes on a 2-core laptop-class CPU (the README's time-to-accuracy table), alexnet_half.
FAST = {
    **SEED,
    "epochs": 90,
    "optimizer": "sgd",  # nesterov; beat AdamW (lr 1e-3, wd 0.05) by 3 points in the ablation, 2-3 at full length
    "lr": 0.02,
    "weight_decay": 5e-4,
    "scheduler": "cosine",
    "warmup_epochs": 3,
    "label_smoothing": 0.1,
    "image_size": 208,
    "min_image_size": 128,  # progressive resizing: 128 px for the first 10% of the epochs, 208 px by 75%
    "resize_ramp": [0.1, 0.75],
    "crop_scale": [0.25, 1.0],
    "auto_augment": "none",  # TrivialAugment: 0.855/0.861 with it, 0.867/0.876 without (seeds 0/1, full length)
    "eval_image_size": 240,
    "progressive_eval": True,  # 144 px val while training at 128, ..., 240 once training reaches 208
    "ema_decay": 0.999,
}

# No time limit: fast's levers, longer, at full resolution, with test-time flips. 0.912 val accuracy
# (epoch 196 of 200) in 62 minutes on the 2-core CPU; 0.9245 (epoch 175) in 6.5 minutes on one H200 (README).
BEST = {
    **FAST,
    "epochs": 200,
    "image_size": 224,
    "min_image_size": 128,
    "eval_image_size": 256,
    "auto_augment": "trivial",  # as measured (0.912); fast dropped it after best's run
    "tta_flip": True,
}

RECIPES = {"seed": SEED, "fast": FAST, "best": BEST}

# How photos become batches (pipeline.py); part of every run's config, not of what a recipe learns.
PIPELINE_DEFAULTS = {
    "pipeline": "cache",  # decode once, augment whole batches on the device; "pil": the tutorial's path
    "cache_size": None,  # short side of the decoded photos kept for cropping; None: image_size * 8/7 (256)
}
DEFAULT_RECIPE = "fast"  # it reaches seed's best accuracy sooner and ends 17 points higher (README)

OPTIMIZERS = ("adam", "adamw", "sgd")
AUTO_AUGMENTS = ("none", "trivial", "randaugment")
SCHEDULERS = ("constant", "cosine")
EVAL_RESIZES = ("squash", "center_crop")
PIPELINES = ("cache", "pil")
