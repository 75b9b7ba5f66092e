"""A run's config: a recipe's values, overridden by flags, checked before anything is written."""

import functools

from petalnet.errors import UserError
from petalnet.models import MODELS, build_model, smallest_input_error
from petalnet.recipes import (AUTO_AUGMENTS, DEFAULT_RECIPE, EVAL_RESIZES, OPTIMIZERS, PIPELINE_DEFAULTS, PIPELINES,
                              RECIPES, SCHEDULERS, SEED)

# Flags that may change when a run is resumed; other flags given with --resume are ignored.
RESUMABLE_KEYS = ("epochs",)


def resolve_config(recipe=None, overrides=None):
    recipe = recipe or DEFAULT_RECIPE
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe '{recipe}': choose from {', '.join(RECIPES)}")
    config = {"recipe": recipe, **RECIPES[recipe], **PIPELINE_DEFAULTS}
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    for key, value in given.items():
        if key not in config:
            raise UserError(f"unknown setting '{key}'")
        config[key] = value
    follow_overrides(config, RECIPES[recipe], given)
    if config["cache_size"] is None:
        config["cache_size"] = round(config["image_size"] * 8 / 7)
    validate_config(config)
    return config


def follow_overrides(config, recipe, given):
    """Recipe values tied to a value the user changed follow it, unless given too: the progressive and
    eval sizes keep their ratio to --image-size (16 px steps), a warmup is cut to fit --epochs."""
    if "image_size" in given:
        for key in ("min_image_size", "eval_image_size"):
            if key not in given and recipe[key]:
                size = max(16, round(recipe[key] * config["image_size"] / recipe["image_size"] / 16) * 16)
                config[key] = size if key == "eval_image_size" else _smallest_usable(config, size)
    if "warmup_epochs" not in given:
        config["warmup_epochs"] = max(0, min(config["warmup_epochs"], config["epochs"] - 1))


def _smallest_usable(config, size):
    """`size`, or the next 16 px step the model accepts, at most the image size."""
    if config["model"] not in MODELS or size >= config["image_size"]:
        return min(size, config["image_size"])
    while size < config["image_size"] and _size_problem(config["model"], size):
        size += 16
    return min(size, config["image_size"])


@functools.lru_cache(maxsize=64)
def _size_problem(model_name, size):
    """None if the model takes size x size photos, else why not (each model built once per process)."""
    return smallest_input_error(_probe_model(model_name), size)


@functools.lru_cache(maxsize=4)
def _probe_model(model_name):
    return build_model(model_name, 2)


def resumed_config(saved, overrides, log=print):
    """The config of a run being resumed: the saved one, with only RESUMABLE_KEYS overridable."""
    # Runs of older versions lack newer keys: the seed recipe's values (all off) are what they trained with.
    config = {**SEED, "pipeline": "pil", "cache_size": round(saved["image_size"] * 8 / 7), **saved}
    for key, value in (overrides or {}).items():
        if value is None or value == config.get(key):
            continue
        if key in RESUMABLE_KEYS:
            config[key] = value
        else:
            log(f"note: --{key.replace('_', '-')} is ignored with --resume (the run keeps {config.get(key)})")
    validate_config(config)
    return config


def validate_config(config):
    checks = [
        (config["epochs"] >= 1, f"--epochs must be at least 1, got {config['epochs']}"),
        (config["batch_size"] >= 1, f"--batch-size must be at least 1, got {config['batch_size']}"),
        (config["lr"] > 0, f"--lr must be greater than 0, got {config['lr']}"),
        (config["weight_decay"] >= 0, f"--weight-decay must be 0 or more, got {config['weight_decay']}"),
        (0 <= config["label_smoothing"] < 1, f"--label-smoothing must be in [0, 1), got {config['label_smoothing']}"),
        (0 <= config["warmup_epochs"] < config["epochs"],
         f"--warmup-epochs must be in [0, epochs), got {config['warmup_epochs']}"),
        (0 < config["val_fraction"] < 1, f"--val-fraction must be between 0 and 1, got {config['val_fraction']}"),
        (config["model"] in MODELS, f"unknown model '{config['model']}': choose from {', '.join(MODELS)}"),
        (config["optimizer"] in OPTIMIZERS,
         f"unknown optimizer '{config['optimizer']}': choose from {', '.join(OPTIMIZERS)}"),
        (config["scheduler"] in SCHEDULERS,
         f"unknown scheduler '{config['scheduler']}': choose from {', '.join(SCHEDULERS)}"),
        (config["eval_resize"] in EVAL_RESIZES, f"unknown eval resize '{config['eval_resize']}'"),
        (config["image_size"] >= 16, f"--image-size must be at least 16, got {config['image_size']}"),
        (config["pipeline"] in PIPELINES, f"unknown pipeline '{config['pipeline']}': choose from cache, pil"),
        (config["cache_size"] >= config["image_size"],
         f"--cache-size must be at least the image size ({config['image_size']}), got {config['cache_size']}"),
    ]
    for ok, message in checks + lever_checks(config):
        if not ok:
            raise UserError(message)
    sizes = {key: config[key] for key in ("image_size", "min_image_size", "eval_image_size") if config[key]}
    key = min(sizes, key=sizes.get)
    problem = _size_problem(config["model"], sizes[key])
    if problem:
        raise UserError(f"--{key.replace('_', '-')} {sizes[key]} is too small for {config['model']}: {problem}")


CACHE_ONLY = ("auto_augment", "color_jitter", "random_erasing", "mixup_alpha", "cutmix_alpha", "min_image_size")


def lever_checks(config):
    """(ok, message) for the settings beyond the tutorial's (recipes.py)."""
    ramp = config["resize_ramp"]
    pil_extras = [key for key in CACHE_ONLY if config[key] not in (None, 0, 0.0, "none")]
    return [
        (0 <= config["dropout"] < 1, f"--dropout must be in [0, 1), got {config['dropout']}"),
        (config["auto_augment"] in AUTO_AUGMENTS,
         f"unknown --auto-augment '{config['auto_augment']}': choose from {', '.join(AUTO_AUGMENTS)}"),
        (0 <= config["color_jitter"] <= 1, f"--color-jitter must be in [0, 1], got {config['color_jitter']}"),
        (0 <= config["random_erasing"] <= 1, f"--random-erasing must be in [0, 1], got {config['random_erasing']}"),
        (config["mixup_alpha"] >= 0 and config["cutmix_alpha"] >= 0, "--mixup-alpha and --cutmix-alpha must be >= 0"),
        (len(ramp) == 2 and 0 <= ramp[0] <= ramp[1] <= 1,
         f"--resize-ramp must be two fractions, start <= end, got {ramp}"),
        (config["min_image_size"] is None or 16 <= config["min_image_size"] <= config["image_size"],
         f"--min-image-size must be between 16 and the image size, got {config['min_image_size']}"),
        (config["eval_image_size"] is None or config["eval_image_size"] >= 16,
         f"--eval-image-size must be at least 16, got {config['eval_image_size']}"),
        (0 <= config["ema_decay"] < 1, f"--ema-decay must be in [0, 1), got {config['ema_decay']}"),
        (len(config["crop_scale"]) == 2 and 0 < config["crop_scale"][0] <= config["crop_scale"][1] <= 1,
         f"--crop-scale must be two fractions 0 < min <= max <= 1, got {config['crop_scale']}"),
        (config["momentum"] >= 0, f"--momentum must be 0 or more, got {config['momentum']}"),
        (config["pipeline"] == "cache" or not pil_extras,
         f"--pipeline pil has the tutorial's augmentation only; {', '.join(pil_extras)} need(s) --pipeline cache "
         f"(recipe {config.get('recipe', '?')}; --recipe seed uses none)"),
    ]
