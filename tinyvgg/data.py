"""Data sets and mini-batches.

Three sources, one interface (``len(ds)``, ``ds.labels``, ``ds.class_names``,
``ds.load(indices) -> uint8 (n, H, W, 3)``, ``ds.channel_stats()``):

- :func:`make_shapes`: the built-in data set, ten classes of coloured geometric
  shapes drawn from a seed; no download. A linear model cannot solve it (the
  shapes move, grow and change colour); a small VGG can. Its harder sibling, the
  digits of :func:`tinyvgg.glyphs.make_glyphs`, is opened the same way.
- :class:`ImageFolder`: one sub-folder per class, like Keras'
  ``flow_from_directory``; images decoded, converted to RGB and resized on
  demand, with a bounded cache.
- :func:`load_cifar10`: CIFAR-10's "python version" batch files, read with an
  unpickler that refuses anything but plain data.

:class:`BatchLoader` turns a data set into shuffled, augmented, normalized
float32 mini-batches on the model's backend. :func:`open_dataset` parses the
CLI's ``--data`` value.
"""
import collections
import os
import pickle
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backend import to_device

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SHAPE_CLASSES = ("disk", "ring", "square", "frame", "triangle", "diamond", "plus", "cross", "hbar", "vbar")


class DataError(ValueError):
    """A problem with the user's data; the message names it and the fix."""


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


# ---------------------------------------------------------------- built-in shapes

def _shape_mask(kind, dy, dx, r):
    """Boolean mask of one shape centred at (0, 0) with radius r, on offset grids dy, dx."""
    ady, adx = np.abs(dy), np.abs(dx)
    thick = r / 4
    if kind == "disk":
        return dy**2 + dx**2 <= r**2
    if kind == "ring":
        return ((0.55 * r)**2 <= dy**2 + dx**2) & (dy**2 + dx**2 <= r**2)
    if kind == "square":
        return np.maximum(ady, adx) <= 0.8 * r
    if kind == "frame":
        return (0.45 * r <= np.maximum(ady, adx)) & (np.maximum(ady, adx) <= 0.8 * r)
    if kind == "triangle":  # apex up
        return (dy >= -r) & (dy <= 0.7 * r) & (adx <= 0.6 * (dy + r))
    if kind == "diamond":
        return ady + adx <= r
    if kind == "plus":
        return ((ady <= thick) & (adx <= r)) | ((adx <= thick) & (ady <= r))
    if kind == "cross":  # the plus turned by 45 degrees
        u, v = np.abs(dy + dx) / np.sqrt(2), np.abs(dy - dx) / np.sqrt(2)
        return ((u <= thick) & (v <= r)) | ((v <= thick) & (u <= r))
    if kind == "hbar":
        return (ady <= thick) & (adx <= r)
    if kind == "vbar":
        return (adx <= thick) & (ady <= r)
    raise ValueError(f"unknown shape {kind!r}")


def make_shapes(num_images=6000, seed=0, image_size=32):
    """The built-in data set: ``num_images`` images of 10 shape classes, balanced.

    Each image has a random background colour with a soft gradient and noise,
    and one shape of random size (a quarter to 3/4 of the image), position and
    colour (kept apart from the background's). Same seed, same images.

    >>> ds = make_shapes(20, seed=0)
    >>> ds.images.shape, ds.class_names[:3]
    ((20, 32, 32, 3), ['disk', 'ring', 'square'])
    """
    rng = np.random.default_rng(seed)
    S = image_size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64) + 0.5
    labels = np.arange(num_images) % len(SHAPE_CLASSES)
    rng.shuffle(labels)
    images = np.empty((num_images, S, S, 3), dtype=np.uint8)
    for n, label in enumerate(labels):
        r = rng.uniform(0.14, 0.38) * S
        cy, cx = rng.uniform(r, S - r, size=2)
        background = rng.uniform(0, 1, 3)
        foreground = rng.uniform(0, 1, 3)
        while np.abs(foreground - background).sum() < 0.6:  # keep the shape visible
            foreground = rng.uniform(0, 1, 3)
        gradient = rng.uniform(-0.15, 0.15, 2)
        shade = (gradient[0] * (yy / S - 0.5) + gradient[1] * (xx / S - 0.5))[..., None]  # (S, S, 1)
        img = background + shade + rng.normal(0, 0.04, (S, S, 3))
        mask = _shape_mask(SHAPE_CLASSES[label], yy - cy, xx - cx, r)
        img[mask] = foreground + rng.normal(0, 0.04, (int(mask.sum()), 3))
        images[n] = np.clip(img * 255, 0, 255).round().astype(np.uint8)
    return ArrayDataset(images, labels, SHAPE_CLASSES)


# ---------------------------------------------------------------- image folders

def decode_image(path, image_size):
    """Open an image file as RGB uint8 ``(size, size, 3)``; grayscale, palette and
    alpha images are converted (alpha composited on white), then resized."""
    from PIL import Image
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img.alpha_composite(rgba)
        img = img.convert("RGB")
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def _list_folder(folder, what):
    """The names in ``folder``; a DataError naming the folder when it cannot be read."""
    try:
        return sorted(os.listdir(folder))
    except OSError as err:
        raise DataError(f"cannot read the {what} {folder} ({err.strerror}); check its permissions.") from None


def _list_class_folders(root):
    if not os.path.exists(root):
        raise DataError(f"the data folder {root} does not exist; "
                        "pass a folder with one sub-folder of images per class.")
    if not os.path.isdir(root):
        raise DataError(f"{root} is not a folder; pass a folder with one sub-folder of images per class.")
    classes = [name for name in _list_folder(root, "data folder")
               if not name.startswith(".") and os.path.isdir(os.path.join(root, name))]
    if not classes:
        raise DataError(f"the data folder {root} has no class sub-folders; put each class's images "
                        "in a sub-folder named after the class (e.g. train/cats, train/dogs).")
    for name in classes:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in the file name: it would break checkpoints and plots
            raise DataError(f"the class folder {os.path.join(root, name)!r} has a name that is not valid UTF-8; "
                            "rename it.") from None
    return classes


def is_regular_file(path):
    """True for a regular file (or a link to one): never a pipe, socket or device, which could block a read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class ImageFolder:
    """Images in ``root/<class name>/<image>``, read lazily with a bounded cache.

    Every image is decoded once when the data set is opened, to find unreadable
    files early (each is skipped with a warning that names it) and to compute
    the per-channel statistics. Decoded images are kept in an LRU cache of at
    most ``cache_bytes``; a data set larger than that is decoded again from disk
    as batches need it. ``class_names`` fixes the class order (e.g. the
    training set's, for a validation folder).
    """

    def __init__(self, root, image_size, class_names=None, cache_bytes=2**30, progress=True):
        self.root, self.image_size = root, image_size
        found = _list_class_folders(root)
        if class_names is not None:
            unknown = sorted(set(found) - set(class_names))
            if unknown:
                raise DataError(f"{root} has class folders {unknown} that the training data does not have.")
        self.class_names = list(class_names) if class_names is not None else found
        files, labels = [], []
        if class_names is None and len(found) < 2:
            raise DataError(f"the data folder {root} has one class ({found[0]}); a classifier needs at least two "
                            "class sub-folders.")
        for label, name in enumerate(self.class_names):
            folder = os.path.join(root, name)
            names = [f for f in _list_folder(folder, "class folder") if f.lower().endswith(IMAGE_EXTENSIONS)
                     and is_regular_file(os.path.join(folder, f))] if os.path.isdir(folder) else []
            if not names and class_names is None:
                raise DataError(f"the class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                                "add some or remove the folder.")
            files += [os.path.join(folder, f) for f in names]
            labels += [label] * len(names)
        self.image_shape = (image_size, image_size, 3)
        self._cache = collections.OrderedDict()
        self._cache_items = max(1, cache_bytes // (image_size * image_size * 3))
        self.files, self.labels = self._scan(files, labels, progress)

    def _scan(self, files, labels, progress):
        from tqdm import tqdm
        keep_files, keep_labels = [], []
        sums, squares = np.zeros(3), np.zeros(3)
        for path, label in tqdm(list(zip(files, labels)), desc=f"reading {self.root}", unit="img",
                                disable=not progress or len(files) < 500, leave=False):
            try:
                img = decode_image(path, self.image_size)
            except Exception as err:
                warnings.warn(f"skipping unreadable image {path} ({type(err).__name__}: {err})", stacklevel=3)
                continue
            pixels = img.reshape(-1, 3).astype(np.float64)  # (H*W, 3)
            sums += pixels.sum(axis=0)
            squares += (pixels * pixels).sum(axis=0)
            self._remember(path, img)
            keep_files.append(path)
            keep_labels.append(label)
        if not keep_files:
            raise DataError(f"no readable images in {self.root}; it needs one sub-folder of images per class.")
        self._stats = _mean_std(sums, squares, len(keep_files) * self.image_size**2)
        return keep_files, np.asarray(keep_labels, dtype=np.int64)

    def _remember(self, path, img):
        self._cache[path] = img
        self._cache.move_to_end(path)
        while len(self._cache) > self._cache_items:
            self._cache.popitem(last=False)

    def __len__(self):
        return len(self.files)

    def load(self, indices):
        out = np.empty((len(indices),) + self.image_shape, dtype=np.uint8)
        for i, index in enumerate(indices):
            path = self.files[index]
            img = self._cache.get(path)
            if img is None:
                try:
                    img = decode_image(path, self.image_size)
                except Exception as err:
                    raise DataError(f"could not read {path} ({err}); "
                                    "was it changed or removed during training?") from err
                self._remember(path, img)
            out[i] = img
        return out

    def channel_stats(self):
        return self._stats


# ---------------------------------------------------------------- CIFAR-10

class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays, and nothing else.

    Pickle can call any function named in the file; CIFAR-10's batches need only
    NumPy's array reconstruction, so every other global is refused.
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how protocol-2 pickles written by Python 3 store bytes

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: CIFAR-10 batches hold only plain data")


def _read_cifar_batch(path):
    if os.path.exists(path) and not is_regular_file(path):
        raise DataError(f"{path} is not a regular file; --data cifar10:PATH needs CIFAR-10's batch files.")
    try:
        with open(path, "rb") as f:
            batch = _PlainDataUnpickler(f, encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 3*32*32) -> (N, 32, 32, 3)
    except FileNotFoundError:
        raise DataError(f"{path} is missing; --data cifar10:PATH needs the folder cifar-10-batches-py "
                        "with data_batch_1..5 and test_batch.") from None
    except Exception as err:
        raise DataError(f"{path} is not a CIFAR-10 python batch file ({type(err).__name__}: {err}).") from None
    return np.ascontiguousarray(images), labels


def load_cifar10(folder, image_size=32):
    """(train, test) from CIFAR-10's python batches in ``folder``."""
    if not os.path.isdir(folder):
        raise DataError(f"the CIFAR-10 folder {folder} does not exist; download and unpack "
                        "cifar-10-python.tar.gz and pass its cifar-10-batches-py folder.")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = os.path.join(folder, "batches.meta")
    if is_regular_file(meta):
        with open(meta, "rb") as f:
            entries = _PlainDataUnpickler(f, encoding="bytes").load()
        names = [n.decode() if isinstance(n, bytes) else n for n in entries.get(b"label_names", names)]
    parts = [_read_cifar_batch(os.path.join(folder, f"data_batch_{i}")) for i in range(1, 6)]
    train_x, train_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    test_x, test_y = _read_cifar_batch(os.path.join(folder, "test_batch"))
    if image_size != 32:
        train_x, test_x = resize_images(train_x, image_size), resize_images(test_x, image_size)
    return ArrayDataset(train_x, train_y, names), ArrayDataset(test_x, test_y, names)


def resize_images(images, image_size):
    """Resize uint8 ``(N, H, W, 3)`` images to ``(N, size, size, 3)`` (bilinear)."""
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(img).resize((image_size, image_size), Image.BILINEAR))
                     for img in images])


# ---------------------------------------------------------------- splitting and opening

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


def _glyphs_maker():
    from .glyphs import make_glyphs
    return make_glyphs


#: The data sets drawn from a seed: name -> a function returning their maker (imported when asked for).
BUILT_IN = {"shapes": lambda: make_shapes, "glyphs": _glyphs_maker}
#: The most memory the built-in images of one run may take (training and validation images, uint8).
BUILT_IN_MAX_BYTES = 4 * 2**30


def _built_in_count(spec, count, image_size):
    """The number of training images that ``--data NAME:COUNT`` asks for, checked."""
    if not count:
        return 6000
    if not count.isdigit() or int(count) < 10:
        raise DataError(f"--data {spec}: the number of images must be a whole number of at least 10 "
                        f"(one per class), e.g. {spec.partition(':')[0]}:6000.")
    n = int(count)
    bytes_needed = (n + max(n // 6, 100)) * image_size * image_size * 3
    if bytes_needed > BUILT_IN_MAX_BYTES:
        most = BUILT_IN_MAX_BYTES // (image_size * image_size * 3) * 6 // 7
        raise DataError(f"--data {spec}: {n:,} images of {image_size}x{image_size} would take "
                        f"{bytes_needed / 2**30:.0f} GiB of memory; ask for at most {most:,}.")
    return n


def open_dataset(spec, image_size, val_spec=None, seed=0, progress=True):
    """(train, val) for the CLI's ``--data`` value.

    "shapes" (the default built-in set), "glyphs" (the built-in digits), either with
    ":N" for N training images, "cifar10:PATH", or a folder of class sub-folders. Without
    ``val_spec`` a seeded 10% of a folder is held out; the built-in sets and CIFAR-10 have
    their own.
    """
    name, _, count = spec.partition(":")
    if name in BUILT_IN:
        n = _built_in_count(spec, count, image_size)
        make = BUILT_IN[name]()
        return make(n, seed=seed, image_size=image_size), make(max(n // 6, 100), seed=seed + 1, image_size=image_size)
    if spec.startswith("cifar10:"):
        return load_cifar10(spec[len("cifar10:"):], image_size)
    train = ImageFolder(spec, image_size, progress=progress)
    if val_spec:
        return train, ImageFolder(val_spec, image_size, class_names=train.class_names, progress=progress)
    return split(train, 0.1, seed)


# ---------------------------------------------------------------- batches

def augment_batch(x, flips, offsets, pad=4):
    """Random horizontal flip and random crop after zero padding, in place of x.

    x: float32 (n, H, W, C), normalized (so the zero padding is the mean colour);
    flips: (n,) bool; offsets: (n, 2) ints in [0, 2*pad].
    """
    n, H, W, C = x.shape
    padded = np.zeros((n, H + 2 * pad, W + 2 * pad, C), dtype=x.dtype)
    padded[:, pad:pad + H, pad:pad + W] = x
    for i in range(n):
        dy, dx = offsets[i]
        crop = padded[i, dy:dy + H, dx:dx + W]
        x[i] = crop[:, ::-1] if flips[i] else crop
    return x


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
