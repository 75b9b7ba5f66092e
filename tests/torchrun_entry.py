"""What torchrun starts in the tests: the CLI as `python -m petalnet` runs it, then one stderr line listing
the threads this process still has (their kernel names), to show that no gloo thread outlives `train`."""

import os
import sys

from petalnet.cli import main

code = main()
tasks = f"/proc/{os.getpid()}/task"
if os.path.isdir(tasks):
    names = sorted(open(f"{tasks}/{task}/comm").read().strip() for task in os.listdir(tasks))
    print(f"rank {os.environ.get('RANK')} threads after main: {' '.join(names)}", file=sys.stderr, flush=True)
sys.exit(code)
