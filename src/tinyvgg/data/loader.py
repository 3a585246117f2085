"""Mini-batches: shuffled, augmented, normalized, on the model's device."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import to_device
from .augment import augment_batch


class BatchLoader:
    """Mini-batches ``(x, y)``: float32 NHWC images normalized per channel, int64 labels.

    Randomness (the shuffle order and the augmentation draws) comes from the
    host ``rng`` and is drawn at the start of each epoch in the calling thread,
    so a seed gives the same batches whether or not the next batch is prepared
    in a background thread (``prefetch``). Batches are moved to ``backend``.
    """

    def __init__(self, dataset, batch_size, mean, std, shuffle=False, augment=False, rng=None,
                 backend="numpy", prefetch=True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if (shuffle or augment) and rng is None:
            raise ValueError("shuffling or augmenting needs a numpy.random.Generator (rng).")
        self.dataset, self.batch_size = dataset, batch_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.shuffle, self.augment, self.rng = shuffle, augment, rng
        self.backend, self.prefetch = backend, prefetch

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def _prepare(self, indices, flips, offsets):
        images = self.dataset.load(indices)                         # uint8 (n, H, W, 3)
        x = (images.astype(np.float32) * np.float32(1 / 255) - self.mean) / self.std
        if flips is not None:
            augment_batch(x, flips, offsets)
        y = self.dataset.labels[indices]
        # one copy per batch to the device, through pinned memory on a GPU
        return to_device(x, self.backend, pinned=True), to_device(y, self.backend, pinned=True)

    def _plan(self):
        """The epoch's batches: (indices, flips, offsets) each, all random draws done here."""
        N = len(self.dataset)
        order = self.rng.permutation(N) if self.shuffle else np.arange(N)
        flips = self.rng.random(N) < 0.5 if self.augment else None
        offsets = self.rng.integers(0, 9, (N, 2)) if self.augment else None
        for start in range(0, N, self.batch_size):
            part = slice(start, start + self.batch_size)
            yield order[part], (flips[part] if flips is not None else None), \
                (offsets[part] if offsets is not None else None)

    def __iter__(self):
        return self.batches()

    def batches(self, start=0, plan_state=None):
        """The epoch's batches from number ``start`` on.

        The epoch's random draws are made first, from the RNG's current state, which is
        kept in ``self.plan_state``; pass a saved ``plan_state`` (with ``start``) to make the
        same draws again and continue an interrupted epoch exactly (the RNG is then left in
        the state it had, which later draws such as dropout masks go on from).
        """
        saved = None
        if plan_state is not None:
            saved, self.rng.bit_generator.state = self.rng.bit_generator.state, plan_state
        self.plan_state = self.rng.bit_generator.state if self.rng is not None else None
        plan = list(self._plan())[start:]
        if saved is not None:
            self.rng.bit_generator.state = saved
        return self._iterate(plan)

    def _iterate(self, plan):
        if not self.prefetch:
            for job in plan:
                yield self._prepare(*job)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._prepare, *plan[0]) if plan else None
            for k in range(len(plan)):
                batch = pending.result()
                pending = pool.submit(self._prepare, *plan[k + 1]) if k + 1 < len(plan) else None
                yield batch