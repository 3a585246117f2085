"""VGG weights from the PyTorch world: safetensors files in torchvision's or timm's layout.

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON header naming every
tensor with its dtype, shape and byte range, then the raw bytes: nothing in it is executed
(unlike PyTorch's ``.pth``, a pickle). :func:`read_safetensors` checks the header against the
file before the ``safetensors`` package's NumPy API reads a byte of data.

The two layouts of the same network:

- torchvision (``vgg16``, ``vgg16_bn``...): ``features.N.weight`` / ``.bias`` for each convolution
  (``(O, I, 3, 3)``, OIHW) and, with batch norm, ``features.N.weight / bias / running_mean /
  running_var`` for each ``BatchNorm2d`` right after it; then ``classifier.0`` (``(4096, 512*7*7)``),
  ``classifier.3`` (``(4096, 4096)``) and ``classifier.6`` (``(classes, 4096)``), each
  ``(out, in)``.
- timm (``vgg16.tv_in1k``...): the same ``features.N``; ``pre_logits.fc1`` as a 7x7 convolution
  ``(4096, 512, 7, 7)``, ``pre_logits.fc2`` as a 1x1 convolution, ``head.fc`` ``(classes, 4096)``.

What changes on the way into tinyvgg (NHWC activations, HWIO kernels, ``(in, out)`` dense weights):

- a convolution kernel: OIHW -> HWIO, ``W.transpose(2, 3, 1, 0)``;
- the first dense layer: PyTorch flattens the last feature map ``(N, C, 7, 7)`` as C, H, W; tinyvgg
  flattens ``(N, 7, 7, C)`` as H, W, C. So its ``(out, C*7*7)`` weight is seen as ``(out, C, 7, 7)``
  (timm stores it so), put in HWIO order ``(7, 7, C, out)`` and flattened to ``(7*7*C, out)``: row
  ``(h*7 + w)*C + c`` of tinyvgg's weight is column ``c*49 + h*7 + w`` of PyTorch's;
- the other dense layers: ``(out, in)`` -> ``(in, out)``;
- batch norm: ``weight``, ``bias`` -> ``gamma``, ``beta``; the running statistics as they are (PyTorch's
  ``running_var`` is the unbiased variance, as tinyvgg's; both use eps = 1e-5).

torchvision's weights expect RGB in [0, 1] normalized by ImageNet's mean and std
(:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`); the checkpoint stores them as its normalization.
"""
import json
import os
import re
import struct

import numpy as np

from . import memory
from .errors import UsageError
from .models import BLOCK_CHANNELS, VGG_CONFIGS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The largest header and file tinyvgg reads: VGG19-BN at full width is 575 MB of float32.
MAX_HEADER_BYTES = 2**24
MAX_FILE_BYTES = 2**31
MAX_TENSORS = 1000
#: safetensors' dtype names that NumPy reads, and their sizes in bytes.
FLOAT_DTYPES = {"F16": 2, "F32": 4, "F64": 8}
SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
         "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
FEATURE = re.compile(r"^features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
TORCHVISION_HEAD = ("classifier.0", "classifier.3", "classifier.6")
TIMM_HEAD = ("pre_logits.fc1", "pre_logits.fc2", "head.fc")


def _bad(path, what):
    return UsageError(f"{path} is not a readable safetensors file: {what}.")


def read_header(path):
    """The JSON header of a safetensors file, checked against the file's size: every tensor's dtype known,
    its byte range inside the file and as long as its shape says, the ranges back to back."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            start = f.read(8)
            if len(start) < 8:
                raise _bad(path, f"it has {len(start)} bytes, fewer than the 8 of a header length")
            (length,) = struct.unpack("<Q", start)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise _bad(path, f"its header claims {length:,} bytes, more than the file or any VGG has "
                                 "(truncated, or not a safetensors file)")
            header = json.loads(f.read(length).decode("utf-8"))
    except UsageError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # ValueError: also JSON's 5,000-digit numbers
        raise _bad(path, f"its header is not JSON ({type(err).__name__})") from None
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}.") from None
    if size > MAX_FILE_BYTES:
        raise _bad(path, f"it has {size:,} bytes, more than any VGG's weights")
    if not isinstance(header, dict) or len(header) > MAX_TENSORS + 1:
        raise _bad(path, "its header is not a table of at most 1,000 tensors")
    data = size - 8 - length
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], [int(n) for n in entry["shape"]], entry["data_offsets"]
            count = int(np.prod(shape, dtype=np.float64)) if shape else 1
            ok = dtype in SIZES and all(n >= 0 for n in shape) and isinstance(begin, int) and isinstance(end, int) \
                and 0 <= begin <= end <= data and end - begin == count * SIZES[dtype]
        except (TypeError, KeyError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise _bad(path, f"the header's entry for {name!r} does not match the bytes the file holds "
                             "(a header that lies about sizes, or a truncated file)")
        spans.append((begin, end))
    if spans and sum(end - begin for begin, end in spans) != data:
        raise _bad(path, f"its tensors cover {sum(e - b for b, e in spans):,} of its {data:,} data bytes")
    return header


def read_safetensors(path):
    """``{name: float32 array}`` of a safetensors file, read with the ``safetensors`` package's NumPy API
    after :func:`read_header` has checked every size; one sentence for anything else."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise UsageError('reading .safetensors files needs the safetensors package: pip install -e ".[interop]"') \
            from None
    header = read_header(path)
    odd = sorted({entry["dtype"] for name, entry in header.items() if name != "__metadata__"
                  and not name.endswith("num_batches_tracked")} - set(FLOAT_DTYPES))
    if odd:
        fix = " (bfloat16: convert it to float32 first, e.g. with PyTorch)" if "BF16" in odd else ""
        raise UsageError(f"{path} stores tensors as {', '.join(odd)}; tinyvgg reads float16, float32 and float64 "
                         f"weights{fix}.")
    data = sum(entry["data_offsets"][1] - entry["data_offsets"][0] for name, entry in header.items()
               if name != "__metadata__")
    memory.require(3 * data, f"reading {path} (the file, its float32 copy and the model built from it)",
                   "use a machine with more memory.")
    tensors = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():
                if not name.endswith("num_batches_tracked"):
                    with np.errstate(over="ignore"):                    # a float64 of 1e300: refused below
                        tensors[name] = f.get_tensor(name).astype(np.float32)
    except Exception as err:  # the package's own checks (SafetensorError) and anything a damaged file causes
        raise _bad(path, f"{type(err).__name__}: {err}") from None
    bad = [name for name, value in tensors.items() if not np.isfinite(value).all()
           or name.endswith("running_var") and (value < 0).any()]
    if bad:
        raise UsageError(f"{path} holds weights no training gives ({', '.join(bad[:3])}: NaN, infinite, or a "
                         "negative variance); use another file.")
    return tensors


def recognise(tensors, path):
    """``(layout, depth, batch_norm)`` of a state dict: "torchvision" or "timm", "vgg11" ... "vgg19", and
    whether batch norm follows every convolution; one sentence naming what was expected otherwise."""
    heads = {layout: all(f"{prefix}.weight" in tensors for prefix in names)
             for layout, names in (("torchvision", TORCHVISION_HEAD), ("timm", TIMM_HEAD))}
    layout = next((name for name, found in heads.items() if found), None)
    indices = sorted({int(m.group(1)) for m in map(FEATURE.match, tensors) if m})
    convs = [i for i in indices if tensors.get(f"features.{i}.weight", np.empty(0)).ndim == 4]
    depth = next((d for d, repeats in VGG_CONFIGS.items() if sum(repeats) == len(convs)), None)
    if layout is None or depth is None:
        names = ", ".join(sorted(tensors)[:6])
        raise UsageError(f"{path} holds no VGG in torchvision's layout (features.N.weight and classifier.0, .3, .6) "
                         f"or timm's (features.N.weight, pre_logits.fc1, pre_logits.fc2, head.fc): it has "
                         f"{len(convs)} convolutions in features.N, and names such as {names}.")
    batch_norm = any(f"features.{i}.running_mean" in tensors for i in indices)
    return layout, depth, batch_norm


def to_tinyvgg(tensors, path):
    """``(params, buffers, config, layout)``: the tensors of a torchvision- or timm-layout VGG as a tinyvgg VGG
    at 224x224 (PyTorch's 7x7 last feature map), named as :func:`~tinyvgg.models.vgg` names its layers. One
    sentence for a file that has the layout's names but not a whole VGG in them."""
    layout = recognise(tensors, path)[0]
    try:
        params, buffers, config = _convert(tensors, path)
    except KeyError as err:
        raise UsageError(f"{path} looks like a VGG in {layout}'s layout but has no tensor {err}; it is incomplete "
                         "or another network.") from None
    except (IndexError, ValueError) as err:
        raise UsageError(f"{path} looks like a VGG in {layout}'s layout but its tensors do not fit one ({err}).") \
            from None
    problem = memory.config_problem(config)
    if problem:
        raise UsageError(f"{path} does not describe a VGG tinyvgg can build: {problem}.")
    return params, buffers, config, layout


def _convert(tensors, path):
    layout, depth, batch_norm = recognise(tensors, path)
    indices = sorted({int(m.group(1)) for m in map(FEATURE.match, tensors) if m})
    convs = [i for i in indices if tensors[f"features.{i}.weight"].ndim == 4]
    norms = [i for i in indices if f"features.{i}.running_mean" in tensors]
    if batch_norm and len(norms) != len(convs):
        raise UsageError(f"{path} has {len(convs)} convolutions but {len(norms)} batch norms; a VGG-BN has one "
                         "after each convolution.")
    names = [(block, k) for block, repeats in enumerate(VGG_CONFIGS[depth], start=1) for k in range(1, repeats + 1)]
    params, buffers = {}, {}
    for n, ((block, k), index) in enumerate(zip(names, convs)):
        W = tensors[f"features.{index}.weight"]                             # (O, I, 3, 3)
        params[f"block{block}_conv{k}.W"] = W.transpose(2, 3, 1, 0).copy()  # OIHW -> HWIO (3, 3, I, O)
        params[f"block{block}_conv{k}.b"] = tensors[f"features.{index}.bias"]
        if batch_norm:
            bn = f"features.{norms[n]}"
            params[f"block{block}_bn{k}.gamma"], params[f"block{block}_bn{k}.beta"] = \
                tensors[f"{bn}.weight"], tensors[f"{bn}.bias"]
            buffers[f"block{block}_bn{k}.running_mean"] = tensors[f"{bn}.running_mean"]
            buffers[f"block{block}_bn{k}.running_var"] = tensors[f"{bn}.running_var"]
    fc1, fc2, logits = TORCHVISION_HEAD if layout == "torchvision" else TIMM_HEAD
    units, channels = tensors[f"{fc1}.weight"].shape[0], tensors[f"features.{convs[-1]}.weight"].shape[0]
    W1 = tensors[f"{fc1}.weight"]
    if W1.size != units * channels * 49:
        raise UsageError(f"{path}: {fc1}.weight has shape {W1.shape}; after {channels} channels of 7x7 it needs "
                         f"{channels * 49} inputs per unit.")
    W1 = W1.reshape(units, channels, 7, 7)                                  # (out, C*7*7) -> (out, C, H, W)
    params["fc1.W"] = W1.transpose(2, 3, 1, 0).reshape(49 * channels, units).copy()  # (H, W, C, out) -> (H*W*C, out)
    params["fc1.b"] = tensors[f"{fc1}.bias"]
    params["fc2.W"] = tensors[f"{fc2}.weight"].reshape(units, -1).T.copy()  # (out, in[, 1, 1]) -> (in, out)
    params["fc2.b"] = tensors[f"{fc2}.bias"]
    params["predictions.W"] = tensors[f"{logits}.weight"].T.copy()          # (classes, in) -> (in, classes)
    params["predictions.b"] = tensors[f"{logits}.bias"]
    width = tensors[f"features.{convs[0]}.weight"].shape[0] / BLOCK_CHANNELS[0]
    config = dict(depth=depth, num_classes=int(params["predictions.b"].shape[0]), input_shape=(224, 224, 3),
                  width=width, fc_units=int(units), dropout=0.5, include_top=True, init="zeros",
                  batch_norm=batch_norm)
    return params, buffers, config
