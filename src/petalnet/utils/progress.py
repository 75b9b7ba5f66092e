"""Progress bars: tqdm on stderr, off with progress=False or the environment's TQDM_DISABLE=1.

When stderr is not a terminal (a log file, CI), bars refresh every 30 s instead of every 0.1 s.
"""

import sys

from tqdm import tqdm


def progress_bar(iterable=None, enabled=True, **kwargs):
    if not enabled:
        kwargs["disable"] = True
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    return tqdm(iterable, dynamic_ncols=True, **kwargs)
