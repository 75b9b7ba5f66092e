"""Photos -> batches on the device, the two ways `petalnet train --pipeline` offers.

    cache (default)  photos decoded once (cache.py); each batch cropped, flipped and normalized as a
                     whole, on the training device (augment.py). Images/s is the model's, not the JPEG
                     decoder's.
    pil              the tutorial's path: every photo opened with Pillow and transformed one by one
                     (torchvision transforms) in DataLoader workers, every epoch.

Both give loaders with the same interface: iterate for (images, targets) on the device, len() for
batches per epoch, set_epoch(epoch) before each epoch (order and augmentation draws depend only on the
seed, the epoch and the process's rank, so a resumed run continues exactly). Under torchrun each rank
takes its share of the photos; val is split without padding and gathered back (distributed.py).
"""

import functools

import torch
from torch.utils.data import DataLoader, Subset

from petalnet.config.sizes import eval_image_size, train_image_size
from petalnet.pipeline.augment import (batch_mixer, erase_boxes, photo_policy, resized_crops, sample_crop_boxes,
                                       sample_flips)
from petalnet.pipeline.cache import decode_eval_photos, decoded_photos
from petalnet.pipeline.preprocess import NormalizedBatches, normalize_batch


def epoch_seed(seed, epoch, rank=0):
    return (seed * 1_000_003 + epoch) * 1009 + rank


def shard(n, rank, world, pad):
    """Positions rank, rank + world, ... of range(n); padded by wrapping so every rank gets as many."""
    positions = list(range(n))
    if pad and n % world:
        positions += positions[: world - n % world]
    return positions[rank::world]


class CachedTrainBatches:
    """Random crops of decoded photos, a batch at a time, made on `device`, then the recipe's other
    augmentations (augment.py). With MixUp/CutMix the targets are soft labels (N, num_classes)."""

    def __init__(self, photos, config, device, settings, rank=0, world=1, num_classes=None):
        self.device, self.config, self.settings = torch.device(device), config, settings
        self.rank, self.world, self.size = rank, world, train_image_size(1, config)
        self.policy = photo_policy(config)
        self.mixer = batch_mixer(config, num_classes or int(photos.labels.max()) + 1)
        # CUDA: photos on the GPU, one roi_align per batch. Elsewhere (CPU, MPS): crops made on the CPU
        # with the per-photo uint8 resize, then moved (as uint8) and normalized on the device.
        on_gpu = self.device.type == "cuda"
        self.photos = photos.to(self.device if on_gpu else "cpu")
        self.heights, self.widths = photos.upright_sizes()
        self.order, self.draws = torch.Generator(), torch.Generator()
        self.method = "roi" if on_gpu else "loop"

    def __len__(self):
        per_rank = len(shard(len(self.photos), self.rank, self.world, pad=True))
        return -(-per_rank // self.config.batch_size)

    def set_epoch(self, epoch):
        self.order.manual_seed(epoch_seed(self.config.seed, epoch))  # the same order on every rank
        self.draws.manual_seed(epoch_seed(self.config.seed, epoch, self.rank + 1))
        self.size = train_image_size(epoch, self.config)

    def __iter__(self):
        """This epoch's batches. (Making the next batch in a thread was slower on a 2-core CPU; on a GPU
        the work is queued asynchronously anyway.)"""
        permutation = torch.randperm(len(self.photos), generator=self.order)
        mine = permutation[shard(len(permutation), self.rank, self.world, pad=True)]
        for start in range(0, len(mine), self.config.batch_size):
            index = mine[start:start + self.config.batch_size]
            images, labels = self.batch(index), self.photos.labels[index].to(self.device, non_blocking=True)
            yield self.mixer(images, labels) if self.mixer else (images, labels)

    def batch(self, index):
        """The augmented, normalized float batch for photos `index`."""
        c = self.config
        boxes = sample_crop_boxes(self.heights[index], self.widths[index], c.crop_scale, generator=self.draws)
        flips = sample_flips(len(index), generator=self.draws) if c.hflip else torch.zeros(len(index), dtype=bool)
        images = self.render(index, boxes, flips)
        if self.policy is not None:
            images = self.policy(images if images.dtype == torch.uint8 else images.round().clamp(0, 255).byte())
        images = normalize_batch(images.to(self.device, non_blocking=True), c.mean, c.std,
                                 self.settings.channels_last)
        return erase_boxes(images, c.random_erasing) if c.random_erasing > 0 else images

    def render(self, index, boxes, flips):
        """Photos `index` cut to `boxes` (top, left, h, w on the upright photo), resized, flipped: 0-255."""
        transposed = self.photos.transposed[index]
        stored = torch.where(transposed[:, None], boxes[:, [1, 0, 3, 2]], boxes)  # boxes on the canvas
        return resized_crops(self.photos.canvas, index, stored, self.size, self.method, transposed, flips)


class TensorEvalBatches:
    """Already-resized uint8 val photos, normalized a batch at a time on `device` (this rank's share).

    set_epoch(epoch) switches to that epoch's val size (config/sizes.py), decoding the photos
    again at a new size with `decode_at(size)`, exactly as `petalnet evaluate` would at that size.
    """

    def __init__(self, images, labels, config, device, settings, rank=0, world=1, decode_at=None):
        self.positions = torch.as_tensor(shard(len(labels), rank, world, pad=False), dtype=torch.long)
        self.images, self.labels, self.size = images, labels, eval_image_size(config)
        self.config, self.device, self.settings = config, torch.device(device), settings
        self.batch_size = settings.eval_batch_size
        self.final, self.decode_at = images, decode_at

    def set_epoch(self, epoch):
        size = eval_image_size(self.config, epoch) if self.decode_at else self.size
        if size != self.size:
            self.images = self.final if size == eval_image_size(self.config) else self.decode_at(size)
            self.size = size

    def __len__(self):
        return -(-len(self.positions) // self.batch_size)

    def __iter__(self):
        c = self.config
        for start in range(0, len(self.positions), self.batch_size):
            index = self.positions[start:start + self.batch_size]
            images = self.images[index].to(self.device, non_blocking=True)
            yield (normalize_batch(images, c.mean, c.std, self.settings.channels_last),
                   self.labels[index].to(self.device, non_blocking=True))


class PilBatches:
    """The tutorial's DataLoader of per-photo PIL transforms, with set_epoch and rank sharding."""

    def __init__(self, dataset, batch_size, settings, device, shuffle, seed=0, rank=0, world=1):
        self.shuffle, self.seed, self.rank, self.world = shuffle, seed, rank, world
        self.positions = shard(len(dataset), rank, world, pad=shuffle)
        self.dataset, self.generator = dataset, torch.Generator()
        pin = settings.pin_memory and torch.device(device).type == "cuda"
        self.loader_args = {"batch_size": batch_size, "num_workers": settings.workers, "pin_memory": pin}

    def __len__(self):
        return -(-len(self.positions) // self.loader_args["batch_size"])

    def set_epoch(self, epoch):
        self.generator.manual_seed(epoch_seed(self.seed, epoch))

    def __iter__(self):
        positions = self.positions
        if self.shuffle:  # one permutation shared by all ranks, then this rank's share
            permutation = torch.randperm(len(self.dataset), generator=self.generator).tolist()
            positions = [permutation[p] for p in shard(len(permutation), self.rank, self.world, pad=True)]
        return iter(DataLoader(Subset(self.dataset, positions), generator=self.generator, **self.loader_args))


def make_loaders(config, photos, device, settings, rank=0, world=1, progress=True, log=print):
    """(train loader, val loader) for config.pipeline; photos is training.train.TrainData."""
    val_size = eval_image_size(config)
    if config.pipeline == "pil":
        return _pil_loaders(config, photos, device, settings, rank, world)
    data = {"train": (photos.train_paths, photos.train_labels), "val": (photos.val_paths, photos.val_labels)}
    train, (val_images, val_labels) = decoded_photos(
        data, config.cache_size, val_size, config.eval_resize, settings.workers, settings.cache_dir, progress, log)

    def decode_at(size):  # the val photos at another size (progressive_eval), not kept in the cache file
        return decode_eval_photos(*data["val"], size, config.eval_resize, settings.workers, progress)[0]

    return (CachedTrainBatches(train, config, device, settings, rank, world, len(photos.classes)),
            TensorEvalBatches(val_images, val_labels, config, device, settings, rank, world, decode_at))


def _pil_loaders(config, photos, device, settings, rank, world):
    """The tutorial's path: PIL per photo in DataLoader workers; val through preprocess.eval_tensor, as evaluate."""
    from petalnet.pipeline.augment import pil_train_transform  # torchvision: slow to import, only here
    from petalnet.pipeline.dataset import PhotoDataset
    from petalnet.pipeline.preprocess import eval_tensor

    train_set = PhotoDataset(photos.train_paths, photos.train_labels, pil_train_transform(config))
    val_set = PhotoDataset(photos.val_paths, photos.val_labels,
                           functools.partial(eval_tensor, size=eval_image_size(config), resize=config.eval_resize))
    val = PilBatches(val_set, settings.eval_batch_size, settings, device, False, rank=rank, world=world)
    return (PilBatches(train_set, config.batch_size, settings, device, True, config.seed, rank, world),
            NormalizedBatches(val, config.mean, config.std, device, settings.channels_last))
