"""A run's config: a recipe's values, overridden by flags, checked before anything is written."""

from petalnet.errors import UserError
from petalnet.models import MODELS, build_model, smallest_input_error
from petalnet.recipes import DEFAULT_RECIPE, EVAL_RESIZES, OPTIMIZERS, PIPELINE_DEFAULTS, PIPELINES, RECIPES, SCHEDULERS

# Flags that may change when a run is resumed; other flags given with --resume are ignored.
RESUMABLE_KEYS = ("epochs",)


def resolve_config(recipe=None, overrides=None):
    recipe = recipe or DEFAULT_RECIPE
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe '{recipe}': choose from {', '.join(RECIPES)}")
    config = {"recipe": recipe, **RECIPES[recipe], **PIPELINE_DEFAULTS}
    for key, value in (overrides or {}).items():
        if value is not None:
            if key not in config:
                raise UserError(f"unknown setting '{key}'")
            config[key] = value
    if config["cache_size"] is None:
        config["cache_size"] = round(config["image_size"] * 8 / 7)
    validate_config(config)
    return config


def resumed_config(saved, overrides, log=print):
    """The config of a run being resumed: the saved one, with only RESUMABLE_KEYS overridable."""
    config = {"pipeline": "pil", "cache_size": round(saved["image_size"] * 8 / 7), **saved}  # runs before 0.2
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
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    problem = smallest_input_error(build_model(config["model"], 2), config["image_size"])
    if problem:
        raise UserError(f"--image-size {config['image_size']} is too small for {config['model']}: {problem}")
