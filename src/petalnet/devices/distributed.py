"""Many processes, one run: torch.distributed as torchrun starts it (DDP; gloo on CPU, nccl on CUDA).

    torchrun --nproc_per_node=4 -m petalnet train --data DIR --out runs/ddp          # 4 GPUs, one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST --master_port=29500 \\
        -m petalnet train --data DIR --out runs/ddp                                  # and node_rank=1 on the other

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op for one process.
Rank 0 alone writes files and prints; metrics are summed over ranks.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from petalnet.errors import UserError


@dataclass
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # start() made the process group, so stop() destroys it

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def active(self):
        return self.world > 1


def start(device):
    """Join torchrun's process group when there is one; returns (Processes, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserError(f"torchrun runs on CUDA GPUs or CPUs, not {device.type}")
    owns_group = not dist.is_initialized()
    if owns_group:
        _import_before_the_group_exists()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, local_rank, owns_group), device


def _import_before_the_group_exists():
    """Import torch.distributed.nn now, while no process group exists.

    Its functions take `group=group.WORLD` as a default argument, evaluated when the module is first
    imported. DDP imports it (through torch._dynamo) after the group exists, and then ten default
    arguments hold the group for good: destroy_process_group() cannot free it, gloo's threads outlive it,
    and one that finishes a collective while Python shuts down dies taking the GIL ("terminate called
    without an active exception", SIGABRT; docs/torchrun.md). Imported first, the defaults are None.
    """
    import torch.distributed.nn  # noqa: F401


def stop(processes):
    """Destroy the process group that start() made: its threads end here, before Python shuts down."""
    if processes.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(processes):
    if processes.active:
        dist.barrier()


def on_rank0(read, processes):
    """`read()` run on rank 0, its result (any picklable object) on every rank. An exception it raises is
    raised on every rank, so that all stop with the same line: what only rank 0 can read (the run folder,
    which need not be on storage the other machines share) reaches the others this way."""
    if not processes.active:
        return read()
    box = [None]
    if processes.is_main:
        try:
            box[0] = _Result(read(), None)
        except Exception as err:  # noqa: BLE001 - raised on every rank below, not on rank 0 alone
            box[0] = _Result(None, err)
    dist.broadcast_object_list(box, src=0)
    if box[0].error is not None:
        raise box[0].error
    return box[0].value


@dataclass(frozen=True)
class _Result:
    value: object
    error: Exception | None


def ranks_that_differ(value, processes):
    """The ranks whose `value` (picklable, compared with ==) differs from rank 0's; [] when alone."""
    if not processes.active:
        return []
    values = [None] * processes.world
    dist.all_gather_object(values, value)
    return [rank for rank, other in enumerate(values) if other != values[0]]


def share_buffers(model, processes):
    """Rank 0's buffers (BatchNorm's running statistics) in every rank's `model`: each rank's last training
    steps moved its own, and val must score on every rank the network rank 0 saves."""
    if processes.active:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def sum_over_ranks(values, processes, device):
    """Element-wise sum of a list of numbers over all ranks (the list itself when alone)."""
    if not processes.active:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_rows(rows, processes):
    """Rank r holds rows r, r + world, ...; every rank gets all rows back in their original order."""
    if not processes.active:
        return rows
    parts = [None] * processes.world
    dist.all_gather_object(parts, rows.cpu())
    total = sum(len(part) for part in parts)
    merged = torch.empty((total, *rows.shape[1:]), dtype=rows.dtype)
    for rank, part in enumerate(parts):
        merged[rank::processes.world] = part
    return merged
