"""Training recipes as data: each a named set of overrides of config/train.py's TrainConfig, whose
defaults are the tutorial's. Any value can be overridden again by the `train` flag of the same name.

    petalnet train --recipe seed                   # the tutorial, reproduced
    petalnet train --recipe sprint                 # the default: from scratch, ResNet-9, 0.88 in minutes
    petalnet train --recipe fast                   # the tutorial's model, its accuracy seed never reaches
    petalnet train --recipe best                   # the most accurate from scratch, with no time limit
    petalnet train --recipe finetune               # from ImageNet weights (offline): the most accurate soonest
    petalnet train --recipe seed --epochs 3 --lr 1e-4 --auto-augment trivial

Their accuracy and time, with dates and machines, are in docs/recipes.md and docs/results-cpu.md.
"""

SEED = {}  # the tutorial: TrainConfig's defaults

# Under 30 minutes on a 2-core laptop-class CPU (docs/results-cpu.md), alexnet_half.
FAST = {
    "epochs": 90,
    "optimizer": "sgd",  # beat AdamW (lr 1e-3, wd 0.05) in the ablation and at full length
    "lr": 0.02,
    "weight_decay": 5e-4,
    "scheduler": "cosine",
    "warmup_epochs": 3,
    "label_smoothing": 0.1,
    "image_size": 208,
    "min_image_size": 128,  # progressive resizing: 128 px for the first 10% of the epochs, 208 px by 75%
    "resize_ramp": (0.1, 0.75),
    "crop_scale": (0.25, 1.0),
    "auto_augment": "none",  # TrivialAugment cost accuracy at full length (docs/ablation.md)
    "eval_image_size": 240,
    "progressive_eval": True,  # 144 px val while training at 128, ..., 240 once training reaches 208
    "ema_decay": 0.999,
}

# No time limit: fast's levers, longer, at full resolution, with test-time flips.
BEST = {
    **FAST,
    "epochs": 200,
    "image_size": 224,
    "min_image_size": 128,
    "eval_image_size": 256,
    "auto_augment": "trivial",  # as measured for best; fast dropped it after best's run
    "tta_flip": True,
}

# A practitioner's transfer learning: ImageNet weights that ship offline, the head first, then the body at
# lower rates for earlier layers; the weights' own normalization (config/train.py follows --pretrained).
FINETUNE = {
    "model": "efficientnet_lite0",
    "pretrained": "imagenet",
    "epochs": 6,
    "head_epochs": 1,  # the new head alone first: a random head's gradients would shake the pretrained body
    "freeze_fraction": 0.3,  # the first 30% of the layers (high resolution, costly backward) stay as learned
    "body_lr": 0.1,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.01,
    "scheduler": "cosine",
    "label_smoothing": 0.1,
    "image_size": 192,  # trained smaller than it is evaluated (FixRes): cheaper steps, higher val accuracy
    "eval_image_size": 224,
    "eval_resize": "center_crop",
    "crop_scale": (0.35, 1.0),
}

# From scratch, soonest: a ResNet-9 whose first layer whitens 4x4 patches (airbench's trick), small
# photos growing to 128 px, validated larger and mirrored; 30 epochs fit 2-3 minutes of a 2-core CPU.
SPRINT = {
    "model": "resnet9",
    "epochs": 30,
    "batch_size": 32,
    "optimizer": "sgd",
    "lr": 0.07,
    "weight_decay": 5e-4,
    "scheduler": "cosine",
    "warmup_epochs": 2,
    "label_smoothing": 0.1,
    "image_size": 128,
    "min_image_size": 96,  # 96 px for the first 10% of the epochs, 128 px by 75%
    "resize_ramp": (0.1, 0.75),
    "crop_scale": (0.35, 1.0),
    "eval_image_size": 160,
    "progressive_eval": True,
    "tta_flip": True,
}

RECIPES = {"seed": SEED, "fast": FAST, "best": BEST, "finetune": FINETUNE, "sprint": SPRINT}
DEFAULT_RECIPE = "sprint"  # from scratch: past fast's final accuracy in a fifth of its time (docs/recipes.md)
