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
    """The memory this process can still take (``MemAvailable`` on Linux, else the physical memory), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def vgg_sizes(config):
    """(parameters, activation values per image) of the VGG that ``config`` describes (as build_model reads it)."""
    H, W, C = (int(v) for v in config["input_shape"])
    width = float(config.get("width", 1.0))
    params, activations, columns = 0, 0, 0
    for repeats, base in zip(VGG_REPEATS[config.get("depth", "vgg16")], BLOCK_CHANNELS):
        out = max(1, round(base * width))
        for _ in range(repeats):
            params += 9 * C * out + out
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
        raise OutOfMemory(f"{what} would need about {needed / 2**30:.1f} GiB of memory, but this machine has "
                          f"{free / 2**30:.1f} GiB available; {fix}")


def check_training(config, batch_size):
    """Refuse a training run whose model and one batch cannot fit in memory (see the module docstring)."""
    params, per_image = vgg_sizes(config)
    needed = (4 * params + 2 * batch_size * per_image) * FLOAT32  # activations and their gradients
    require(needed, f"training this network ({params:,} parameters) with batches of {batch_size}",
            "lower --width, --fc-units, --image-size or --batch-size.")


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
