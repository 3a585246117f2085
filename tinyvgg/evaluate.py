"""``python -m tinyvgg.evaluate --checkpoint PATH --data DIR``: accuracy and a confusion matrix.

--data takes the same values as training: a folder with one sub-folder per
class (all of it is evaluated), "shapes" (the built-in validation images) or
"cifar10:PATH" (the test batch). Prints overall and per-class accuracy and
writes the confusion matrix as an image.
"""
import argparse


from . import backend, cli
from .checkpoint import load_model
from .data import BatchLoader, ImageFolder, open_dataset
from .plots import confusion_matrix, plot_confusion, save_figure
from .trainer import evaluate


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a best.npz or last.npz written by tinyvgg.train")
    p.add_argument("--data", required=True, help='a folder of class sub-folders, "shapes" or "cifar10:PATH"')
    p.add_argument("--confusion", default="confusion.png", help="where to write the confusion matrix image")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--backend", choices=backend.BACKENDS, default="numpy")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.batch_size < 1:
        raise cli.UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    backend.require(args.backend)
    model, ckpt = load_model(args.checkpoint, args.backend)
    names = ckpt.meta["class_names"]
    size = model.input_shape[0]
    if args.data.startswith(("shapes", "cifar10:")):
        _, dataset = open_dataset(args.data, size)
        if list(dataset.class_names) != list(names):
            raise cli.UsageError(f"--data {args.data} has classes {dataset.class_names}, "
                                 f"but the checkpoint was trained on {names}.")
    else:
        dataset = ImageFolder(args.data, size, class_names=names)
    mean, std = ckpt.normalization()
    result = evaluate(model, BatchLoader(dataset, args.batch_size, mean, std, backend=args.backend),
                      progress=True)
    counts = confusion_matrix(result["labels"], result["predictions"], len(names))
    print(f"accuracy {result['accuracy']:.4f} on {len(dataset)} images (loss {result['loss']:.4f})")
    for k, name in enumerate(names):
        total = counts[k].sum()
        if total:
            print(f"  {name:<20} {counts[k, k] / total:.4f}  ({counts[k, k]}/{total})")
    save_figure(plot_confusion(counts, names), args.confusion)
    print(f"confusion matrix written to {args.confusion}")
    return 0


if __name__ == "__main__":
    cli.run(main)
