"""``python -m tinyvgg.evaluate --checkpoint PATH --data DIR``: accuracy and a confusion matrix.

--data takes the same values as training: a folder with one sub-folder per
class (all of it is evaluated), "shapes" or "glyphs" (the built-in validation images) or
"cifar10:PATH" (the test batch). Prints overall and per-class accuracy and
writes the confusion matrix as an image.
"""
import argparse
import os

from . import backend, cli
from .checkpoint import load_classifier
from .data import BUILT_IN, BatchLoader, ImageFolder, open_dataset
from .models import COMMAND_KERNELS
from .plots import confusion_matrix, plot_confusion, save_figure
from .threads import ThreadChooser
from .training.loop import evaluate_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.evaluate", description=cli.summary(__doc__),
                                formatter_class=cli.HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a best.npz or last.npz written by tinyvgg.train")
    p.add_argument("--data", required=True, help='a folder of class sub-folders, "shapes", "glyphs" or "cifar10:PATH"')
    p.add_argument("--confusion", help="where to write the confusion matrix image (default: confusion.png beside "
                                       "the checkpoint, or confusion-2.png and so on if that exists)")
    p.add_argument("--force", action="store_true", help="replace an existing --confusion file")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    p.add_argument("--backend", choices=backend.BACKENDS, default="numpy", help="where to compute")
    p.add_argument("--threads", type=int, metavar="N",
                   help="BLAS threads (default: the count that is fastest now, measured on the first batches)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.batch_size < 1:
        raise cli.UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.threads is not None and args.threads < 1:
        raise cli.UsageError(f"--threads must be at least 1, got {args.threads}.")
    default = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "confusion.png")
    confusion = cli.output_path(args.confusion, "--confusion", args.force, default=default)
    backend.require(args.backend)
    model, _, names, (mean, std) = load_classifier(args.checkpoint, args.backend, COMMAND_KERNELS)
    size = model.input_shape[0]
    if args.data.partition(":")[0] in BUILT_IN or args.data.startswith("cifar10:"):
        _, dataset = open_dataset(args.data, size)
        if list(dataset.class_names) != list(names):
            raise cli.UsageError(f"--data {args.data} has classes {dataset.class_names}, "
                                 f"but the checkpoint was trained on {names}.")
    else:
        dataset = ImageFolder(args.data, size, class_names=names)
    threads = ThreadChooser(args.threads, why="as --threads asks") if args.backend == "numpy" else None
    result = evaluate_model(model, BatchLoader(dataset, args.batch_size, mean, std, backend=args.backend),
                            progress=True, threads=threads)
    counts = confusion_matrix(result["labels"], result["predictions"], len(names))
    print(f"accuracy {result['accuracy']:.4f} on {len(dataset)} images (loss {result['loss']:.4f})")
    for k, name in enumerate(names):
        total = counts[k].sum()
        if total:
            print(f"  {name:<20} {counts[k, k] / total:.4f}  ({counts[k, k]}/{total})")
    save_figure(plot_confusion(counts, names), confusion)
    print(f"confusion matrix written to {confusion}")
    if threads is not None:
        print(threads.describe())
    return 0


if __name__ == "__main__":
    cli.run(main)
