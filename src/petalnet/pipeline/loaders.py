"""Photos -> batches on the device, the two ways `petalnet train --pipeline` offers.

    cache (default)  photos decoded once (cache.py); each batch cropped, flipped and normalized as a
                     whole, on the training device (augment.py). Images/s is the model's, not the JPEG
                     decoder's.
    pil              the tutorial's path: every photo opened with Pillow and transformed one by one
                     (torchvision transforms) in DataLoader workers, every epoch.

Both give loaders with the same interface: iterate for (images, targets) on the device, len() for
batches per epoch, set_epoch(epoch) before each epoch (order and augmentation draws depend only on the
seed, the epoch and the process's rank, so a resumed run continues exactly). Under torchrun each rank
takes its share of the photos: with the cache pipeline a fixed share that the rank alone decodes (so a
machine decodes only what its ranks need, once), with pil a new share of a common permutation every
epoch; val is split without padding and gathered back (distributed.py).
"""

import torch
from torch.utils.data import DataLoader, Subset

from petalnet.config.sizes import eval_image_size, train_image_size
from petalnet.pipeline.augment import (batch_mixer, erase_boxes, photo_policy, resized_crops, sample_crop_boxes,
                                       sample_flips)
from petalnet.pipeline.cache import MAX_ASPECT, decode_eval_photos, decoded_photos
from petalnet.pipeline.preprocess import NormalizedBatches, normalize_batch
from petalnet.pipeline.sampling import balanced_draw
from petalnet.pipeline.store import stacked
from petalnet.utils.fields import SettingError


def epoch_seed(seed, epoch, rank=0):
    return (seed * 1_000_003 + epoch) * 1009 + rank


def shard(n, rank, world, pad):
    """Positions rank, rank + world, ... of range(n); padded by wrapping so every rank gets as many."""
    positions = list(range(n))
    if pad and n % world:
        positions += positions[: world - n % world]
    return positions[rank::world]


class CachedTrainBatches:
    """Random crops of this rank's decoded photos (store.PackedPhotos), a batch at a time, made on `device`,
    then the recipe's other augmentations (augment.py). With MixUp/CutMix the targets are soft labels.

    Under torchrun each rank trains on its own fixed share of the photos (rank_share: what it decoded),
    shuffled anew every epoch, padded by wrapping to as many photos as the largest share. `total` is the
    number of train photos of all ranks together.
    """

    def __init__(self, photos, config, device, settings, rank=0, world=1, num_classes=None, total=None):
        self.device, self.config, self.settings = torch.device(device), config, settings
        self.rank, self.size = rank, train_image_size(1, config)
        self.per_rank = -(-(total or len(photos)) // world)
        self.policy = photo_policy(config)
        self.mixer = batch_mixer(config, num_classes or int(photos.labels.max()) + 1)
        # CUDA: one roi_align per batch, the photos in GPU memory when they fit. Elsewhere (CPU, MPS): crops
        # made on the CPU with the per-photo uint8 resize, then moved (as uint8) and normalized on the device.
        on_gpu = self.device.type == "cuda"
        self.photos = photos.to(self.device) if on_gpu and fits_on_gpu(photos, self.device) else photos
        self.heights, self.widths = photos.sizes.unbind(dim=1)
        self.order, self.draws = torch.Generator(), torch.Generator()
        self.method = "roi" if on_gpu else "loop"

    def __len__(self):
        return -(-self.per_rank // self.config.batch_size)

    def set_epoch(self, epoch):
        self.order.manual_seed(epoch_seed(self.config.seed, epoch) - self.rank)
        self.draws.manual_seed(epoch_seed(self.config.seed, epoch, self.rank + 1))
        self.size = train_image_size(epoch, self.config)

    def __iter__(self):
        """This epoch's batches. (Making the next batch in a thread was slower on a 2-core CPU; on a GPU
        the work is queued asynchronously anyway.)"""
        if self.config.sampler == "balanced":  # classes equally likely (sampling.py)
            mine = balanced_draw(self.photos.labels, self.per_rank, self.order)
        else:
            mine = torch.randperm(len(self.photos), generator=self.order)
        while len(mine) < self.per_rank:  # a smaller share: wrap, so every rank takes as many steps
            mine = torch.cat([mine, mine[:self.per_rank - len(mine)]])
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
        self.photos.release()
        if self.policy is not None:
            images = self.policy(images if images.dtype == torch.uint8 else images.round().clamp(0, 255).byte())
        images = normalize_batch(images.to(self.device, non_blocking=True), c.mean, c.std,
                                 self.settings.channels_last)
        return erase_boxes(images, c.random_erasing) if c.random_erasing > 0 else images

    def render(self, index, boxes, flips):
        """Photos `index` cut to `boxes` (top, left, h, w), resized and flipped: 0-255."""
        images = [self.photos.image(k) for k in index.tolist()]
        return resized_crops(images, boxes, self.size, self.method, flips, self.device)


def fits_on_gpu(photos, device, share=0.5):
    """True when the photos take at most `share` of the GPU's free memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return photos.nbytes <= share * free


class StoredEvalBatches:
    """This rank's val photos (store.PackedPhotos, already at the model's size), normalized a batch at a
    time on `device`.

    set_epoch(epoch) switches to that epoch's val size (config/sizes.py), decoding the photos
    again at a new size with `decode_at(size)`, exactly as `petalnet evaluate` would at that size.
    """

    def __init__(self, photos, config, device, settings, decode_at=None):
        self.photos, self.size = photos, eval_image_size(config)
        self.config, self.device, self.settings = config, torch.device(device), settings
        self.batch_size = settings.eval_batch_size
        self.final, self.decode_at = photos, decode_at

    def set_epoch(self, epoch):
        size = eval_image_size(self.config, epoch) if self.decode_at else self.size
        if size != self.size:
            self.photos = self.final if size == eval_image_size(self.config) else self.decode_at(size)
            self.size = size

    def __len__(self):
        return -(-len(self.photos) // self.batch_size)

    def __iter__(self):
        c, photos = self.config, self.photos
        for start in range(0, len(photos), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(photos)))
            images = stacked(photos, index).to(self.device, non_blocking=True)
            photos.release()
            yield (normalize_batch(images, c.mean, c.std, self.settings.channels_last),
                   photos.labels[index].to(self.device, non_blocking=True))


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


def rank_share(items, rank, world):
    """The items rank `rank` of `world` works on for the whole run: positions rank, rank + world, ...
    (photos are listed class by class, so each share holds every class in proportion)."""
    return list(items)[rank::world]


def make_loaders(config, photos, device, settings, rank=0, world=1, progress=True, log=print):
    """(train loader, val loader) for config.pipeline; photos is training.train.TrainData."""
    val_size = eval_image_size(config)
    if config.pipeline == "pil":
        return _pil_loaders(config, photos, device, settings, rank, world)
    data = {"train": (rank_share(photos.train_paths, rank, world), rank_share(photos.train_labels, rank, world)),
            "val": (rank_share(photos.val_paths, rank, world), rank_share(photos.val_labels, rank, world))}
    budget = memory_budget(config, settings)
    train, val = decoded_photos(data, config.cache_size, val_size, config.eval_resize, settings.workers,
                                settings.cache_dir, budget, progress, log)

    def decode_at(size):  # the val photos at another size (progressive_eval), kept in memory
        return decode_eval_photos(*data["val"], size, config.eval_resize, settings.workers, progress)

    return (CachedTrainBatches(train, config, device, settings, rank, world, len(photos.classes),
                               len(photos.train_paths)),
            StoredEvalBatches(val, config, device, settings, decode_at))


def memory_budget(config, settings):
    """settings.cache_memory (GiB) in bytes, None for no limit; SettingError below one batch's photos."""
    if settings.cache_memory is None:
        return None
    budget = int(settings.cache_memory * 2**30)
    one_batch = config.batch_size * 3 * config.cache_size * MAX_ASPECT * config.cache_size
    if budget < one_batch:
        raise SettingError("cache_memory", f"{{}} {settings.cache_memory:g} GiB is less than one batch of "
                           f"decoded photos can take ({one_batch / 2**30:.3f} GiB at batch size "
                           f"{config.batch_size}, cache size {config.cache_size})")
    return budget


def _pil_loaders(config, photos, device, settings, rank, world):
    """The tutorial's path: PIL per photo in DataLoader workers; val through dataset.eval_dataset, as evaluate."""
    from petalnet.pipeline.augment import pil_train_transform  # torchvision: slow to import, only here
    from petalnet.pipeline.dataset import PhotoDataset, eval_dataset

    train_set = PhotoDataset(photos.train_paths, photos.train_labels, pil_train_transform(config))
    val_set = eval_dataset(photos.val_paths, photos.val_labels, eval_image_size(config), config.eval_resize)
    val = PilBatches(val_set, settings.eval_batch_size, settings, device, False, rank=rank, world=world)
    return (PilBatches(train_set, config.batch_size, settings, device, True, config.seed, rank, world),
            NormalizedBatches(val, config.mean, config.std, device, settings.channels_last))
