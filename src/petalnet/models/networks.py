"""The networks petalnet trains, by name.

    alexnet_half     the tutorial's AlexNet at half width (14,591,685 parameters for 5 classes)
    alexnet_half_bn  the same with BatchNorm after each convolution (not the tutorial's; docs/ablation.md)
    alexnet          torchvision's full-width AlexNet, trained from scratch (no pretrained weights)

FlipAveraged wraps any of them for test-time flipping (a recipe's tta_flip): the logits of a photo and
of its mirror image, averaged, so predict, evaluate, serve and export all see one model.
"""

import torch
from torch import nn
from petalnet.errors import UserError, one_line
from petalnet.models.names import MODEL_NAMES


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


def torchvision_alexnet(num_classes, dropout=0.5):
    from torchvision.models import alexnet  # imported here: torchvision slows every start

    return alexnet(weights=None, num_classes=num_classes, dropout=dropout)


def alexnet_half_bn(num_classes, dropout=0.5):
    return AlexNetHalf(num_classes, dropout, batch_norm=True)


MODELS = {"alexnet_half": AlexNetHalf, "alexnet_half_bn": alexnet_half_bn, "alexnet": torchvision_alexnet}
assert tuple(MODELS) == MODEL_NAMES, "models/names.py lists every model, in this order"


def build_model(name, num_classes, dropout=0.5):
    if name not in MODELS:
        raise UserError(f"unknown model '{name}': choose from {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, dropout=dropout)


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
    except RuntimeError as err:
        return one_line(err, 200)
    finally:
        model.train(was_training)
