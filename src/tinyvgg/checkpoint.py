"""Checkpoints: one ``.npz`` file with everything needed to predict or resume.

Inside the file (a zip of NumPy arrays, read with ``allow_pickle=False`` so
that loading never runs code from the file):

- ``params/<name>``: every weight, e.g. ``params/block1_conv1.W``;
- ``buffers/<name>``: state that is not trained, e.g. ``buffers/block1_bn1.running_mean``;
- ``optimizer/<slot>/<name>``: momentum or Adam buffers, keyed the same way;
- ``meta``: one JSON string: the model configuration, class names,
  normalization statistics, epoch, RNG state, optimizer settings, history.

Files are written atomically: to a temporary file in the same folder, then
renamed over the old one, so a crash or Ctrl-C mid-write never leaves a
half-written checkpoint behind.
"""
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from . import memory
from .backend import to_host
from .errors import CheckpointError, TinyVGGError

FORMAT = "tinyvgg-checkpoint"
VERSION = 1
#: A member that expands more than this many times is refused before it is read: NumPy's float32
#: weights hardly compress (about 1.1x), while a zip bomb of zeros expands about 1000x.
MAX_EXPANSION = 100
#: Members below this size are never refused for their expansion (a buffer of ones compresses well); the
#: members' sum is held to MAX_EXPANSION too, so many small ones do not add up to a bomb.
SMALL_MEMBER = 2**20
#: The most arrays a checkpoint may hold: VGG19-BN's weights, buffers and two optimizer slots are about 300.
MAX_MEMBERS = 10000


#: The smallest standard deviation of a normalization: pixels in [0, 1] that vary by less are a blank image,
#: and dividing by 1e-38 turns every input into infinities.
MIN_STD = 1e-4


class SaveError(TinyVGGError, OSError):
    """A file could not be written (a full disk, a read-only folder); the old file, if any, is untouched."""


class Checkpoint:
    """A loaded checkpoint: ``params``, ``buffers`` and ``optimizer`` (dicts of NumPy arrays) and ``meta``."""

    def __init__(self, params, optimizer, meta, path=None, buffers=None):
        self.params, self.optimizer, self.meta, self.path = params, optimizer, meta, path
        self.buffers = dict(buffers or {})

    def normalization(self):
        """(mean, std), float32 per channel: how the training images were normalized."""
        stats = self.meta.get("normalization")
        try:
            mean, std = (np.asarray(stats[k], dtype=np.float32) for k in ("mean", "std"))
            valid = mean.shape == std.shape == (3,) and np.isfinite(mean).all() and np.isfinite(std).all() \
                and (std >= MIN_STD).all()
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            raise CheckpointError(f"{self.path or 'the checkpoint'} has no valid normalization statistics "
                                  f"(three finite means and three standard deviations of at least {MIN_STD:g}); was "
                                  "it written by tinyvgg?")
        return mean, std

    def class_names(self, count=None):
        """The class names (a list of strings; ``count`` of them if given, one per output)."""
        names = self.meta.get("class_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
                or (count is not None and len(names) != count):
            raise CheckpointError(f"{self.path or 'the checkpoint'} does not name its classes"
                                  + (f" (one name for each of its {count} outputs)" if count is not None else "")
                                  + "; was it written by tinyvgg?")
        return names

    def load_into(self, model):
        """Copy the weights (and buffers) into ``model``; a clear error if it is another configuration."""
        try:
            model.load_params(self.params, self.buffers)
        except ValueError as err:
            raise CheckpointError(f"{self.path or 'the checkpoint'} does not fit this model: {err}") from None


def _ordinary_file_mode():
    """The mode ``open(path, "w")`` would give a new file: 0o666 less the process's umask (0o644 usually)."""
    umask = os.umask(0o022)  # the only way to read the umask is to set it; put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A :class:`SaveError` (one sentence) when the folder cannot take the file: a full disk, a
    file size limit, a folder made read-only; the old ``path``, if any, is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    except OSError as err:
        raise _save_error(path, err) from None
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes the file private (0600); give it an ordinary file's mode
            os.fchmod(fd, _ordinary_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            if os.path.exists(tmp):
                os.remove(tmp)
        except OSError:
            pass  # a folder made read-only: the run folder's next lock removes it (run_folder.py)
        if isinstance(err, OSError) and not isinstance(err, TinyVGGError):
            raise _save_error(path, err) from None
        raise


def _save_error(path, err):
    return SaveError(f"cannot write {path} ({err.strerror or err}); the previous version, if any, is untouched: "
                     "free some disk space or make the folder writable, then run again.")


def save(path, params, meta, optimizer=None, buffers=None):
    """Write a checkpoint: ``params``, ``buffers`` and ``optimizer`` dicts of arrays (any backend), ``meta``
    JSON-able."""
    arrays = {f"params/{k}": to_host(v) for k, v in params.items()}
    arrays.update({f"buffers/{k}": to_host(v) for k, v in (buffers or {}).items()})
    arrays.update({f"optimizer/{k}": to_host(v) for k, v in (optimizer or {}).items()})
    meta = dict(meta, format=FORMAT, version=VERSION)
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_npz(path, max_bytes=None, max_members=None):
    """``{name: array}`` of an .npz file, every header checked before any array is allocated.

    ``np.load`` trusts each array's header: a crafted file that claims a 36 TiB array
    makes it try to allocate one. Here each member must be a plain ``.npy`` array (no
    objects: nothing is unpickled) whose header's size matches the bytes it holds, and
    ``max_bytes`` (if given) caps their sum. A member that would expand more than
    MAX_EXPANSION times (a zip bomb: megabytes that decompress to gigabytes) is refused from
    the sizes the zip directory declares, before anything is decompressed; so is a file of more than
    ``max_members`` arrays (if given). ``path``: a file name or an open binary file. Raises ValueError
    (or a zip error) otherwise.
    """
    arrays, total = {}, 0
    with zipfile.ZipFile(path) as archive:  # a path or an open file
        members = archive.infolist()
        if max_members is not None and len(members) > max_members:
            raise ValueError(f"it holds {len(members):,} arrays, more than the {max_members:,} expected")
        declared = sum(info.file_size for info in members)
        if max_bytes is not None and declared > max_bytes:
            raise ValueError(f"its arrays would take {declared:,} bytes, more than the {max_bytes:,} available")
        packed = sum(info.compress_size for info in members)
        if declared > SMALL_MEMBER and declared > MAX_EXPANSION * max(packed, 1):  # many small members, one bomb
            raise ValueError(f"its {len(members):,} arrays would expand from {packed:,} to {declared:,} bytes in all, "
                             "which no checkpoint does (a zip bomb?)")
        for info in members:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"{info.filename} is not an array")
            if info.file_size > SMALL_MEMBER and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
                raise ValueError(f"{info.filename} would expand from {info.compress_size:,} to {info.file_size:,} "
                                 "bytes, which no checkpoint does (a zip bomb?)")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
                if dtype.hasobject:
                    raise ValueError(f"{info.filename} holds Python objects, which are never unpickled")
                claimed = math.prod(shape) * dtype.itemsize  # Python's integers: no overflow, however large
                if claimed != info.file_size - f.tell():
                    raise ValueError(f"{info.filename} claims {claimed:,} bytes of data but holds "
                                     f"{info.file_size - f.tell():,}")
            total += claimed
            if max_bytes is not None and total > max_bytes:
                raise ValueError(f"the arrays take more than {max_bytes:,} bytes")
        for info in members:
            with archive.open(info) as f:
                arrays[info.filename[:-len(".npy")]] = np.lib.format.read_array(f, allow_pickle=False)
    return arrays


def load(path):
    """Read a checkpoint written by :func:`save`; one clear error for a missing, truncated, crafted or
    foreign file (nothing in it is ever run or unpickled)."""
    if not os.path.exists(path):
        raise CheckpointError(f"the checkpoint {path} does not exist; pass the path of a .npz written by tinyvgg.")
    if not os.path.isfile(path):
        raise CheckpointError(f"the checkpoint {path} is not a regular file; pass the path of a .npz written by "
                              "tinyvgg.")
    try:
        arrays = read_npz(path, max_bytes=memory.available_bytes(), max_members=MAX_MEMBERS)
        if "meta" not in arrays:
            raise CheckpointError(f"{path} is an .npz file but not a tinyvgg checkpoint.")
        meta = json.loads(str(arrays.pop("meta")))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MemoryError, OverflowError,
            NotImplementedError, RuntimeError) as err:  # also a zip's unknown compression, or encryption
        raise CheckpointError(f"{path} is not a readable tinyvgg checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an .npz file but not a tinyvgg checkpoint.")
    sections = {section: {k[len(section) + 1:]: v for k, v in arrays.items() if k.startswith(section + "/")}
                for section in ("params", "optimizer", "buffers")}
    return Checkpoint(sections["params"], sections["optimizer"], meta, path, sections["buffers"])


def load_model(path, backend="numpy", kernels=None):
    """(model, checkpoint): the model a checkpoint describes, with its weights, on ``backend``, built of
    ``kernels`` (:func:`~tinyvgg.models.vgg`'s; None: the reference layers)."""
    from .models import build_model
    ckpt = load(path)
    config = ckpt.meta.get("model_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has no model configuration; was it written by an older tool?")
    problem = memory.config_problem(config)
    if problem:
        raise CheckpointError(f"{path} describes a model tinyvgg cannot build: {problem}; was it written by tinyvgg?")
    odd = [name for name, value in {**ckpt.params, **ckpt.buffers}.items() if value.dtype.kind != "f"]
    if odd:
        kind = ckpt.params.get(odd[0], ckpt.buffers.get(odd[0])).dtype
        raise CheckpointError(f"{path} holds {kind} weights ({', '.join(odd[:3])}); a tinyvgg model's weights are "
                              "real floating-point numbers.")
    try:
        memory.check_inference(config, path)
        expected, held = memory.vgg_sizes(config)[0], sum(int(v.size) for v in ckpt.params.values())
        if held != expected:  # compared before the model is built: a small file cannot make it allocate a large one
            raise CheckpointError(f"{path} holds {held:,} weights, but its configuration describes a model of "
                                  f"{expected:,}; it is damaged, or its configuration was edited.")
        no_draw = dict(init="zeros", head_init="zeros", logits_init="zeros", first_conv_init="zeros")
        model = build_model(dict(config, **no_draw), kernels=kernels)  # the weights are overwritten at once
        model.config = dict(model.config, init=config.get("init", "he_normal"))
        for key in ("head_init", "logits_init", "first_conv_init"):  # the configuration as saved
            if key in config:
                model.config[key] = config[key]
            else:
                model.config.pop(key, None)
    except TinyVGGError:
        raise
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise CheckpointError(f"{path} describes a model tinyvgg cannot build: {err}") from None
    ckpt.load_into(model)
    return model.to(backend), ckpt


def load_classifier(path, backend="numpy", kernels=None):
    """(model, checkpoint, class names, (mean, std)) for predicting: a model with its dense top, one
    class name per output, and the normalization its inputs need; a clear error for anything else."""
    model, ckpt = load_model(path, backend, kernels)
    bad = [name for name, value in ckpt.params.items()
           if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}"
                              f"{'...' if len(bad) > 3 else ''}): the run that wrote it diverged; use an earlier "
                              "best.npz, or train again with a lower --lr.")
    for name, value in ckpt.buffers.items():
        if not np.isfinite(value).all() or name.endswith("running_var") and (value < 0).any():
            raise CheckpointError(f"{path} holds batch-norm statistics that no training gives ({name}: NaN, "
                                  "infinite, or a negative variance); use another checkpoint.")
    if not model.config.get("include_top", True):
        raise CheckpointError(f"{path} holds a convolutional base without the dense top (include_top=False): it "
                              "makes features, not class scores; fine-tune a head on it first with --finetune.")
    return model, ckpt, ckpt.class_names(model.config["num_classes"]), ckpt.normalization()
