"""config/train.py and recipes.py: one typed, frozen config per run, resolved from a recipe and the
flags, checked in one place; and the config of a run being resumed, older runs' included."""

import dataclasses

import pytest

from conftest import SMALL_MODEL
from petalnet.config.recipes import DEFAULT_RECIPE, RECIPES, SEED
from petalnet.config.run import settings_from_saved
from petalnet.config.train import CACHE_ONLY, TrainConfig, recipe_config, resolve_config, resumed_config
from petalnet.errors import UserError
from petalnet.utils.fields import SettingError, arguments, to_dict


def changed(config, base):
    return {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(base, f.name)}


def test_every_recipe_overrides_only_fields_with_a_flag_and_resolves():
    flags = set(arguments(TrainConfig))
    for name, recipe in RECIPES.items():
        assert set(recipe) <= flags, name
        assert not [key for key, value in recipe.items() if isinstance(value, list)], "tuples, as the fields hold"
        config = resolve_config(name)
        tutorial_model = name in ("seed", "fast", "best")  # issue 6's goals counted the tutorial's model
        assert config.recipe == name and (config.model == "alexnet_half") == tutorial_model
        assert {key: getattr(config, key) for key in recipe} == recipe
        defaults = TrainConfig()
        assert changed(config, defaults) - {"recipe", "cache_size"} == {k for k, v in recipe.items()
                                                                         if v != getattr(defaults, k)}
    assert SEED == {} and resolve_config("seed") == TrainConfig(cache_size=256)  # the tutorial: the defaults
    assert resolve_config(None).recipe == DEFAULT_RECIPE == "sprint"


def test_overrides_change_only_what_they_name_and_lists_become_tuples():
    fast = resolve_config("fast")
    config = resolve_config("fast", {"crop_scale": [0.3, 0.9], "hflip": False, "lr": None, "mean": [0.1, 0.2, 0.3]})
    assert changed(config, fast) == {"crop_scale", "hflip", "mean"}  # lr None: not given
    assert config.crop_scale == (0.3, 0.9) and config.mean == (0.1, 0.2, 0.3)  # argparse's and JSON's lists
    assert to_dict(config)["crop_scale"] == [0.3, 0.9]  # ... and lists again in config.json
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    with pytest.raises(UserError, match="unknown setting 'learning_rate'"):
        resolve_config("fast", {"learning_rate": 0.1})
    with pytest.raises(UserError, match="unknown setting 'recipe'"):  # the recipe is chosen by name, not set
        resolve_config("fast", {"recipe": "best"})
    with pytest.raises(UserError, match="unknown recipe 'magic': choose from seed, fast, best, finetune, sprint"):
        recipe_config("magic")


def test_sizes_and_warmup_follow_the_values_they_depend_on_unless_given():
    small = resolve_config("fast", {"image_size": 112, "epochs": 2})
    assert (small.min_image_size, small.eval_image_size, small.warmup_epochs) == (64, 128, 1)
    assert small.cache_size == 128  # 112 * 8/7
    tiny = resolve_config("fast", {"image_size": 64})  # 128 * 64/208 -> 32 px is too small for alexnet_half
    assert tiny.min_image_size == 64 and tiny.eval_image_size == 80
    given = resolve_config("fast", {"image_size": 112, "min_image_size": 96, "eval_image_size": 112,
                                    "epochs": 2, "warmup_epochs": 0})
    assert (given.min_image_size, given.eval_image_size, given.warmup_epochs) == (96, 112, 0)
    with pytest.raises(SettingError, match=r"warmup_epochs must be in \[0, epochs\)") as err:
        resolve_config("fast", {"epochs": 2, "warmup_epochs": 3})  # a warmup the user asked for is never cut
    assert err.value.as_flag().startswith("--warmup-epochs must be")
    assert resolve_config("seed", {"image_size": 96}).eval_image_size is None
    assert resolve_config("seed", {"cache_size": 300}).cache_size == 300


@pytest.mark.parametrize("overrides, setting, says", [
    ({"auto_augment": "autoaugment"}, "auto_augment", "unknown {} 'autoaugment': choose from none, trivial"),
    ({"resize_ramp": [0.8, 0.2]}, "resize_ramp", "{} must be two fractions, start <= end"),
    ({"resize_ramp": [0.1]}, "resize_ramp", "{} must be a tuple of 2 numbers"),
    ({"min_image_size": 512}, "min_image_size", "{} must be between 16 and the image size"),
    ({"crop_scale": [0.0, 1.0]}, "crop_scale", "{} must be"),
    ({"ema_decay": 1.0}, "ema_decay", "{} must be in [0, 1), got 1.0"),
    ({"eval_image_size": 8}, "eval_image_size", "{} must be at least 16"),
    ({"cache_size": 100}, "cache_size", "{} must be at least the image size (224), got 100"),
    ({"lr": float("nan")}, "lr", "{} must be greater than 0, got nan"),
    ({"model": "vgg99"}, "model", "unknown {} 'vgg99': closest vgg19, vgg19_bn"),
    ({"pipeline": "pil"}, "pipeline", "{} pil has the tutorial's augmentation only"),
])
def test_bad_values_name_the_setting_for_the_api_and_the_flag_for_the_cli(overrides, setting, says):
    with pytest.raises(SettingError) as err:
        resolve_config("best", overrides)
    assert err.value.setting == setting
    assert says.format(setting) in str(err.value)
    assert says.format("--" + setting.replace("_", "-")) in err.value.as_flag()


def test_pil_pipeline_takes_the_levers_that_do_not_touch_pixels_and_refuses_the_others():
    config = resolve_config("seed", {"pipeline": "pil", "ema_decay": 0.99, "tta_flip": True, "eval_image_size": 96})
    assert changed(config, resolve_config("seed")) == {"pipeline", "ema_decay", "tta_flip", "eval_image_size"}
    levers = {"auto_augment": "trivial", "color_jitter": 0.2, "random_erasing": 0.1, "mixup_alpha": 0.2,
              "cutmix_alpha": 1.0, "min_image_size": 128, "sampler": "balanced"}
    assert set(levers) == set(CACHE_ONLY)
    for lever, value in levers.items():
        with pytest.raises(SettingError, match=f"{lever} need"):
            resolve_config("seed", {"pipeline": "pil", lever: value})


# config.json as petalnet 0.1 wrote it (before the levers and the cache pipeline), and as 0.2.0 did.
OLD_RUN = {"model": "alexnet_half", "epochs": 3, "batch_size": 16, "optimizer": "adam", "lr": 2e-4, "momentum": 0.9,
           "weight_decay": 0.0, "scheduler": "constant", "warmup_epochs": 0, "label_smoothing": 0.0,
           "image_size": 96, "crop_scale": [0.08, 1.0], "hflip": True, "eval_resize": "squash",
           "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "val_fraction": 0.1, "seed": 3, "recipe": "seed",
           "data": "/photos", "layout": "class folders", "classes": ["a", "b"]}


def saved(settings):
    return settings_from_saved(settings)[0]  # config/run.py reads saved settings, older runs' too


def test_a_resumed_old_run_keeps_what_it_trained_with():
    notes = []
    overrides = {"epochs": 5, "lr": 0.1, "batch_size": 16, "image_size": None}
    config = resumed_config(saved(OLD_RUN), overrides, notes.append)
    assert config.epochs == 5 and config.lr == 2e-4 and config.seed == 3 and config.crop_scale == (0.08, 1.0)
    assert config.pipeline == "pil" and config.cache_size == round(96 * 8 / 7)  # what 0.1 trained with
    assert (config.ema_decay, config.auto_augment, config.dropout, config.progressive_eval) == (0.0, "none", 0.5, False)
    assert notes == ["note: --lr is ignored with --resume (the run keeps 0.0002)"]  # batch_size: unchanged
    current = {**to_dict(resolve_config("fast", {"epochs": 3})), "data": "/photos", "layout": "train/val",
               "classes": ["a", "b"]}
    assert resumed_config(saved(current), {}, notes.append) == resolve_config("fast", {"epochs": 3})
    with pytest.raises(SettingError, match="epochs must be at least 1"):
        resumed_config(saved(OLD_RUN), {"epochs": 0}, notes.append)
    with pytest.raises(UserError, match="does not hold a run's settings"):
        settings_from_saved({k: v for k, v in OLD_RUN.items() if k != "image_size"})


def test_init_takes_the_model_and_normalization_of_its_weights_and_replaces_a_recipes_pretrained(trained_run):
    config = resolve_config("finetune", {"init": str(trained_run), "epochs": 2})
    assert (config.model, config.pretrained, config.init) == (SMALL_MODEL, "none", str(trained_run))
    assert config.mean == config.std == (0.5, 0.5, 0.5)
    with pytest.raises(SettingError, match="pick one"):
        resolve_config("finetune", {"init": str(trained_run), "pretrained": "imagenet"})


def test_normalization_follows_the_pretrained_weights_unless_given():
    assert resolve_config("finetune").mean == (0.5, 0.5, 0.5)  # EfficientNet-Lite0's (TensorFlow's 127/128)
    resnet = resolve_config("finetune", {"model": "resnet18"})  # torchvision's metadata: ImageNet's
    assert resnet.mean == (0.485, 0.456, 0.406) and resnet.std == (0.229, 0.224, 0.225)
    given = resolve_config("finetune", {"model": "resnet18", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    assert given.mean == (0.5, 0.5, 0.5) and given.std == (0.25, 0.25, 0.25)


def test_a_recipes_freezing_is_dropped_when_nothing_is_pretrained():
    config = resolve_config("finetune", {"pretrained": "none"})
    assert (config.head_epochs, config.freeze_fraction, config.body_lr) == (0, 0.0, 0.1)
    with pytest.raises(SettingError, match="need --pretrained or --init"):
        resolve_config("finetune", {"pretrained": "none", "head_epochs": 1})
