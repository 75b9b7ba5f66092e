"""How a pretrained network is trained, layer by layer: what a practitioner does when fine-tuning.

    layers = Layers.of(model, num_classes)          # the new head, and the body's layers, input side first
    groups = layers.param_groups(model, config)     # body_lr: lower rates for earlier layers
    changed = layers.set_trainable(model, config, epoch)   # head_epochs, freeze_fraction: frozen layers
    norms = layers.frozen_norms(model, config, epoch)     # their BatchNorms: kept in eval mode

head_epochs: the first epochs train the new head alone (the body's requires_grad off, so no gradient
is computed for it and the optimizer skips it). freeze_fraction: the first layers of the body stay frozen
for the whole run (their backward pass, the costliest at full resolution, is never run). Frozen layers
stay as pretrained: their BatchNorms run in eval mode, on the statistics they were trained with (as
timm's FrozenBatchNorm2d), instead of drifting with the new photos' batches. body_lr: the
body's first layer learns at body_lr x the head's rate, later layers at geometrically higher rates, the
last body layer nearly at the head's (fastai's discriminative learning rates, `slice(lo, hi)`). All three
depend only on the epoch, so --resume restores them exactly.
"""

from dataclasses import dataclass

from torch import nn

from petalnet.models.networks import body_layers, head_parameters

NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
RATE_STEPS = 8  # body_lr's geometric ramp in this many groups: fewer optimizer groups, same shape


@dataclass(frozen=True)
class Layers:
    head: frozenset  # parameter names of the new classifier
    body: tuple  # tuples of parameter names, one per layer, input side first
    is_norm: tuple  # per body layer: a normalization layer (it goes with the layer before it)

    @classmethod
    def of(cls, model, num_classes):
        head = frozenset(head_parameters(model, num_classes))
        body = tuple(tuple(layer) for layer in body_layers(model, head))
        norms = tuple(isinstance(model.get_submodule(layer[0].rpartition(".")[0]), NORMS) for layer in body)
        return cls(head=head, body=body, is_norm=norms)

    def param_groups(self, model, config):
        """Optimizer parameter groups: the head at --lr, the body in RATE_STEPS groups rising from body_lr."""
        params = dict(model.named_parameters())
        if config.body_lr >= 1.0:
            return [{"params": list(params.values())}]
        steps = [[] for _ in range(RATE_STEPS)]
        for i, layer in enumerate(self.body):
            steps[i * RATE_STEPS // len(self.body)].extend(params[name] for name in layer)
        groups = [{"params": group, "lr": config.lr * config.body_lr ** ((RATE_STEPS - step) / RATE_STEPS)}
                  for step, group in enumerate(steps) if group]
        return groups + [{"params": [params[name] for name in sorted(self.head)], "lr": config.lr}]

    def frozen_names(self, config, epoch):
        """Names of the parameters that do not learn in `epoch` (1-based)."""
        if epoch <= config.head_epochs:
            return {name for layer in self.body for name in layer}
        count = int(len(self.body) * config.freeze_fraction)
        while 0 < count < len(self.body) and self.is_norm[count]:  # a conv and its BatchNorm freeze together
            count += 1
        return {name for layer in self.body[:count] for name in layer}

    def set_trainable(self, model, config, epoch):
        """Freeze and unfreeze for `epoch`; True if any parameter changed (DDP must then be wrapped anew)."""
        frozen, changed = self.frozen_names(config, epoch), False
        for name, param in model.named_parameters():
            trainable = name not in frozen
            if param.requires_grad != trainable:
                param.requires_grad_(trainable)
                changed = True
        return changed

    def frozen_norms(self, model, config, epoch):
        """The BatchNorm layers whose parameters are all frozen in `epoch`: the training loop keeps them in
        eval mode (training/engine.py)."""
        frozen, norms = self.frozen_names(config, epoch), []
        for prefix, module in model.named_modules():
            names = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)]
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and names and frozen.issuperset(names):
                norms.append(module)
        return norms
