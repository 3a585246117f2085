"""``python -m tinyvgg.samples shapes --out DIR``: images of a built-in data set, written as files.

Writes ``DIR/<class>/<number>.png``, a folder that ``train``, ``evaluate`` and
``predict`` read like any folder of your own images::

    python -m tinyvgg.samples glyphs --out samples --per-class 5
    python -m tinyvgg.predict samples/7/0.png --checkpoint runs/.../best.npz

The images come from a seed (``--seed``); the training run's own images are drawn
with ``--seed`` 0 (its validation images with 1), so pick another to get images the
network has never seen.
"""
import argparse
import os

import numpy as np

from . import cli, memory
from .checkpoint import atomic_write
from .data import BUILT_IN

#: The most images one call writes: a sample for trying things, not a copy of a data set.
MAX_PER_CLASS = 1000


def write_image_folder(dataset, folder, per_class):
    """Write the first ``per_class`` images of each class of ``dataset`` as ``folder/<class>/<k>.png``;
    returns the number written."""
    from PIL import Image
    written = 0
    for label, name in enumerate(dataset.class_names):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for k, index in enumerate(np.flatnonzero(dataset.labels == label)[:per_class]):
            buffer = _png(Image.fromarray(dataset.load([index])[0]))
            atomic_write(os.path.join(folder, name, f"{k}.png"), lambda f: f.write(buffer))
            written += 1
    return written


def _png(image):
    import io
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.samples", description=cli.summary(__doc__),
                                formatter_class=cli.HelpFormatter)
    p.add_argument("data", choices=sorted(BUILT_IN), help="which built-in data set")
    p.add_argument("--out", required=True, help="the folder to write (missing or empty)")
    p.add_argument("--per-class", type=int, default=10, help="images of each class")
    p.add_argument("--image-size", type=int, default=32, help="side of the images, in pixels")
    p.add_argument("--seed", type=int, default=2, help="the seed the images are drawn from")
    args = p.parse_args(argv)
    if not 1 <= args.per_class <= MAX_PER_CLASS:
        raise cli.UsageError(f"--per-class must be between 1 and {MAX_PER_CLASS}, got {args.per_class}.")
    if not 8 <= args.image_size <= 1024:
        raise cli.UsageError(f"--image-size must be between 8 and 1024, got {args.image_size}.")
    if args.seed < 0:
        raise cli.UsageError(f"--seed must be zero or positive, got {args.seed}.")
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        raise cli.UsageError(f"--out {args.out} already exists and is not an empty folder; choose another.")
    make = BUILT_IN[args.data]
    count = args.per_class * 10 + 10                                     # drawn: at least per_class of each class
    memory.require(int(1.25 * count * args.image_size ** 2 * 3),         # uint8 images, and the drawing's rows
                   f"drawing {count:,} images of {args.image_size}x{args.image_size}",
                   "ask for fewer (--per-class) or smaller (--image-size) images.")
    try:
        os.makedirs(args.out, exist_ok=True)
        dataset = make(count, seed=args.seed, image_size=args.image_size)
        count = write_image_folder(dataset, args.out, args.per_class)
    except OSError as err:
        raise cli.UsageError(f"cannot write {args.out} ({err.strerror}); choose a folder you can write.") from None
    print(f"wrote {count} {args.data} images ({args.per_class} of each of {len(dataset.class_names)} classes, "
          f"{args.image_size}x{args.image_size}) to {args.out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
