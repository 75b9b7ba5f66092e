"""Pick the device: `auto` means CUDA, then Apple's MPS, then the CPU."""

import torch

from petalnet.errors import UserError
from petalnet.utils.fields import SettingError


def pick_device(name="auto"):
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError("device", "{} cuda: no CUDA GPU is available on this machine (try auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingError("device", f"{{}} {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps":
        if not _mps_available():
            raise SettingError("device", "{} mps: Apple's MPS is not available on this machine (try auto)")
    elif device.type != "cpu":
        raise UserError(f"unsupported device '{name}': use auto, cpu, cuda, cuda:N or mps")
    return device


def _mps_available():
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def describe(device):
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
