"""``python -m tinyvgg.predict IMAGE... --checkpoint PATH``: the top classes of each image.

Uses the class names and normalization statistics stored in the checkpoint::

    $ python -m tinyvgg.predict cat.jpg dog.png --checkpoint runs/vgg16-.../best.npz --top-k 3
    cat.jpg: cat 0.912, dog 0.071, fox 0.009
"""
import argparse
import os
import sys

import numpy as np

from . import backend, cli
from .backend import to_device, to_host
from .checkpoint import load_classifier
from .data import decode_image, is_regular_file
from .layers import softmax


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.predict", description=cli.summary(__doc__),
                                formatter_class=cli.HelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, GIF, WebP)")
    p.add_argument("--checkpoint", required=True, help="a best.npz or last.npz written by tinyvgg.train")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to print per image")
    p.add_argument("--backend", choices=backend.BACKENDS, default="numpy", help="where to compute")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.top_k < 1:
        raise cli.UsageError(f"--top-k must be at least 1, got {args.top_k}.")
    backend.require(args.backend)
    model, _, names, (mean, std) = load_classifier(args.checkpoint, args.backend)
    size = model.input_shape[0]
    failed = 0
    for path in args.images:
        if not is_regular_file(path):
            reason = "it does not exist" if not os.path.lexists(path) else "it is not a regular file"
            print(f"error: cannot read {path} ({reason}); skipping it.", file=sys.stderr)
            failed += 1
            continue
        try:
            image = decode_image(path, size)
        except Exception as err:
            print(f"error: cannot read {path} ({type(err).__name__}: {err}); skipping it.", file=sys.stderr)
            failed += 1
            continue
        x = (image[None].astype(np.float32) / 255 - mean) / std            # (1, H, W, 3)
        probs = softmax(to_host(model.forward(to_device(x, args.backend))))[0]
        top = np.argsort(probs)[::-1][:args.top_k]
        print(f"{path}: " + ", ".join(f"{names[k]} {probs[k]:.3f}" for k in top))
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main)
