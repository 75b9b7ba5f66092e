"""The networks petalnet trains, by name (models/names.py), each with a new head for the photos' classes.

    alexnet_half     the tutorial's AlexNet at half width (14,591,685 parameters for 5 classes)
    alexnet_half_bn  the same with BatchNorm after each convolution (not the tutorial's; docs/ablation.md)
    resnet9          a ResNet-9 for photos (models/resnet9.py), the `sprint` recipe's
    resnet18, ...    torchvision's classification models (alexnet is torchvision's full-width one)
    efficientnet_lite0, timm/NAME   timm's

    model = build_model("resnet18", num_classes=5)      # random weights; models/weights.py loads pretrained ones
    head_parameters(model, 5)                           # the new classifier's parameter names
    body_layers(model, head)                            # the other parameters, grouped by layer, input first

FlipAveraged wraps any of them for test-time flipping (a recipe's tta_flip): the logits of a photo and
of its mirror image, averaged, so predict, evaluate, serve and export all see one model.
"""

import functools

import torch
from torch import nn
from petalnet.errors import UserError, one_line
from petalnet.models.resnet9 import ResNet9
from petalnet.models.names import PETALNET_MODELS, check_model_name, closest_hint, model_source, timm_name


class AlexNetHalf(nn.Module):
    """The tutorial's model.py, plus an adaptive pool to 6x6 (a no-op at 224 px) for other sizes."""

    def __init__(self, num_classes=5, dropout=0.5, batch_norm=False):
        super().__init__()

        def conv(c_in, c_out, kernel, stride=1, padding=1):
            norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
            return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding), *norm, nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(3, 48, 11, stride=4, padding=2), nn.MaxPool2d(kernel_size=3, stride=2),
            *conv(48, 128, 5, padding=2), nn.MaxPool2d(kernel_size=3, stride=2),
            *conv(128, 192, 3), *conv(192, 192, 3), *conv(192, 128, 3), nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(128 * 6 * 6, 2048), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(2048, 2048), nn.ReLU(inplace=True),
            nn.Linear(2048, num_classes),
        )
        self._initialize_weights()

    def _initialize_weights(self):
        # The tutorial's source repository: kaiming for convs, N(0, 0.01) for linears, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class FlipAveraged(nn.Module):
    """Test-time augmentation: the mean of the model's logits for the images and their mirror images."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return (self.model(x) + self.model(x.flip(-1))) / 2


def alexnet_half_bn(num_classes, dropout=0.5):
    return AlexNetHalf(num_classes, dropout, batch_norm=True)


def resnet9(num_classes, dropout=0.5):
    return ResNet9(num_classes)  # no dropout: BatchNorm and augmentation regularize it


PETALNET = {"alexnet_half": AlexNetHalf, "alexnet_half_bn": alexnet_half_bn, "resnet9": resnet9}
assert tuple(PETALNET) == PETALNET_MODELS, "models/names.py lists every model"


def build_model(name, num_classes, dropout=0.5):
    """The named network with random weights and a `num_classes` head; `dropout` is the AlexNets'."""
    check_model_name(name)
    source = model_source(name)
    if source == "petalnet":
        return PETALNET[name](num_classes=num_classes, dropout=dropout)
    if source == "torchvision":
        from torchvision import models  # imported here: torchvision slows every start

        extra = {"dropout": dropout} if name == "alexnet" else {}
        return models.get_model(name, weights=None, num_classes=num_classes, **extra)
    return _timm_model(name, num_classes)


def _timm_model(name, num_classes):
    return import_timm().create_model(timm_architecture(name), pretrained=False, num_classes=num_classes)


def timm_architecture(name):
    """timm's name for a petalnet name (efficientnet_lite0, timm/NAME); one line with timm's closest names
    if timm has no such architecture."""
    timm, arch = import_timm(), timm_name(name)
    if not timm.is_model(arch):
        raise UserError(f"timm has no architecture '{arch}'{closest_hint(arch, timm.list_models(), 'timm/')}")
    return arch


def import_timm():
    try:
        import timm
    except ImportError:
        raise UserError("this model needs timm: pip install timm==1.0.31") from None
    return timm


def head_parameters(model, num_classes):
    """Names of the parameters of the classifier that maps features to the `num_classes` outputs: timm's
    get_classifier(), else the last Linear or Conv2d with num_classes outputs (torchvision's fc, classifier,
    heads.head, squeezenet's final conv)."""
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        head = nn.ModuleList(head) if isinstance(head, (tuple, list)) else head  # distilled: (head, head_dist)
    else:
        heads = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                 and (getattr(m, "out_features", None) or getattr(m, "out_channels", None)) == num_classes]
        if not heads:
            raise UserError(f"cannot find the classifier of {type(model).__name__} (no layer with "
                            f"{num_classes} outputs)")
        head = heads[-1]
    ids = {id(p) for p in head.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def body_layers(model, head):
    """The parameters not in `head`, grouped by the module that holds them, in the model's order (input
    side first): the layers a fine-tuning recipe freezes or trains at lower rates."""
    layers = []
    for prefix, module in model.named_modules():
        own = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)]
        own = [n for n in own if n not in head]
        if own:
            layers.append(own)
    return layers


@functools.lru_cache(maxsize=4)
def probe_model(name):
    """A 2-class instance of the architecture, built once per process, for questions about it (which
    sizes it takes, whether it has depthwise convolutions)."""
    return build_model(name, 2)


def architecture_has_depthwise_convs(name):
    return has_depthwise_convs(probe_model(name))


def has_depthwise_convs(model):
    """True if the network is built on depthwise convolutions (MobileNets, EfficientNets, ...)."""
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels for m in model.modules())


def for_inference(model, spec):
    """The model as its InferenceSpec says to run it: with test-time flipping when spec.tta_flip."""
    return FlipAveraged(model) if spec.tta_flip else model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def smallest_input_error(model, image_size):
    """None if the model accepts image_size x image_size inputs, else the reason."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
        return None
    except (RuntimeError, AssertionError, ValueError) as err:  # ViTs assert their one input size
        return one_line(err, 200)
    finally:
        model.train(was_training)
