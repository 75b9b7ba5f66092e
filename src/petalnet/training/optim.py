"""The optimizer, and the learning rate at each step: linear warmup over `warmup_epochs`, then constant
or cosine to zero.

    optimizer = build_optimizer(model.parameters(), config, fused=settings.fused_optimizer)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)   # call scheduler.step() per step

The image sizes that change during a run are config/sizes.py's.
"""

import math

import torch


def lr_factor(step, warmup_steps, total_steps, cosine):
    """The multiplier of the base learning rate at optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(optimizer, config, steps_per_epoch):
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    cosine = config.scheduler == "cosine"
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total, cosine))


def build_optimizer(params, config, fused=False):
    """The recipe's optimizer over `params` (parameters, or groups with their own lr: training/layers.py);
    `fused` (devices/settings.py) updates every parameter in one kernel, same arithmetic."""
    lr, wd = config.lr, config.weight_decay
    fused = fused or None  # None, not False: torch then picks its foreach implementation
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd, nesterov=True, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=fused)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=fused)
