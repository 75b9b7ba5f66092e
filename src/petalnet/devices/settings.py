"""Device settings: how to run a recipe fast on this device, without changing what it learns.

    options = DeviceOptions(amp="auto")                  # what the user asked (the train flags)
    settings = device_settings(device, "cache", options) # DeviceSettings: what this run does, and why
    inference_settings(device)                           # InferenceSettings: predict, evaluate, serve

Each `auto` choice below was measured (benchmarks/bench_train.py; numbers with dates and machines in
docs/performance.md) and is written with its reason into the run's config.json under "device_settings":

    channels_last    CPU and CUDA: on (faster convolutions on both); MPS: off
    amp              CUDA: bf16 autocast where the GPU supports it, else fp16 with a gradient scaler;
                     CPU: bf16 only where the CPU has native bf16 (avx512_bf16 or AMX), never elsewhere
                     (emulated bf16 is many times slower); MPS: off
    fused_optimizer  on where torch has a fused kernel for the device (CPU, CUDA, MPS): one kernel updates
                     every parameter, instead of a loop over them
    compile          off unless --compile (a long start, no gain measured on small CPUs)
    workers          cache pipeline: threads that decode the photos once (all cores, up to 8; threads,
                     not processes, whose start-up and copies cost more than they gain);
                     pil pipeline: 0 on CPU (the model is the limit), else 8
    pin_memory       CUDA with the pil pipeline (the cache pipeline keeps its photos on the GPU)
    eval_batch_size  CPU 64 (larger batches were no faster), MPS 128, CUDA 512
    heap_reuse       CPU on Linux/glibc: large tensors come from the reused heap instead of fresh mmap pages
                     that the kernel must fault in and zero at every step (mallopt)
    cache_memory     GiB the decoded photos may hold in memory (pipeline/cache.py): half of the memory
                     available now, divided among the processes torchrun starts on this machine
"""

import contextlib
import ctypes
import ctypes.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from petalnet.utils.cores import cpu_count
from petalnet.utils.memory import available_memory
from petalnet.devices.options import DeviceOptions
from petalnet.utils.fields import SettingError, check_fields

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16():
    """True where the CPU computes bf16 natively (x86 avx512_bf16 or AMX); read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _auto_amp(device, depthwise=False):
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA GPU with bf16"
        return "fp16", "CUDA GPU without bf16: fp16 with a gradient scaler"
    if device.type == "cpu" and cpu_has_fast_bf16():
        if depthwise:  # measured (docs/models.md): MobileNets and EfficientNets train slower in bf16 on CPUs
            return "off", "depthwise convolutions run slower in bf16 than in fp32 on a CPU"
        return "bf16", "CPU with native bf16 (avx512_bf16/AMX)"
    return "off", f"{device.type}: no fast reduced precision"


def auto_channels_last(device):
    """Channels-last memory format: faster convolutions on CPUs and CUDA GPUs, not on MPS."""
    return device.type in ("cpu", "cuda")


@dataclass(frozen=True)
class DeviceSettings:
    """What a run does on its device; `why[name]` says why each was chosen (written to config.json)."""
    amp: str = "off"  # off, bf16 or fp16
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    fused_optimizer: bool = False
    pin_memory: bool = False
    eval_batch_size: int = 64
    heap_reuse: bool = False
    cache_dir: str | None = None
    cache_memory: float | None = None  # GiB; None: no limit
    why: dict = field(default_factory=dict)


def device_settings(device, pipeline="cache", options=None, depthwise=False):
    """DeviceSettings for `device` and the pipeline, from the user's DeviceOptions (default: all auto);
    `depthwise`: the network is built on depthwise convolutions (models.networks.has_depthwise_convs)."""
    options = options or DeviceOptions()
    check_fields(options)
    why = {}
    if options.amp == "auto":
        amp, why["amp"] = _auto_amp(device, depthwise)
    else:
        amp, why["amp"] = options.amp, "--amp"
        _check_amp(amp, device)
    if options.channels_last == "auto":
        channels_last, why["channels_last"] = auto_channels_last(device), f"auto for {device.type}"
    else:
        channels_last, why["channels_last"] = options.channels_last == "on", "--channels-last"
    fused_optimizer, why["fused_optimizer"] = _fused_optimizer(device, options.fused_optimizer)
    workers, why["workers"] = (options.workers, "--workers") if options.workers is not None else \
        _auto_workers(device, pipeline)
    if options.eval_batch_size is None:
        eval_batch_size = {"cpu": 64, "mps": 128}.get(device.type, 512)
        why["eval_batch_size"] = f"auto for {device.type}"
    else:
        eval_batch_size, why["eval_batch_size"] = options.eval_batch_size, "--eval-batch-size"
    why["compile"] = "--compile" if options.compile else "off by default"
    cache_memory, why["cache_memory"] = _cache_memory(options.cache_memory)
    heap_reuse = device.type == "cpu" and keep_large_allocations_in_heap()
    why["heap_reuse"] = "CPU with glibc" if heap_reuse else "not a CPU run on glibc"
    return DeviceSettings(amp=amp, channels_last=channels_last, compile=bool(options.compile), workers=workers,
                          fused_optimizer=fused_optimizer, pin_memory=device.type == "cuda" and pipeline == "pil",
                          eval_batch_size=eval_batch_size, heap_reuse=heap_reuse,
                          cache_dir=str(options.cache_dir) if options.cache_dir else None, cache_memory=cache_memory,
                          why=why)


@dataclass(frozen=True)
class InferenceSettings:
    """How a trained model runs on its device (predict, evaluate, serve): the memory format and the
    precision of device_settings' auto choices, nothing that only training needs."""
    amp: str = "off"
    channels_last: bool = False


def inference_settings(device):
    """InferenceSettings for `device`: channels_last and amp as device_settings chooses them by default.
    Unlike device_settings it leaves the process alone: no allocator tuning (mallopt), no memory probe.
    autocast(..., training=False) keeps a CPU in fp32."""
    return InferenceSettings(amp=_auto_amp(device)[0], channels_last=auto_channels_last(device))


_HEAP_REUSE = []


def keep_large_allocations_in_heap():
    """glibc only: serve large allocations from the heap and keep freed memory for reuse (mallopt).

    By default glibc maps every block over ~32 MB afresh and unmaps it when freed, so each training step
    pays page faults for its activations. The price: the process keeps its peak memory until it exits.
    """
    if not _HEAP_REUSE:
        _HEAP_REUSE.append(_mallopt_heap_reuse())
    return _HEAP_REUSE[0]


def _mallopt_heap_reuse():
    if not sys.platform.startswith("linux") or os.environ.get("PETALNET_HEAP_REUSE") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


def _check_amp(amp, device):
    if amp == "fp16" and device.type != "cuda":
        raise SettingError("amp", f"{{}} fp16 needs a CUDA GPU (this run is on {device.type}); use bf16 or off")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SettingError("amp", "{} bf16: this GPU has no bf16; use fp16 or off")


def _fused_optimizer(device, choice):
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    supported = device.type in _get_fused_kernels_supported_devices()
    if choice == "auto":
        return supported, f"{device.type}: {'a' if supported else 'no'} fused optimizer kernel in torch"
    if choice == "on" and not supported:
        raise SettingError("fused_optimizer", f"{{}} on: torch has no fused optimizer for {device.type}; use auto or "
                           "off")
    return choice == "on", "--fused-optimizer"


def _cache_memory(asked):
    if asked is not None:
        return asked, "--cache-memory"
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    share = available_memory() / 2 / processes / 2**30
    return round(share, 3), f"half the available memory, shared by {processes} process(es) on this machine"


def _auto_workers(device, pipeline):
    if pipeline == "cache":
        return min(8, cpu_count()), "decode the photos once with every core (up to 8)"
    if device.type == "cpu":
        return 0, "pil on CPU: the model is the limit, workers only compete with it"
    return min(8, cpu_count()), "pil on a GPU: decoding in parallel keeps the GPU fed"


def autocast(device, settings, training=True):
    """The autocast context for this device and settings (a disabled one when amp is off).

    Evaluation on the CPU always runs in fp32, so that `petalnet evaluate` and train's val agree exactly.
    """
    amp = settings.amp
    enabled = amp != "off" and (training or device.type == "cuda")
    return torch.autocast(device.type, dtype=AMP_DTYPES.get(amp, torch.bfloat16), enabled=enabled)


def precision(device, settings, training=True):
    """autocast(...) for these settings; plain fp32 when settings is None."""
    return autocast(device, settings, training) if settings else contextlib.nullcontext()


def batch_to_device(images, targets, device, settings):
    """A batch moved to `device` (without waiting), images in the settings' memory format."""
    memory_format = torch.channels_last if settings and settings.channels_last else torch.contiguous_format
    return (images.to(device, non_blocking=True, memory_format=memory_format),
            targets.to(device, non_blocking=True))


def grad_scaler(device, settings):
    """A gradient scaler for fp16 training on CUDA; a disabled one otherwise."""
    return torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16" and device.type == "cuda")
