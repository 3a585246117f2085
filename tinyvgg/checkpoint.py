"""Checkpoints: one ``.npz`` file with everything needed to predict or resume.

Inside the file (a zip of NumPy arrays, read with ``allow_pickle=False`` so
that loading never runs code from the file):

- ``params/<name>``: every weight, e.g. ``params/block1_conv1.W``;
- ``optimizer/<slot>/<name>``: momentum or Adam buffers, keyed the same way;
- ``meta``: one JSON string: the model configuration, class names,
  normalization statistics, epoch, RNG state, optimizer settings, history.

Files are written atomically: to a temporary file in the same folder, then
renamed over the old one, so a crash or Ctrl-C mid-write never leaves a
half-written checkpoint behind.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from .backend import to_host

FORMAT = "tinyvgg-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit; the message says which and why."""


class Checkpoint:
    """A loaded checkpoint: ``params`` and ``optimizer`` (dicts of NumPy arrays) and ``meta``."""

    def __init__(self, params, optimizer, meta, path=None):
        self.params, self.optimizer, self.meta, self.path = params, optimizer, meta, path

    def normalization(self):
        """(mean, std), float32 per channel: how the training images were normalized."""
        if "normalization" not in self.meta:
            raise CheckpointError(f"{self.path or 'the checkpoint'} has no normalization statistics.")
        return tuple(np.asarray(self.meta["normalization"][k], dtype=np.float32) for k in ("mean", "std"))

    def load_into(self, model):
        """Copy the weights into ``model``; a clear error if it is another configuration."""
        try:
            model.load_params(self.params)
        except ValueError as err:
            raise CheckpointError(f"{self.path or 'the checkpoint'} does not fit this model: {err}") from None


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save(path, params, meta, optimizer=None):
    """Write a checkpoint: ``params`` and ``optimizer`` dicts of arrays (any backend), ``meta`` JSON-able."""
    arrays = {f"params/{k}": to_host(v) for k, v in params.items()}
    arrays.update({f"optimizer/{k}": to_host(v) for k, v in (optimizer or {}).items()})
    meta = dict(meta, format=FORMAT, version=VERSION)
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path):
    """Read a checkpoint written by :func:`save`; one clear error for a missing, truncated or foreign file."""
    if not os.path.exists(path):
        raise CheckpointError(f"the checkpoint {path} does not exist; pass the path of a .npz written by tinyvgg.")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "meta" not in f.files:
                raise CheckpointError(f"{path} is an .npz file but not a tinyvgg checkpoint.")
            meta = json.loads(str(f["meta"]))
            params = {k[len("params/"):]: f[k] for k in f.files if k.startswith("params/")}
            optimizer = {k[len("optimizer/"):]: f[k] for k in f.files if k.startswith("optimizer/")}
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is not a readable tinyvgg checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an .npz file but not a tinyvgg checkpoint.")
    return Checkpoint(params, optimizer, meta, path)


def load_model(path, backend="numpy"):
    """(model, checkpoint): the model a checkpoint describes, with its weights, on ``backend``."""
    from .models import build_model
    ckpt = load(path)
    if "model_config" not in ckpt.meta:
        raise CheckpointError(f"{path} has no model configuration; was it written by an older tool?")
    try:
        model = build_model(ckpt.meta["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} describes a model tinyvgg cannot build: {err}") from None
    ckpt.load_into(model)
    return model.to(backend), ckpt
