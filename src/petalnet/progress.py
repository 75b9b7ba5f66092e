"""Progress bars: tqdm on stderr, off with progress=False or the environment's TQDM_DISABLE=1."""

from tqdm import tqdm


def progress_bar(iterable=None, enabled=True, **kwargs):
    if not enabled:
        kwargs["disable"] = True
    return tqdm(iterable, dynamic_ncols=True, **kwargs)
