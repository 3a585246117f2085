"""CIFAR-10 from its "python version" batch files, read without running any pickled code."""
import os
import pickle

import numpy as np

from ..errors import DataError
from .arrays import ArrayDataset
from .folders import is_regular_file


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


def _read_label_names(path, default):
    """The ten class names in CIFAR-10's ``batches.meta``; a DataError for anything else in it."""
    try:
        with open(path, "rb") as f:
            entries = _PlainDataUnpickler(f, encoding="bytes").load()
        names = [n.decode() if isinstance(n, bytes) else n for n in entries.get(b"label_names", default)]
    except Exception as err:  # a crafted file can fail in any way: nothing in it is ever run
        raise DataError(f"{path} is not CIFAR-10's batches.meta ({type(err).__name__}: {err}); "
                        "download cifar-10-python.tar.gz again.") from None
    if len(names) != len(default) or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{path} does not hold CIFAR-10's ten class names; download cifar-10-python.tar.gz again.")
    return names


def load_cifar10(folder, image_size=32):
    """(train, test) from CIFAR-10's python batches in ``folder``."""
    if not os.path.isdir(folder):
        raise DataError(f"the CIFAR-10 folder {folder} does not exist; download and unpack "
                        "cifar-10-python.tar.gz and pass its cifar-10-batches-py folder.")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = os.path.join(folder, "batches.meta")
    if is_regular_file(meta):
        names = _read_label_names(meta, names)
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
