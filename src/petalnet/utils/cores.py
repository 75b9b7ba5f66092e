"""How many CPU cores this process may use: its affinity mask (containers, taskset), not the machine's count.

Torch-free, so that `petalnet data check` can size its thread pool without importing torch.
"""

import os


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
