"""ResNet-9 for photos: the network petalnet trains from scratch soonest (the `sprint` recipe).

    model = ResNet9(num_classes=5)            # 128 px in: 4x4 patches -> 32x32, then 16, 8, 4
    model = ResNet9(num_classes=5, width=32)  # twice the channels, four times the multiply-adds

The shape is Myrtle.ai's DAWNBench ResNet-9 (David Page, "How to train your ResNet", 2018), which
Keller Jordan's airbench grew from: a convolution, BatchNorm and ReLU per layer, max-pooling to halve
the size, two residual blocks, a global max pool and a linear head whose logits are scaled down. For
photos instead of 32 px CIFAR images, the first layer works on 4x4 patches (stride 4, as ConvNeXt's
patchify stem), cutting a 128 px photo to 32x32 at once: full-resolution layers are where a CPU spends
its time. That layer whitens the patches (airbench's first layer): fixed filters computed from the
training photos (`fit_to_photos`, which `petalnet train` calls before the first step), not learned.

    stem     whitening 4x4/4  3 -> 96 (fixed), ReLU, conv 3x3  96 -> 2w        32x32 at 128 px
             (whiten=False: conv 4x4/4  3 -> w, conv 3x3  w -> 2w)
    layer1   conv 3x3  2w -> 4w, max pool 2, residual (2 x conv 3x3)       16x16
    layer2   conv 3x3  4w -> 8w, max pool 2                                  8x8
    layer3   conv 3x3  8w -> 16w, max pool 2, residual (2 x conv 3x3)        4x4
    head     global max pool, linear 16w -> classes, logits x 1/8

Any input of 32 px and up works (global pooling); a side that is a multiple of 32 wastes nothing.
"""

import torch
from torch import nn

LOGIT_SCALE = 0.125  # Myrtle's: small logits at the start keep the first steps' gradients tame


def conv_bn(c_in, c_out, kernel=3, stride=1, pool=False):
    """Convolution (no bias: BatchNorm's shift replaces it), BatchNorm, ReLU, then a 2x2 max pool if asked."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0, bias=False),
              nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


class PatchWhitening(nn.Module):
    """A fixed convolution over non-overlapping patches that whitens them (airbench's first layer): its
    filters are the eigenvectors of the training photos' patch covariance, each scaled by 1/sqrt(its
    eigenvalue), and their negatives (so a ReLU after it loses nothing). A buffer, not a parameter: the
    optimizer never changes it; `fit` sets it from photos before training, checkpoints keep it."""

    def __init__(self, patch):
        super().__init__()
        dims = 3 * patch * patch
        self.patch = patch
        self.register_buffer("weight", torch.zeros(2 * dims, 3, patch, patch))
        self.fit(torch.randn(64, 3, 8 * patch, 8 * patch))  # until photos are given: whitened noise, i.e. a rotation

    @torch.no_grad()
    def fit(self, images, eps=5e-4):
        """Whiten for `images` (N, 3, H, W), normalized as the model's input."""
        patches = nn.functional.unfold(images.float(), self.patch, stride=self.patch)  # (N, dims, L)
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()
        covariance = patches.T @ patches / len(patches)
        values, vectors = torch.linalg.eigh(covariance)
        filters = (vectors / torch.sqrt(values + eps)).T.reshape(-1, 3, self.patch, self.patch)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight.to(x.dtype), stride=self.patch)


class Residual(nn.Module):
    """x + two conv_bn layers of x."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(nn.Module):
    def __init__(self, num_classes=5, width=16, patch=4, whiten=True):
        super().__init__()
        w, dims = width, 2 * 3 * patch * patch
        if whiten:
            self.stem = nn.Sequential(PatchWhitening(patch), nn.ReLU(), conv_bn(dims, 2 * w))
        else:
            self.stem = nn.Sequential(conv_bn(3, w, kernel=patch, stride=patch), conv_bn(w, 2 * w))
        self.layer1 = nn.Sequential(conv_bn(2 * w, 4 * w, pool=True), Residual(4 * w))
        self.layer2 = conv_bn(4 * w, 8 * w, pool=True)
        self.layer3 = nn.Sequential(conv_bn(8 * w, 16 * w, pool=True), Residual(16 * w))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(16 * w, num_classes)

    def fit_to_photos(self, images):
        """Set the whitening layer from a batch of training crops (normalized); no-op without one."""
        if isinstance(self.stem[0], PatchWhitening):
            self.stem[0].fit(images)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1)) * LOGIT_SCALE
