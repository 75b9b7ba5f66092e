"""Photos -> batches: a dataset over a list of files, and the DataLoader around it."""

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from petalnet.images import open_rgb


class PhotoDataset(Dataset):
    """`paths[i]` labelled `labels[i]`, decoded with images.open_rgb and passed through `transform`."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(open_rgb(self.paths[i])), self.labels[i]


def make_loader(dataset, batch_size, workers, shuffle, device, generator=None):
    """A DataLoader; when shuffling, reseed `generator` each epoch for a reproducible order."""
    sampler = RandomSampler(dataset, generator=generator) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=torch.device(device).type == "cuda", generator=generator,
                      persistent_workers=False)
