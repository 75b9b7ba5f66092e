"""Photos -> samples: a dataset over a list of labelled files (the pil pipeline, evaluate)."""

from torch.utils.data import Dataset

from petalnet.data.images import open_rgb


class PhotoDataset(Dataset):
    """`paths[i]` labelled `labels[i]`, decoded with images.open_rgb and passed through `transform`."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(open_rgb(self.paths[i])), self.labels[i]
