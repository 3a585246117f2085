"""A data set's fingerprint: what must be equal for two copies of it to train the same run.

Two ranks on two machines, or a run resumed after its data folder moved, must see the same
images with the same labels. Comparing the images themselves would mean reading them all
again; the fingerprint compares what identifies them: the class names, the labels in order,
the files (their names below the data folder, and their sizes) where the set comes from a
folder, and the per-channel pixel statistics, which any changed image moves.
"""
import hashlib
import os

import numpy as np


def _files_of(dataset):
    """The ``(name below the root, size in bytes)`` of every image of ``dataset`` in order, or None for a set
    held in memory (a built-in set, CIFAR-10), which the labels and statistics identify."""
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):      # a Subset: its members, in its order
        files = _files_of(dataset.dataset)
        return None if files is None else [files[i] for i in dataset.indices]
    if not hasattr(dataset, "files"):
        return None
    out = []
    for path in dataset.files:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = -1
        out.append((os.path.relpath(path, dataset.root), size))
    return out


def digest(data):
    """A short hex digest of bytes or of a JSON-able list."""
    if not isinstance(data, (bytes, bytearray)):
        data = repr(data).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(dataset):
    """A dict of plain values that identifies ``dataset``: ``images``, ``classes``, ``labels`` (a digest of
    the labels in order), ``files`` (a digest of the file names and sizes, or None), ``mean`` and ``std``
    (per channel, rounded to 6 digits: the same images give the same numbers on any machine)."""
    mean, std = dataset.channel_stats()
    files = _files_of(dataset)
    return {"images": len(dataset), "classes": list(dataset.class_names),
            "labels": digest(np.asarray(dataset.labels, dtype=np.int64).tobytes()),
            "files": None if files is None else digest(files),
            "mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std]}
