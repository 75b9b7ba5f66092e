"""The networks petalnet trains, by name.

    alexnet_half  the tutorial's AlexNet at half width (14,591,685 parameters for 5 classes)
    alexnet       torchvision's full-width AlexNet, trained from scratch (no pretrained weights)
"""

import torch
from torch import nn
from petalnet.errors import UserError


class AlexNetHalf(nn.Module):
    """The tutorial's model.py, plus an adaptive pool to 6x6 (a no-op at 224 px) for other sizes."""

    def __init__(self, num_classes=5, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 48, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(48, 128, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(128, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 128, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
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


def torchvision_alexnet(num_classes):
    from torchvision.models import alexnet  # imported here: torchvision adds ~1 s to every start

    return alexnet(weights=None, num_classes=num_classes)


MODELS = {"alexnet_half": AlexNetHalf, "alexnet": torchvision_alexnet}


def build_model(name, num_classes):
    if name not in MODELS:
        raise UserError(f"unknown model '{name}': choose from {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes)


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
        return " ".join(str(err).split())[:200]
    finally:
        model.train(was_training)
