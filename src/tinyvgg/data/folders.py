"""Image folders: one sub-folder per class, like Keras' ``flow_from_directory``."""
import collections
import os
import stat
import warnings

import numpy as np

from ..errors import DataError
from .arrays import _mean_std

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def decode_image(path, image_size):
    """Open an image file as RGB uint8 ``(size, size, 3)``; turned upright as its EXIF
    orientation tag says (phones store photos rotated and tag them), grayscale, palette and
    alpha images converted (alpha composited on white), then resized."""
    from PIL import Image, ImageOps
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
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
