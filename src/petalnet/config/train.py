"""What a training run learns with: every setting declared once, typed, with its help and allowed values.

    config = resolve_config("fast", {"epochs": 30})     # a recipe (recipes.py), some values overridden
    config.lr, config.image_size                         # typed attributes; the object is frozen
    to_dict(config)                                      # plain JSON, as config.json and checkpoints keep it

The `train` flags are made from these fields (utils/fields.py: --batch-size for batch_size, ...); each
default is the tutorial's (the seed recipe). How fast a run goes on a device (amp, workers, ...) is not
here: it does not change what a run learns (devices/settings.py).
"""

import dataclasses
import functools
from dataclasses import dataclass

from petalnet.config.recipes import DEFAULT_RECIPE, RECIPES
from petalnet.errors import UserError
from petalnet.models.names import check_model_name
from petalnet.data.settings import CheckSettings, SplitSettings
from petalnet.devices.options import device_setting
from petalnet.utils.fields import PlainValues, SettingError, check_fields, setting, setting_like

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "cosine")
TASKS = ("auto", "single", "multilabel")
MULTILABEL_LOSSES = ("bce", "asl")
AUTO_AUGMENTS = ("none", "trivial", "randaugment")
EVAL_RESIZES = ("squash", "center_crop")
CLASS_WEIGHTS = ("none", "balanced")
SAMPLERS = ("uniform", "balanced")
PIPELINES = ("cache", "pil")
FRACTION = {"at_least": 0.0, "at_most": 1.0}


@dataclass(frozen=True)
class TrainConfig:
    # The tutorial (WZMIAOMIAO deep-learning-for-image-processing, pytorch_classification/Test2_alexnet).
    model: str = setting("alexnet_half", "the network: alexnet_half is the tutorial's, alexnet_half_bn adds batch "
                         "norm; torchvision's (resnet18, mobilenet_v3_large, convnext_tiny, ...), efficientnet_lite0, "
                         "timm/NAME ('petalnet models' lists them)")
    epochs: int = setting(10, "number of epochs", at_least=1)
    batch_size: int = setting(32, "images per training step", at_least=1)
    lr: float = setting(2e-4, "learning rate", above=0)
    optimizer: str = setting("adam", "optimizer (sgd is nesterov)", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "sgd momentum (nesterov)", at_least=0)
    weight_decay: float = setting(0.0, "weight decay", at_least=0)
    scheduler: str = setting("constant", "learning rate schedule, per step", choices=SCHEDULERS)
    warmup_epochs: int = setting(0, "linear warmup epochs (cut to fit --epochs unless given)", at_least=0)
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing", at_least=0, below=1)
    task: str = setting("auto", "single: one class a photo (softmax); multilabel: any number (a sigmoid a class, a "
                        "threshold a class chosen on val); auto: multilabel when the data has a labels column",
                        choices=TASKS)
    multilabel_loss: str = setting("bce", "multi-label loss: bce (binary cross-entropy) or asl (asymmetric loss: "
                                   "easy negatives down-weighted)", choices=MULTILABEL_LOSSES)
    dropout: float = setting(0.5, "dropout before the AlexNets' hidden linear layers (others keep their own)",
                             at_least=0, below=1)
    # Starting weights (models/weights.py) and how a pretrained body is trained (training/layers.py).
    pretrained: str = setting("none", "starting weights: none, imagenet (the architecture's published ones; "
                              "efficientnet_lite0's ship offline), or a state dict FILE or URL; a new head is "
                              "trained for the photos' classes")
    init: str | None = setting(None, "start from all the weights of a run folder, a checkpoint, or the "
                               "tutorial's AlexNet.pth + class_indices.json folder (same model and classes)")
    head_epochs: int = setting(0, "first epochs that train only the new head, the pretrained body frozen",
                               at_least=0)
    freeze_fraction: float = setting(0.0, "fraction of the body's layers, from the input, kept frozen the whole "
                                     "run", at_least=0, below=1)
    body_lr: float = setting(1.0, "learning rate of the body's first layer as a fraction of --lr, rising "
                             "geometrically to 1 at the head (discriminative rates)", above=0, at_most=1)
    image_size: int = setting(224, "training image size in pixels (the final one with --min-image-size)",
                              at_least=16)
    crop_scale: tuple[float, float] = setting((0.08, 1.0), "RandomResizedCrop's area range, MIN MAX", above=0,
                                              at_most=1)
    hflip: bool = setting(True, "random horizontal flips: on or off")
    # Levers the tutorial does not use (all off here); their effect is measured in docs/ablation.md.
    auto_augment: str = setting("none", "per-photo policy: trivial is TrivialAugmentWide, randaugment 2 ops at "
                                "magnitude 9", choices=AUTO_AUGMENTS)
    color_jitter: float = setting(0.0, "brightness/contrast/saturation jitter strength (0: off)", **FRACTION)
    random_erasing: float = setting(0.0, "probability of erasing a random box of a photo (0: off)", **FRACTION)
    mixup_alpha: float = setting(0.0, "MixUp's Beta(alpha, alpha); with --cutmix-alpha, one per batch (0: off)",
                                 at_least=0)
    cutmix_alpha: float = setting(0.0, "CutMix's alpha (0: off)", at_least=0)
    min_image_size: int | None = setting(None, "progressive resizing: the first epochs' training size",
                                         at_least=16)
    resize_ramp: tuple[float, float] = setting((0.0, 0.0), "progressive resizing: START END fractions of the "
                                               "epochs to grow over (16 px steps)", **FRACTION)
    eval_image_size: int | None = setting(None, "evaluation and prediction size (default: the image size)",
                                          at_least=16)
    progressive_eval: bool = setting(False, "while the training size grows, validate at a size that grows with "
                                     "it: on or off")
    eval_resize: str = setting("squash", "squash to a square (the tutorial's) or resize and center crop",
                               choices=EVAL_RESIZES)
    ema_decay: float = setting(0.0, "moving average of the weights per step, e.g. 0.999; val and best.pt use "
                               "it (0: off)", at_least=0, below=1)
    tta_flip: bool = setting(False, "evaluate and predict on each photo and its mirror: on or off")
    mean: tuple[float, float, float] = setting((0.5, 0.5, 0.5), "normalization mean, R G B")
    std: tuple[float, float, float] = setting((0.5, 0.5, 0.5), "normalization std, R G B", above=0)
    val_fraction: float = setting_like(SplitSettings, "val_fraction", help="fraction of each class held out for "
                                       "val (folder of class folders only)")
    # Imbalanced classes (pipeline/sampling.py): neither is on in any recipe.
    class_weights: str = setting("none", "loss weight per class: none, or balanced (photos / (classes x the "
                                 "class's photos): a small class's mistakes cost more)", choices=CLASS_WEIGHTS)
    sampler: str = setting("uniform", "uniform: each photo once an epoch; balanced: photos drawn with classes "
                           "equally likely (a small class's photos repeat, a large one's are skipped)",
                           choices=SAMPLERS)
    seed: int = setting(0, "random seed (split, init, augmentation, order)")
    # How photos become batches (pipeline/); not what a recipe learns, so no recipe sets them.
    pipeline: str = setting("cache", "cache: decode once, augment batches on the device; pil: the tutorial's",
                            choices=PIPELINES)
    cache_size: int | None = setting(None, "short side in pixels of the decoded photos the cache keeps "
                                     "(default image size * 8/7)", at_least=16)
    recipe: str = setting("seed", "the recipe these values started from", choices=tuple(RECIPES),
                          flag=False)


@dataclass(frozen=True)
class TrainRequest(PlainValues):
    """`petalnet train`'s arguments beside what the run learns (TrainConfig) and how fast it runs here
    (devices/options.py's DeviceOptions): the photos, the run folder, the recipe, the device, new or resumed."""
    data: str | None = setting(None, "class folders, train/val layout, manifest (.csv, .tsv, .jsonl) or archive "
                               "(.zip, .tar, .tar.gz) of them (default: $PETALNET_DATA)")
    label_column: str | None = setting_like(CheckSettings, "label_column")
    allow_paths_outside: bool = setting_like(CheckSettings, "allow_paths_outside")
    exclude: str | None = setting(None, "a file of photos to leave out, one path a line (relative to the data's "
                                  "folder, or absolute); recorded with the run's left-out photos", metavar="FILE")
    out: str = setting(None, "run folder", required=True)
    recipe: str | None = setting(None, f"one of {', '.join(RECIPES)} (default: {DEFAULT_RECIPE})")
    device: str = device_setting()
    resume: bool = setting(False, "continue from RUN/last.pt", switch=True)
    overwrite: bool = setting(False, "replace an existing run", switch=True)
    folds: int = setting(0, "k-fold cross-validation: K runs (2 to 20), each fold of the photos the val of one, in "
                         "RUN/fold-1 .. RUN/fold-K; the score's mean and sd in RUN/folds.json, every photo's "
                         "out-of-fold probabilities in RUN/oof.csv (0: off)", at_least=0, metavar="K")


# Settings beyond the tutorial's augmentation: the pil pipeline has none of them.
CACHE_ONLY = ("auto_augment", "color_jitter", "random_erasing", "mixup_alpha", "cutmix_alpha", "min_image_size",
              "sampler")
# Settings that may change when a run is resumed; others given with --resume are ignored.
RESUMABLE = ("epochs",)


def recipe_config(name=None):
    """The named recipe's config (the default recipe when None), unchecked."""
    name = name or DEFAULT_RECIPE
    if name not in RECIPES:
        raise UserError(f"unknown recipe '{name}': choose from {', '.join(RECIPES)}")
    return TrainConfig(recipe=name, **RECIPES[name])


def resolve_config(recipe=None, overrides=None):
    """A recipe with `overrides` (setting name -> value; None means not given), checked."""
    base = recipe_config(recipe)
    given = _given(overrides)
    if given.get("init"):
        # the init's model and normalization, unless given; its weights replace a recipe's --pretrained
        given = {**init_settings(given["init"]), "pretrained": "none", **given}
    config = dataclasses.replace(base, **given)
    return checked_config(dataclasses.replace(config, **follow_overrides(config, base, given)))


def checked_config(config):
    """A whole TrainConfig, checked, with the cache size that follows the image size when not set."""
    if not isinstance(config, TrainConfig):
        raise UserError(f"config must be a TrainConfig (config/train.py), got {type(config).__name__}")
    if config.cache_size is None:
        config = dataclasses.replace(config, cache_size=round(config.image_size * 8 / 7))
    validate_config(config)
    return config


def _given(overrides):
    names = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["flag"]}
    given = {}
    for key, value in (overrides or {}).items():
        if key not in names:
            raise UserError(f"unknown setting '{key}'")
        if value is not None:
            given[key] = tuple(value) if isinstance(value, list) else value
    return given


def follow_overrides(config, recipe, given):
    """Recipe values tied to a value the user changed follow it, unless given too: the progressive and
    eval sizes keep their ratio to image_size (16 px steps), a warmup is cut to fit the epochs."""
    changes = {}
    if "image_size" in given:
        for key in ("min_image_size", "eval_image_size"):
            if key not in given and getattr(recipe, key):
                size = max(16, round(getattr(recipe, key) * config.image_size / recipe.image_size / 16) * 16)
                changes[key] = size if key == "eval_image_size" else _smallest_usable(config, size)
    if "warmup_epochs" not in given:
        changes["warmup_epochs"] = max(0, min(config.warmup_epochs, config.epochs - 1))
    if "head_epochs" not in given:
        changes["head_epochs"] = max(0, min(config.head_epochs, config.epochs - 1))
    if config.pretrained == "none" and not config.init:  # nothing pretrained: a recipe's freezing does not apply
        changes.update({key: 0 for key in ("head_epochs", "freeze_fraction") if key not in given})
    if config.pretrained != "none" and "mean" not in given and "std" not in given:
        changes.update(weights_normalization(config.model, config.pretrained))
    return changes


def init_settings(init):
    """The model and normalization of the weights --init starts from (nothing for a plain state dict)."""
    from petalnet.models.checkpoint import starting_point  # torch: not for `petalnet --help`

    _, spec = starting_point(init)
    return {"model": spec.model, "mean": tuple(spec.mean), "std": tuple(spec.std)} if spec else {}


def weights_normalization(model, pretrained):
    """The mean and std the pretrained weights were trained with (from their metadata; ImageNet's for a file)."""
    from petalnet.models.weights import find_weights  # torch: not for `petalnet --help`

    check_model_name(model)
    weights = find_weights(model, pretrained)
    return {"mean": tuple(weights.mean), "std": tuple(weights.std)}


def _smallest_usable(config, size):
    """`size`, or the next 16 px step the model accepts, at most the image size."""
    if size >= config.image_size:
        return min(size, config.image_size)
    while size < config.image_size and _size_problem(config.model, size):
        size += 16
    return min(size, config.image_size)


@functools.lru_cache(maxsize=64)
def _size_problem(model_name, size):
    """None if the model takes size x size photos, else why not (each model built once per process)."""
    from petalnet.models.networks import probe_model, smallest_input_error  # torch: not for `petalnet --help`

    return smallest_input_error(probe_model(model_name), size)


def resumed_config(config, overrides, log=print):
    """The config of a run being resumed (as config/run.py read it back), only RESUMABLE settings
    overridable; checked."""
    for key, value in _given(overrides).items():
        if value == getattr(config, key):
            continue
        if key in RESUMABLE:
            config = dataclasses.replace(config, **{key: value})
        else:
            kept = getattr(config, key)
            log(f"note: --{key.replace('_', '-')} is ignored with --resume (the run keeps "
                f"{list(kept) if isinstance(kept, tuple) else kept})")
    validate_config(config)
    return config


def validate_config(config):
    """Each field against its declaration, then the rules that tie fields together."""
    check_fields(config)
    check_model_name(config.model)
    c = config
    ties = [
        ("warmup_epochs", c.warmup_epochs < c.epochs, f"{{}} must be in [0, epochs), got {c.warmup_epochs}"),
        ("cache_size", c.cache_size is None or c.cache_size >= c.image_size,
         f"{{}} must be at least the image size ({c.image_size}), got {c.cache_size}"),
        ("resize_ramp", c.resize_ramp[0] <= c.resize_ramp[1],
         f"{{}} must be two fractions, start <= end, got {list(c.resize_ramp)}"),
        ("min_image_size", c.min_image_size is None or c.min_image_size <= c.image_size,
         f"{{}} must be between 16 and the image size, got {c.min_image_size}"),
        ("crop_scale", c.crop_scale[0] <= c.crop_scale[1],
         f"{{}} must be two fractions 0 < min <= max <= 1, got {list(c.crop_scale)}"),
        ("head_epochs", c.head_epochs < c.epochs, f"{{}} must be in [0, epochs), got {c.head_epochs}"),
        ("head_epochs", not (c.head_epochs or c.freeze_fraction) or c.pretrained != "none" or c.init,
         "{} and --freeze-fraction keep a body frozen: they need --pretrained or --init"),
        ("init", not (c.init and c.pretrained != "none"), "{} and --pretrained both give starting weights: pick one"),
        ("task", c.task != "multilabel" or not (c.mixup_alpha or c.cutmix_alpha or c.sampler != "uniform"
                                                or c.class_weights != "none"),
         "{} multilabel does not take --mixup-alpha, --cutmix-alpha, --sampler balanced or --class-weights "
         "balanced (they are built for one class a photo)"),
    ]
    for name, ok, sentence in ties:
        if not ok:
            raise SettingError(name, sentence)
    pil_extras = [key for key in CACHE_ONLY if getattr(c, key) not in (None, 0, 0.0, "none", "uniform")]
    if c.pipeline == "pil" and pil_extras:
        raise SettingError("pipeline", f"{{}} pil has the tutorial's augmentation only; {', '.join(pil_extras)} "
                           f"need(s) --pipeline cache (recipe {c.recipe}; --recipe seed uses none)")
    sizes = {key: getattr(c, key) for key in ("image_size", "min_image_size", "eval_image_size") if getattr(c, key)}
    key = min(sizes, key=sizes.get)
    problem = _size_problem(c.model, sizes[key])
    if problem:
        raise SettingError(key, f"{{}} {sizes[key]} does not suit {c.model}: {problem}")
