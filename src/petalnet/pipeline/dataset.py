"""Photos -> samples: a dataset over a list of labelled files (the pil pipeline, evaluate).

    eval_dataset(paths, labels, size, resize)   the photos as a model sees them at evaluation
"""

import functools

from torch.utils.data import Dataset

from petalnet.data.images import open_rgb
from petalnet.pipeline.preprocess import eval_short_side, eval_tensor


class PhotoDataset(Dataset):
    """`paths[i]` labelled `labels[i]`, decoded with images.open_rgb (at a reduced scale down to `reduce_to`,
    when given) and passed through `transform`."""

    def __init__(self, paths, labels, transform, reduce_to=None):
        self.paths, self.labels, self.transform, self.reduce_to = list(paths), list(labels), transform, reduce_to

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(open_rgb(self.paths[i], self.reduce_to)), self.labels[i]


def eval_dataset(paths, labels, size, resize):
    """Labelled photos decoded as preprocess.open_eval_photo decodes them (a big JPEG at a reduced scale)
    and made uint8 (3, S, S) by eval_tensor: what the cache pipeline keeps for val, and what predict and
    serve give the model, so that the pil pipeline's val and `evaluate` score every photo the same way."""
    return PhotoDataset(paths, labels, functools.partial(eval_tensor, size=size, resize=resize),
                        reduce_to=eval_short_side(size, resize))
