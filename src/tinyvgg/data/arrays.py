"""Images in memory and subsets of a data set: the interface every source shares.

A data set has ``len(ds)``, ``ds.labels`` (int64 ``(N,)``), ``ds.class_names``,
``ds.image_shape`` ``(H, W, 3)``, ``ds.load(indices) -> uint8 (n, H, W, 3)`` and
``ds.channel_stats() -> (mean, std)`` of its pixels in [0, 1], per channel.
"""
import numpy as np

from ..errors import DataError


class ArrayDataset:
    """Images held in memory: uint8 ``(N, H, W, 3)``, integer labels ``(N,)``."""

    def __init__(self, images, labels, class_names):
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels.")
        self.images = np.asarray(images, dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.image_shape = self.images.shape[1:]

    def __len__(self):
        return len(self.labels)

    def load(self, indices):
        return self.images[indices]

    def channel_stats(self):
        """Per-channel mean and standard deviation of the pixels, scaled to [0, 1]."""
        return _channel_stats(self)


def _channel_stats(dataset, chunk=1024):
    """Per-channel (mean, std) of a data set's pixels in [0, 1], read in chunks of images."""
    sums, squares, count = np.zeros(3), np.zeros(3), 0
    for start in range(0, len(dataset), chunk):
        pixels = dataset.load(np.arange(start, min(start + chunk, len(dataset)))).reshape(-1, 3)  # (n*H*W, 3)
        sums += pixels.sum(axis=0, dtype=np.float64)
        squares += np.einsum("ij,ij->j", pixels, pixels, dtype=np.float64)
        count += len(pixels)
    return _mean_std(sums, squares, count)


def _mean_std(sums, squares, count):
    mean = sums / count / 255.0
    var = squares / count / 255.0**2 - mean**2
    return mean.astype(np.float32), np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)



class Subset:
    """The examples of ``dataset`` at ``indices`` (e.g. a validation split)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices)
        self.labels = dataset.labels[self.indices]
        self.class_names, self.image_shape = dataset.class_names, dataset.image_shape

    def __len__(self):
        return len(self.indices)

    def load(self, indices):
        return self.dataset.load(self.indices[indices])

    def channel_stats(self):
        return _channel_stats(self)


def split(dataset, val_fraction=0.1, seed=0):
    """A seeded random (train, validation) split, stratified by class."""
    rng = np.random.default_rng(seed)
    val = []
    for label in range(len(dataset.class_names)):
        members = np.flatnonzero(dataset.labels == label)
        rng.shuffle(members)
        val += list(members[:int(round(len(members) * val_fraction))])
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(dataset)), val)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"{len(dataset)} images are too few to hold out a validation split; "
                        "add images or pass --val-data.")
    return Subset(dataset, train), Subset(dataset, val)
