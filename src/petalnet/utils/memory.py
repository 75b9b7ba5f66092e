"""How much memory and disk this machine has to spare, torch-free.

    available_memory()    bytes the kernel could give now without swapping (Linux: MemAvailable)
    free_disk(folder)     bytes free on the file system of `folder` (or of its nearest existing parent)
"""

import os
import shutil
from pathlib import Path


def available_memory():
    """MemAvailable from /proc/meminfo (Linux); elsewhere a quarter of the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def free_disk(folder):
    """Free bytes where `folder` is or would be created."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free
