"""Before the first step, the ranks agree: the same run on every rank, and rank 0's weights.

Data parallelism is only correct if every rank trains the same run: the same settings (a rank
with another learning rate or seed trains another model, silently), the same data (a rank whose
copy lacks one image normalizes differently and splits batches differently), the same model and
the same checkpoint to resume from. So, as PyTorch DDP and Horovod do, the ranks compare what
shapes the run in one collective before anything is trained (:func:`agree`), and every rank
then starts from rank 0's weights and buffers (:func:`broadcast_model`).
"""
import hashlib

import numpy as np

from ..backend import get_array_module, to_device, to_host
from .world import RanksOutOfStep


def file_digest(path, chunk=1 << 24):
    """A short digest of a file's bytes (a checkpoint's identity), read in chunks of 16 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()[:16]


def agree(world, settings):
    """Compare ``settings`` (``{what: value}``, plain values; the same names on every rank) across the ranks
    of ``world`` in one collective; :class:`~tinyvgg.training.world.RanksOutOfStep` on every rank, with one
    sentence naming each setting that differs and which ranks hold which value, if any differs."""
    every = world.gather_json(settings)                              # a list of dicts, by rank
    differ = [name for name in sorted(set().union(*every))
              if any(repr(rank.get(name)) != repr(every[0].get(name)) for rank in every)]
    if differ:
        raise RanksOutOfStep("the ranks disagree on " + "; ".join(_who_has_what(name, every) for name in differ)
                             + ". Start every rank with the same settings, the same data and the same checkpoint.")


def _who_has_what(name, every):
    """``"--lr (0.02 on ranks 0, 2; 0.05 on rank 1)"``; for a dict (a data set's fingerprint), the number of
    images on each rank and the entries that differ."""
    values = [rank.get(name) for rank in every]
    if all(isinstance(v, dict) for v in values):
        keys = sorted(k for k in set().union(*values) if len({repr(v.get(k)) for v in values}) > 1)
        counts = _groups([f"{v.get('images')} images" for v in values])
        return f"{name} ({counts}: its {', '.join(keys)} differ)"
    return name + " (" + _groups(values) + ")"


def _groups(values):
    """``"0.02 on ranks 0, 2; 0.05 on rank 1"``: the ranks that hold each value."""
    groups = {}
    for rank, value in enumerate(values):
        groups.setdefault(value if isinstance(value, str) else repr(value), []).append(rank)
    return "; ".join(f"{text} on {'rank' if len(ranks) == 1 else 'ranks'} {', '.join(map(str, ranks))}"
                     for text, ranks in groups.items())


def broadcast_model(world, model):
    """Set every rank's parameters and buffers to rank 0's, in place (the optimizer keeps its references).
    One broadcast of all of them packed into one host buffer."""
    if world.size == 1:
        return model
    arrays = list(model.named_params().values()) + list(model.named_buffers().values())
    flat = np.concatenate([to_host(a).ravel() for a in arrays])   # (P,), their common dtype
    world.broadcast(flat)
    offset = 0
    for a in arrays:
        backend = "numpy" if get_array_module(a) is np else "cupy"
        a[...] = to_device(flat[offset:offset + a.size].reshape(a.shape).astype(a.dtype), backend)  # (size,) -> shape
        offset += a.size
    return model
