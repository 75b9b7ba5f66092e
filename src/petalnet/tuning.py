"""Device-tuned settings: how to run a recipe fast on this device, without changing what it learns.

Each `auto` choice below was measured (benchmarks/bench_train.py; numbers in the README) and is written
with its reason into the run's config.json under "device_settings":

    channels_last    CPU and CUDA: on (CPU, alexnet_half, batch 32: training 93 vs 82 img/s, inference
                     338 vs 243 img/s); MPS: off
    amp              CUDA: bf16 autocast where the GPU supports it, else fp16 with a gradient scaler;
                     CPU: bf16 only where the CPU has native bf16 (avx512_bf16 or AMX; 148 vs 93 img/s
                     on a Zen 4), never elsewhere (15-20x slower on an AVX2-only Zen 1); MPS: off
    fused_optimizer  on where torch has a fused kernel for the device (CPU, CUDA, MPS): one kernel updates
                     every parameter (CPU, alexnet_half's 14.6M parameters: AdamW step 54 -> 8 ms, SGD 41 ->
                     6 ms; at 112 px that was half of each training step)
    compile          off unless --compile (42 s of compiling on the 2-core CPU, gained nothing there)
    workers          cache pipeline: threads that decode the photos once (all cores, up to 8; threads, not
                     processes: 2972 photos in 3.4 vs 4.2 s on 2 cores);
                     pil pipeline: 0 on CPU (the model is the limit; 66 vs 54-59 img/s with 1-2), else 8
    pin_memory       CUDA with the pil pipeline (the cache pipeline keeps its photos on the GPU)
    eval_batch_size  CPU 64 (larger batches were no faster), MPS 128, CUDA 512
    heap_reuse       CPU on Linux/glibc: large tensors come from the reused heap instead of fresh mmap pages
                     that the kernel must fault in and zero at every step (mallopt): 150 -> 178 img/s
                     training, and the augmentation of a batch 21 -> 11 ms, on the 2-core Zen 4
"""

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

import torch

from petalnet.cores import cpu_count
from petalnet.errors import UserError

AMP_CHOICES = ("auto", "off", "bf16", "fp16")
SWITCH_CHOICES = ("auto", "on", "off")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16():
    """True where the CPU computes bf16 natively (x86 avx512_bf16 or AMX); read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _auto_amp(device):
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA GPU with bf16"
        return "fp16", "CUDA GPU without bf16: fp16 with a gradient scaler"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16", "CPU with native bf16 (avx512_bf16/AMX)"
    return "off", f"{device.type}: no fast reduced precision"


def device_settings(device, pipeline="cache", amp="auto", channels_last="auto", compile=False, workers=None,
                    eval_batch_size=None, cache_dir=None, fused_optimizer="auto"):
    """A plain dict of settings for `device`, plus settings["why"][key] saying why each was chosen."""
    if amp not in AMP_CHOICES:
        raise UserError(f"unknown --amp '{amp}': choose from {', '.join(AMP_CHOICES)}")
    if channels_last not in SWITCH_CHOICES:
        raise UserError(f"unknown --channels-last '{channels_last}': choose from {', '.join(SWITCH_CHOICES)}")
    if fused_optimizer not in SWITCH_CHOICES:
        raise UserError(f"unknown --fused-optimizer '{fused_optimizer}': choose from {', '.join(SWITCH_CHOICES)}")
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 or more, got {workers}")
    if eval_batch_size is not None and eval_batch_size < 1:
        raise UserError(f"--eval-batch-size must be at least 1, got {eval_batch_size}")
    why = {}
    if amp == "auto":
        amp, why["amp"] = _auto_amp(device)
    else:
        why["amp"] = "--amp"
        _check_amp(amp, device)
    if channels_last == "auto":
        channels_last, why["channels_last"] = device.type in ("cpu", "cuda"), f"auto for {device.type}"
    else:
        channels_last, why["channels_last"] = channels_last == "on", "--channels-last"
    fused_optimizer, why["fused_optimizer"] = _fused_optimizer(device, fused_optimizer)
    if workers is None:
        workers, why["workers"] = _auto_workers(device, pipeline)
    else:
        why["workers"] = "--workers"
    if eval_batch_size is None:
        eval_batch_size = {"cpu": 64, "mps": 128}.get(device.type, 512)
        why["eval_batch_size"] = f"auto for {device.type}"
    else:
        why["eval_batch_size"] = "--eval-batch-size"
    why["compile"] = "--compile" if compile else "off by default"
    pin_memory = device.type == "cuda" and pipeline == "pil"
    heap_reuse = device.type == "cpu" and keep_large_allocations_in_heap()
    why["heap_reuse"] = "CPU with glibc" if heap_reuse else "not a CPU run on glibc"
    return {"amp": amp, "channels_last": channels_last, "compile": bool(compile), "workers": workers,
            "fused_optimizer": fused_optimizer,
            "pin_memory": pin_memory, "eval_batch_size": eval_batch_size, "heap_reuse": heap_reuse,
            "cache_dir": str(cache_dir) if cache_dir else None, "why": why}


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
        raise UserError(f"--amp fp16 needs a CUDA GPU (this run is on {device.type}); use bf16 or off")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--amp bf16: this GPU has no bf16; use fp16 or off")


def _fused_optimizer(device, choice):
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    supported = device.type in _get_fused_kernels_supported_devices()
    if choice == "auto":
        return supported, f"{device.type}: {'a' if supported else 'no'} fused optimizer kernel in torch"
    if choice == "on" and not supported:
        raise UserError(f"--fused-optimizer on: torch has no fused optimizer for {device.type}; use auto or off")
    return choice == "on", "--fused-optimizer"


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
    amp = settings["amp"]
    enabled = amp != "off" and (training or device.type == "cuda")
    return torch.autocast(device.type, dtype=AMP_DTYPES.get(amp, torch.bfloat16), enabled=enabled)


def grad_scaler(device, settings):
    """A gradient scaler for fp16 training on CUDA; a disabled one otherwise."""
    return torch.amp.GradScaler(device.type, enabled=settings["amp"] == "fp16" and device.type == "cuda")
