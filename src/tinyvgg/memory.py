"""Memory estimates, made before anything large is allocated.

A mistyped flag (``--fc-units 40000``) or a crafted file (a checkpoint whose
configuration says 8192x8192 images) should be refused with the number it would
need, not found out by a ``MemoryError`` minutes later or by the system killing
the process. The estimates count float32 values:

- a VGG's parameters: 3*3*C_in*C_out + C_out per convolution, in*out + out per dense layer;
- its activations for one image: each convolution's output H*W*C_out, kept for backward,
  and the im2col columns of the largest layer, H*W*9*C_in (the fast kernels chunk these, so
  this over-counts a little).

Training holds the parameters four times (weights, gradients, momentum or Adam's two
slots); predicting once.
"""
import math
import os

from .errors import UsageError

FLOAT32 = 4
#: The largest image side any tool accepts: VGG16 at 1024x1024 needs about 2 GB of activations per image.
MAX_IMAGE_SIZE = 1024
#: The VGG depths and channel counts (as tinyvgg.models; repeated here so that this module imports nothing heavy).
VGG_REPEATS = {"vgg11": (1, 1, 2, 2, 2), "vgg13": (2, 2, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
BLOCK_CHANNELS = (64, 128, 256, 512, 512)


class OutOfMemory(UsageError):
    """What was asked for cannot fit in this machine's memory; the message says how much it needs."""


def available_bytes():
    """The memory this process can still take: ``MemAvailable`` on Linux (else the physical memory), and no more
    than what its address-space limit (``ulimit -v``, ``RLIMIT_AS``) leaves above what it already maps; or None."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    limit = _address_space_left()
    return limit if free is None else free if limit is None else min(free, limit)


def _address_space_left():
    """Bytes of address space left under ``RLIMIT_AS`` (None without a limit): the limit less what is mapped."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        return max(0, soft - mapped)
    except (ImportError, OSError, ValueError, AttributeError):
        return None


#: The largest width, dense layer and class count a configuration may describe (the memory check judges the
#: rest: these only keep a crafted number from overflowing the estimate).
MAX_WIDTH, MAX_FC_UNITS, MAX_CLASSES = 4.0, 2**24, 2**20


def finite_number(value):
    """Whether ``value`` (read from a file: it may be anything) is an int or float, not a bool, and finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def config_problem(config):
    """None when ``config`` (a model configuration, as a checkpoint stores it) describes a VGG that tinyvgg can
    build and estimate, else what is wrong with it, in a few words (a crafted file may hold anything)."""
    if not isinstance(config, dict):
        return "its model configuration is not a table"
    if config.get("depth", "vgg16") not in VGG_REPEATS:
        return f"its depth {str(config.get('depth'))[:40]!r} is none of {', '.join(VGG_REPEATS)}"
    shape = config.get("input_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)):
        return "its input_shape is not three whole numbers"
    if not (32 <= shape[0] <= MAX_IMAGE_SIZE and 32 <= shape[1] <= MAX_IMAGE_SIZE and shape[2] == 3):
        return None  # the size is judged by check_inference, which names the limit
    width = config.get("width", 1.0)
    if not finite_number(width) or not 0 < width <= MAX_WIDTH:
        return f"its width {str(width)[:40]} is not a number above 0 and at most {MAX_WIDTH:g}"
    if not isinstance(config.get("center_images", False), bool):
        return "its center_images is neither true nor false"
    for name, value, high in (("fc_units", config.get("fc_units", 4096), MAX_FC_UNITS),
                              ("num_classes", config.get("num_classes", 1000), MAX_CLASSES)):
        if not finite_number(value) or value != int(value) or not 1 <= value <= high:
            return f"its {name} {str(value)[:40]} is not a whole number from 1 to {high}"
    return None


def vgg_sizes(config):
    """(parameters, activation values per image) of the VGG that ``config`` describes (as build_model reads it)."""
    H, W, C = (int(v) for v in config["input_shape"])
    width = float(config.get("width", 1.0))
    params, activations, columns = 0, 0, 0
    if config.get("center_images"):
        activations += H * W * C  # ImageCentering's output
    for repeats, base in zip(VGG_REPEATS[config.get("depth", "vgg16")], BLOCK_CHANNELS):
        out = max(1, round(base * width))
        for _ in range(repeats):
            params += 9 * C * out + out + (2 * out if config.get("batch_norm") else 0)  # kernel, bias, gamma, beta
            activations += H * W * out
            columns = max(columns, H * W * 9 * C)
            C = out
        H, W = H // 2, W // 2
    if config.get("include_top", True):
        fc, classes = int(config.get("fc_units", 4096)), int(config.get("num_classes", 1000))
        params += (H * W * C) * fc + fc + fc * fc + fc + fc * classes + classes
        activations += 2 * fc + classes
    return params, activations + columns


def require(needed, what, fix):
    """Raise :class:`OutOfMemory` if ``needed`` bytes exceed the memory available now."""
    free = available_bytes()
    if free is not None and needed > free:
        raise OutOfMemory(f"{what} would need about {needed / 2**30:.1f} GiB of memory, but only "
                          f"{free / 2**30:.1f} GiB is available here (free memory, within this process's limit); "
                          f"{fix}")


def check_training(config, batch_size, accumulate=1):
    """Refuse a training run whose model and one (micro-)batch cannot fit in memory (see the module docstring):
    with ``accumulate`` micro-batches a step holds the activations of ``ceil(batch_size / accumulate)`` images."""
    params, per_image = vgg_sizes(config)
    micro = -(-batch_size // max(1, accumulate))
    needed = (4 * params + 2 * micro * per_image) * FLOAT32  # activations and their gradients
    what = f"batches of {batch_size}" + (f" in micro-batches of {micro}" if micro != batch_size else "")
    require(needed, f"training this network ({params:,} parameters) with {what}",
            "lower --width, --fc-units, --image-size or --batch-size, or raise --accumulate.")


def check_inference(config, path):
    """Refuse a checkpoint whose model is larger than any tool trains, or cannot fit in memory for
    predicting one image at a time."""
    side = max(int(v) for v in config["input_shape"][:2])
    if side > MAX_IMAGE_SIZE:
        raise UsageError(f"{path} describes a model for {side}x{side} images, larger than the {MAX_IMAGE_SIZE} "
                         "that tinyvgg trains; was it written by tinyvgg?")
    params, per_image = vgg_sizes(config)
    require((params + 2 * per_image) * FLOAT32, f"the model in {path} ({params:,} parameters)",
            "use a machine with more memory.")
