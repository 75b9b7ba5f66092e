"""A PyTorch checkpoint as an inference backend (backend.py): what `predict`, `evaluate` and `serve` run for
a run folder or a .pt file.

    backend = load_torch_backend("runs/seed", device="auto")   # GPU checkpoints load on a CPU too
    backend.prepare(image)       uint8 (3, S, S): pipeline/preprocess.py's eval_tensor (torch resize)
    backend.probabilities([u8, ...])  torch's softmax (a multi-label model: sigmoids), as evaluate's
    backend.logits([u8, ...])    normalized on the device, channels-last, autocast for the device (a CPU
                                 stays fp32, as train's val) -> float32 NumPy (N, classes)
    backend.heat_maps([u8, ...]) Grad-CAM (explain.py) on the last convolution

Device settings are devices/settings.py's inference_settings: the memory format and precision only.
"""

import torch

from petalnet.devices.select import pick_device
from petalnet.devices.settings import autocast, inference_settings
from petalnet.inference.backend import Backend
from petalnet.models.checkpoint import load_checkpoint, model_from_checkpoint
from petalnet.models.networks import FlipAveraged
from petalnet.pipeline.preprocess import eval_tensor, normalize_batch


class TorchBackend(Backend):
    """A network with its InferenceSpec, on its device in inference mode."""

    name = "a PyTorch checkpoint"
    decoding_threads = 1  # the model already keeps every core busy: one thread decodes the next batch

    def __init__(self, model, spec, device):
        self.device, self.spec = device, spec
        self.settings = inference_settings(device)
        self.model = model.to(device).eval()
        if self.settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(cls, ckpt, model_path, device="auto"):
        """The backend of a Checkpoint already read (models/checkpoint.py) from `model_path`."""
        return cls(model_from_checkpoint(ckpt, model_path), ckpt.spec, pick_device(device))

    @property
    def network(self):
        """The network itself (one pass, one heat map), without test-time flipping's wrapper."""
        return self.model.model if isinstance(self.model, FlipAveraged) else self.model

    def prepare(self, image):
        return eval_tensor(image, self.spec.image_size, self.spec.eval_resize)

    def batch(self, prepared):
        """Prepared uint8 photos -> one normalized float32 batch on the device, in the model's memory format."""
        images = torch.stack(list(prepared)).to(self.device)
        return normalize_batch(images, self.spec.mean, self.spec.std, self.settings.channels_last)

    @torch.no_grad()
    def scores(self, prepared):
        """Prepared photos -> float32 logits, a tensor on the device."""
        images = self.batch(prepared)
        with autocast(self.device, self.settings, training=False):
            return self.model(images).float()

    def logits(self, prepared):
        return self.scores(prepared).cpu().numpy()

    def probabilities(self, prepared):
        """torch's softmax (a multi-label model: sigmoid) on the device, as train's val and `evaluate`
        (scoring.py) compute it: the same float32 numbers as theirs, bit for bit."""
        scores = self.scores(prepared)
        return (scores.sigmoid() if self.spec.multilabel else scores.softmax(dim=1)).cpu().numpy()

    def check_heat_maps(self):
        from petalnet.inference.explain import last_conv

        last_conv(self.network)  # a transformer: one line

    def heat_maps(self, prepared):
        from petalnet.inference.explain import grad_cam

        return list(grad_cam(self.network, self.batch(prepared)).numpy())


def load_torch_backend(model_path, device="auto"):
    """The backend of a run folder (its best.pt) or a checkpoint file."""
    return TorchBackend.from_checkpoint(load_checkpoint(model_path), model_path, device)
