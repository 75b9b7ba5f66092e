"""The network a run trains: built for the photos' classes, started from its weights (--pretrained, --init),
its BatchNorms synchronized under torchrun on GPUs, and wrapped for the training step (DDP, torch.compile).

    network = prepare_model(config, classes, session, fresh=True)     # Network: model + Layers
    step_model = wrap_for_training(network.model, device, settings, processes)
"""

from dataclasses import dataclass

import torch
from torch import nn

from petalnet.devices import distributed
from petalnet.errors import UserError
from petalnet.models.checkpoint import load_starting_point, starting_point
from petalnet.models.names import model_source
from petalnet.models.networks import build_model
from petalnet.models.weights import find_weights, load_pretrained, read_weights
from petalnet.training.layers import Layers


@dataclass
class Network:
    """The model on its device, and its Layers (training/layers.py: what is frozen, at which rates)."""
    model: nn.Module
    layers: Layers


def prepare_model(config, classes, session, fresh=True):
    """The Network on its device in the settings' memory format (the same weights on every rank), with its
    starting weights (--pretrained, --init) when `fresh` (not resumed)."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, len(classes), config.dropout)
    layers = Layers.of(model, len(classes))
    if fresh and (config.init or config.pretrained != "none"):
        load_starting_weights(model, config, classes, layers, session)
    if sync_batch_norm(model, config, session):
        model = convert_sync_batch_norm(model, config.model)
    model = model.to(session.device)
    return Network(model.to(memory_format=torch.channels_last) if session.settings.channels_last else model, layers)


def load_starting_weights(model, config, classes, layers, session):
    """--init (all the weights) or --pretrained (all but the head); one process per machine downloads
    before the others read."""
    if config.init:
        state, spec = starting_point(config.init)
        if spec is not None and tuple(spec.classes) != tuple(classes):
            raise UserError(f"--init {config.init} was trained on the classes {', '.join(spec.classes)}, not "
                            f"{', '.join(classes)} (in this order): --pretrained WEIGHTS_FILE trains a new head")
        load_starting_point(model, state, len(classes), config.init)
        session.log(f"started from the weights of {config.init}")
        return
    weights, processes = find_weights(config.model, config.pretrained), session.processes
    if processes.local_rank == 0:
        state = read_weights(weights, session.progress)
    distributed.barrier(processes)
    if processes.local_rank != 0:
        state = read_weights(weights, progress=False)
    loaded = load_pretrained(model, state, set(layers.head), weights.source)
    for module in {model.get_submodule(name.rsplit(".", 1)[0]) for name in layers.head}:
        if isinstance(module, nn.Linear):  # zeros: every class starts equally likely, whatever the features'
            nn.init.zeros_(module.weight)  # scale (not a conv head followed by a ReLU: it would never learn)
            nn.init.zeros_(module.bias)
    session.log(f"pretrained: {weights.source}, {len(loaded)} tensors; new head {', '.join(sorted(layers.head))}")


def sync_batch_norm(model, config, session):
    """SyncBatchNorm under torchrun on CUDA when each process's batch is under 32 photos: BatchNorm's
    statistics over so few photos are noisy. PyTorch synchronizes BatchNorm on GPUs only."""
    small = config.batch_size < 32 and session.processes.active and session.device.type == "cuda"
    return small and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def convert_sync_batch_norm(model, name):
    """timm's converter for timm's networks: it keeps the activation timm fuses into its BatchNormAct2d."""
    if model_source(name) == "timm":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(model)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_for_training(model, device, settings, processes):
    """What the training step calls: DDP under torchrun, torch.compile with --compile."""
    if processes.active:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if settings.compile else model
