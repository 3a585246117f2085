"""``python -m tinyvgg.predict IMAGE... --checkpoint PATH``: the top classes of each image.

Takes image files, folders (every image in them, at any depth, in sorted order) and glob
patterns (``"photos/*.jpg"``, quoted so that the shell leaves them to tinyvgg). Uses the class
names and normalization statistics stored in the checkpoint; one line per image::

    $ python -m tinyvgg.predict cat.jpg photos/ --checkpoint runs/vgg16-.../best.npz --top-k 3
    cat.jpg: cat 0.912, dog 0.071, fox 0.009
    photos/a.png: dog 0.640, cat 0.300, fox 0.060

A classifier always answers with one of its own classes: a photo of something it was never
trained on still gets a class, with a probability that can be high. ``--csv FILE`` writes every
image's top classes and probabilities as a table.
"""
import argparse
import contextlib
import csv
import glob
import io
import itertools
import os
import pathlib
import sys

import numpy as np

from . import backend, checkpoint, cli
from .backend import to_device, to_host
from .cli import shown
from .data import IMAGE_EXTENSIONS, decode_image, is_regular_file
from .layers import softmax
from .models import COMMAND_KERNELS
from .threads import ThreadChooser

#: The most images one call reads from folders and patterns: a folder of a million files is a mistake.
MAX_IMAGES = 100000


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.predict", description=cli.summary(__doc__),
                                epilog="A photo is always forced into one of the model's classes, even one of "
                                       "something it never saw; a high probability does not mean it knows.",
                                formatter_class=cli.HelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (JPEG, PNG, BMP, GIF, WebP), folders of them (searched at any depth) or glob "
                        "patterns such as 'photos/*.jpg'")
    p.add_argument("--checkpoint", required=True, help="a best.npz or last.npz written by tinyvgg.train")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to print per image")
    p.add_argument("--csv", metavar="FILE", help="also write one row per image: its path, and each top class with "
                                                 "its probability")
    p.add_argument("--force", action="store_true", help="replace an existing --csv file")
    p.add_argument("--backend", choices=backend.BACKENDS, default="numpy", help="where to compute")
    p.add_argument("--threads", type=int, metavar="N",
                   help="BLAS threads (default: the count that is fastest now, measured on the first images; "
                        "the choice is said on standard error)")
    return p.parse_args(argv)


def image_paths(arguments):
    """``[(path, problem or None)]`` for the command line's files, folders and patterns: a folder gives its images
    at any depth (sorted), a pattern its matches (``**`` at any depth); neither follows a link to a folder, so a
    loop of links is walked once. A file is taken as given, and a name that is none of these, a folder without
    images or a pattern without matches comes with the reason it gives nothing. At most MAX_IMAGES in all."""
    found = []
    for argument in arguments:
        if os.path.isdir(argument):
            images, unreadable = [], []
            for folder, subfolders, files in os.walk(argument, onerror=unreadable.append):
                subfolders.sort()
                images += [os.path.join(folder, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
                if len(found) + len(images) > MAX_IMAGES:
                    break
            found += [(path, None) for path in sorted(images)] or \
                [(argument, f"cannot read the folder: {unreadable[0].strerror}" if unreadable else
                  f"no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")]
        elif os.path.lexists(argument) or not glob.has_magic(argument):
            problem = None if is_regular_file(argument) else \
                "it does not exist" if not os.path.lexists(argument) else "it is not a regular file"
            found.append((argument, problem))
        else:
            found += _matches(argument, MAX_IMAGES + 1 - len(found)) or [(argument, "no file matches this pattern")]
        if len(found) > MAX_IMAGES:
            raise cli.UsageError(f"more than {MAX_IMAGES:,} images to predict; pass fewer folders or patterns.")
    return found


def _matches(pattern, most):
    """The files ``pattern`` matches (sorted, at most ``most``), through pathlib, whose ``**`` does not follow links
    to folders (``glob.glob`` does, and a loop of links makes it enumerate paths without end)."""
    parts = pathlib.PurePath(pattern).parts
    if parts and parts[-1] == "**":
        parts += ("*",)                                # "photos/**": every file below, as glob.glob gives
    fixed = next(k for k, part in enumerate(parts) if glob.has_magic(part))
    root = pathlib.Path(*parts[:fixed]) if fixed else pathlib.Path(".")
    try:
        matches = list(itertools.islice((p for p in root.glob(str(pathlib.PurePath(*parts[fixed:])))
                                         if not p.is_dir()), most))
    except (ValueError, OSError) as err:               # "***": ** must be a whole path component
        return [(pattern, f"not a pattern tinyvgg reads: {err}")]
    return [(str(p), None if is_regular_file(p) else "it is not a regular file") for p in sorted(matches)]


def main(argv=None):
    args = parse_args(argv)
    if args.top_k < 1:
        raise cli.UsageError(f"--top-k must be at least 1, got {args.top_k}.")
    if args.threads is not None and args.threads < 1:
        raise cli.UsageError(f"--threads must be at least 1, got {args.threads}.")
    if args.csv:
        cli.output_path(args.csv, "--csv", args.force)
    paths = image_paths(args.images)
    backend.require(args.backend)
    model, _, names, (mean, std) = checkpoint.load_classifier(args.checkpoint, args.backend, COMMAND_KERNELS)
    size, top_k = model.input_shape[0], min(args.top_k, len(names))
    failed, rows = 0, []
    threads = ThreadChooser(args.threads, why="as --threads asks") if args.backend == "numpy" else None
    for path, problem in paths:
        if problem is None:
            try:
                image = decode_image(path, size)
            except Exception as err:
                problem = f"{type(err).__name__}: {err}"
        if problem is not None:
            print(f"error: cannot read {shown(path)} ({shown(problem)}); skipping it.", file=sys.stderr)
            failed += 1
            continue
        x = (image[None].astype(np.float32) / 255 - mean) / std            # (1, H, W, 3)
        with threads.timed() if threads is not None else contextlib.nullcontext():
            probs = softmax(to_host(model.forward(to_device(x, args.backend))))[0]
        top = np.argsort(probs)[::-1][:top_k]
        print(f"{shown(path)}: " + ", ".join(f"{shown(names[k])} {probs[k]:.3f}" for k in top))
        rows.append([path] + [value for k in top for value in (names[k], f"{probs[k]:.6f}")])
    if args.csv:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["image"] + [f"{what}_{rank}" for rank in range(1, top_k + 1) for what in ("class", "p")])
        writer.writerows(rows)
        checkpoint.atomic_write(args.csv, lambda f: f.write(text.getvalue().encode()))
    if threads is not None and rows:
        print(threads.describe(), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main)
