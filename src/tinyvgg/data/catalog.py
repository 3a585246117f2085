"""What ``--data`` accepts: the built-in sets by name, ``cifar10:PATH``, or an image folder."""
import os

from ..errors import DataError
from .arrays import split
from .cifar10 import load_cifar10
from .folders import ImageFolder
from .glyphs import make_glyphs
from .shapes import make_shapes

#: The data sets drawn from a seed: name -> their maker, ``make(num_images, seed=, image_size=)``.
BUILT_IN = {"shapes": make_shapes, "glyphs": make_glyphs}
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


def absolute_spec(spec):
    """``spec`` with its folder or file made absolute (a built-in set's name stays as it is), so that a run
    saved with it can be resumed from any folder: ``../photos`` means nothing once the shell has moved."""
    if spec is None or spec.partition(":")[0] in BUILT_IN:
        return spec
    if spec.startswith("cifar10:"):
        return "cifar10:" + os.path.abspath(spec[len("cifar10:"):])
    return os.path.abspath(spec)


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
        make = BUILT_IN[name]
        return make(n, seed=seed, image_size=image_size), make(max(n // 6, 100), seed=seed + 1, image_size=image_size)
    if spec.startswith("cifar10:"):
        return load_cifar10(spec[len("cifar10:"):], image_size)
    train = ImageFolder(spec, image_size, progress=progress)
    if val_spec:
        return train, ImageFolder(val_spec, image_size, class_names=train.class_names, progress=progress)
    return split(train, 0.1, seed)
