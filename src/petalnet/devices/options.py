"""What the user asks of the device (the train flags --amp, --workers, ...), importable without PyTorch:
`auto` (None for numbers) lets devices/settings.py choose what was measured fastest for the device.
"""

from dataclasses import dataclass

from petalnet.utils.fields import setting

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def device_setting():
    """The --device field of every command that runs a model (train, predict, evaluate, serve)."""
    return setting("auto", "where to run: auto (CUDA, else Apple's MPS, else the CPU), cpu, cuda, cuda:N or mps")
SWITCH_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class DeviceOptions:
    """What the user asked for (the train flags): `auto` (None for numbers) lets device_settings choose."""
    amp: str = setting("auto", "reduced precision (auto: bf16/fp16 on CUDA, bf16 on CPUs with native bf16)",
                       choices=AMP_CHOICES)
    channels_last: str = setting("auto", "channels-last memory format (auto: on for CPU and CUDA)",
                                 choices=SWITCH_CHOICES)
    fused_optimizer: str = setting("auto", "one fused optimizer kernel per step (auto: where torch has one)",
                                   choices=SWITCH_CHOICES)
    compile: bool = setting(False, "torch.compile the model (slow start)", switch=True)
    workers: int | None = setting(None, "decoding threads (cache pipeline) or processes (pil) (auto: measured "
                                  "for the device)", at_least=0)
    eval_batch_size: int | None = setting(None, "val batch size (auto: 64 CPU, 128 MPS, 512 CUDA)", at_least=1)
    cache_dir: str | None = setting(None, "keep the decoded photos in a store folder here, for the next run to "
                                    "open (default: in memory; $PETALNET_HOME/decoded when over --cache-memory)")
    cache_memory: float | None = setting(None, "GiB of memory the decoded photos may take; more: read from disk "
                                         "(auto: half the available memory, shared by the machine's processes)",
                                         above=0)
