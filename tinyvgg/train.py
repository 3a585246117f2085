"""``python -m tinyvgg.train``: train a VGG network and keep the results.

With no arguments it trains a width-reduced VGG16 on the built-in shapes data.
On your own images::

    python -m tinyvgg.train --data train_dir --val-data val_dir --image-size 64 --epochs 30

Everything of a run goes into one folder (``--out``): ``best.npz`` (the best
validation accuracy so far, never replaced by a worse one), ``last.npz`` (the
latest state: ``--resume`` continues from it), ``history.json``/``.csv``,
``curves.png`` and ``confusion.png``. Ctrl-C saves the latest state first.
"""
import argparse
import os
import sys
import time

import numpy as np

from . import backend, checkpoint, cli
from .data import BatchLoader, open_dataset
from .models import VGG_CONFIGS, build_model
from .optim import SGD, Adam, ReduceLROnPlateau
from .trainer import (BestCheckpoint, CurvesPlot, EarlyStopping, HistoryWriter, LastCheckpoint, Trainer,
                      evaluate, write_history)

DEFAULT_LR = {"sgd": 0.01, "adam": 0.001}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", choices=backend.BACKENDS, default="numpy",
                   help="where to compute (run python -m tinyvgg.doctor to see what this machine has)")
    p.add_argument("--gpu-memory-limit", type=float, metavar="GB",
                   help="cap CuPy's memory pool, e.g. to share a GPU (--backend cupy only)")
    p.add_argument("--data", default="shapes",
                   help='"shapes[:N]" (built in), "cifar10:PATH", or a folder with one sub-folder per class')
    p.add_argument("--val-data", help="a validation folder (default: a seeded 10%% of --data)")
    p.add_argument("--model", choices=sorted(VGG_CONFIGS), default="vgg16")
    p.add_argument("--width", type=float, default=0.25, help="channel multiplier (1.0 = the paper)")
    p.add_argument("--image-size", type=int, default=32, help="images are resized to this (divisible by 32)")
    p.add_argument("--fc-units", type=int, default=256, help="units of the two hidden dense layers (paper: 4096)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="sgd")
    p.add_argument("--lr", type=float, help="learning rate (default: 0.01 for sgd, 0.001 for adam)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 penalty on the weights (paper: 5e-4)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout rate of the dense layers (the paper's 0.5 suits 4096-unit layers; on the narrow "
                        "default network it stalls the start of training for many epochs)")
    p.add_argument("--patience", type=int, default=6, help="stop after this many epochs without improvement")
    p.add_argument("--lr-patience", type=int, default=2,
                   help="divide the learning rate by 10 after this many epochs without improvement")
    p.add_argument("--augment", action="store_true", help="random flips and crops of the training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default: runs/<model>-<time>)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this last.npz")
    p.add_argument("--finetune", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (a new head where the classes differ)")
    p.add_argument("--freeze-until", metavar="LAYER",
                   help="with --finetune: do not train this layer and those before it (e.g. block5_pool)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return p.parse_args(argv)


# The arguments a resumed run takes from its checkpoint, so that it continues the same run.
RUN_ARGS = ("data", "val_data", "model", "width", "image_size", "fc_units", "batch_size", "optimizer", "lr",
            "momentum", "weight_decay", "dropout", "patience", "lr_patience", "augment", "seed", "freeze_until")


def check_args(args):
    positive = {"--epochs": args.epochs, "--batch-size": args.batch_size, "--fc-units": args.fc_units,
                "--width": args.width, "--image-size": args.image_size}
    for flag, value in positive.items():
        if value <= 0:
            raise cli.UsageError(f"{flag} must be positive, got {value}.")
    if args.image_size % 32:
        raise cli.UsageError(f"--image-size must be divisible by 32 (VGG halves it five times), got "
                             f"{args.image_size}; try 32, 64, 128 or 224.")
    if not 0 <= args.dropout < 1:
        raise cli.UsageError(f"--dropout must be in [0, 1), got {args.dropout}.")
    if args.lr is not None and args.lr <= 0:
        raise cli.UsageError(f"--lr must be positive, got {args.lr}.")
    if not 0 <= args.momentum < 1:
        raise cli.UsageError(f"--momentum must be in [0, 1), got {args.momentum}.")
    if args.weight_decay < 0:
        raise cli.UsageError(f"--weight-decay must be zero or positive, got {args.weight_decay}.")


def prepare_run_folder(args):
    """The run folder's path; a new run never writes into a folder that already holds one."""
    if args.resume:
        return args.out or os.path.dirname(os.path.abspath(args.resume))
    out = args.out or os.path.join("runs", f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.isdir(out) and os.listdir(out):
        raise cli.UsageError(f"the run folder {out} already holds files; choose another --out, "
                             f"or continue that run with --resume {os.path.join(out, 'last.npz')}.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise cli.UsageError(f"--out {out} is a file, not a folder.")
    return out


def make_optimizer(args, params):
    lr = args.lr or DEFAULT_LR[args.optimizer]
    if args.optimizer == "adam":
        return Adam(params, lr=lr, weight_decay=args.weight_decay)
    return SGD(params, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)


def apply_freeze(model, args):
    """Freeze the layers up to --freeze-until (also when a fine-tuning run is resumed)."""
    from .transfer import freeze_until
    if not args.freeze_until:
        return []
    try:
        return freeze_until(model, args.freeze_until)
    except ValueError as err:
        raise cli.UsageError(f"--freeze-until: {err}") from None


def start_from(model, source, args):
    """Fine-tuning: copy the matching weights of ``source`` and freeze up to ``--freeze-until``."""
    from .transfer import transfer_params
    copied = transfer_params(source.params, model)
    if not copied:
        raise checkpoint.CheckpointError(f"{args.finetune} shares no layer with this model.")
    fresh = sorted({n.split(".")[0] for n in model.named_params()} - {n.split(".")[0] for n in copied})
    frozen = apply_freeze(model, args)
    if not args.quiet:
        print(f"fine-tuning from {args.finetune}: {len(copied)} weights copied, new layers {fresh or 'none'}, "
              f"{len(frozen)} layers frozen")


def main(argv=None):
    args = parse_args(argv)
    resumed = None
    if args.resume:
        resumed = checkpoint.load(args.resume)
        if "args" not in resumed.meta:
            raise cli.UsageError(f"{args.resume} holds weights but no training state; --resume needs a last.npz.")
        for name in RUN_ARGS:  # the same run goes on: its settings come from the checkpoint
            setattr(args, name, resumed.meta["args"][name])
    source = None
    if args.finetune:
        if args.resume:
            raise cli.UsageError("--finetune starts a new run and --resume continues one; pass only one.")
        source = checkpoint.load(args.finetune)
        config = source.meta.get("model_config") or {}
        if not {"depth", "width", "fc_units"} <= set(config):
            raise checkpoint.CheckpointError(f"{args.finetune} does not say which VGG it holds (no model "
                                             "configuration); --finetune needs a checkpoint written by tinyvgg.")
        args.model, args.width, args.fc_units = config["depth"], config["width"], config["fc_units"]
    elif args.freeze_until:
        raise cli.UsageError("--freeze-until needs --finetune CHECKPOINT (the weights to keep).")
    check_args(args)
    backend.require(args.backend)
    if args.gpu_memory_limit is not None:
        if args.backend != "cupy" or args.gpu_memory_limit <= 0:
            raise cli.UsageError("--gpu-memory-limit takes a positive number of GB and needs --backend cupy.")
        backend.set_gpu_memory_limit(args.gpu_memory_limit)
    out = prepare_run_folder(args)
    progress = not args.quiet

    train_set, val_set = open_dataset(args.data, args.image_size, args.val_data, seed=args.seed, progress=progress)
    if resumed is not None:
        if list(resumed.meta["class_names"]) != list(train_set.class_names):
            raise checkpoint.CheckpointError(f"{args.resume} was trained on classes {resumed.meta['class_names']}, "
                                             f"but --data {args.data} has {train_set.class_names}.")
        mean, std = resumed.normalization()
    elif source is not None and "normalization" in source.meta:  # the features expect their own inputs
        mean, std = source.normalization()
    else:
        mean, std = train_set.channel_stats()
    os.makedirs(out, exist_ok=True)  # only now: bad data leaves no empty run folder behind

    rng = np.random.default_rng(args.seed)  # one host RNG: weights, dropout masks, shuffling, augmentation
    config = dict(depth=args.model, num_classes=len(train_set.class_names),
                  input_shape=(args.image_size, args.image_size, 3), width=args.width, fc_units=args.fc_units,
                  dropout=args.dropout, include_top=True, init="he_normal")
    model = build_model(config, rng=rng)
    if source is not None:
        start_from(model, source, args)
    elif resumed is not None:
        apply_freeze(model, args)
    model.to(args.backend)
    optimizer = make_optimizer(args, model.named_params(trainable_only=True))
    scheduler = ReduceLROnPlateau(optimizer, factor=0.1, patience=args.lr_patience)
    meta = {"args": {k: getattr(args, k) for k in RUN_ARGS}, "class_names": list(train_set.class_names),
            "normalization": {"mean": mean.tolist(), "std": std.tolist()}}
    callbacks = [EarlyStopping(args.patience), HistoryWriter(out), BestCheckpoint(os.path.join(out, "best.npz")),
                 LastCheckpoint(os.path.join(out, "last.npz")), CurvesPlot(os.path.join(out, "curves.png"))]
    trainer = Trainer(model, optimizer, rng, scheduler, "val_accuracy", callbacks, meta, progress)
    if resumed is not None:
        trainer.restore(resumed)

    train_loader = BatchLoader(train_set, args.batch_size, mean, std, shuffle=True, augment=args.augment, rng=rng,
                               backend=args.backend)
    val_loader = BatchLoader(val_set, 256, mean, std, backend=args.backend)
    if progress:
        print(model.summary(batch_size=args.batch_size))
        print(f"data: {len(train_set)} training and {len(val_set)} validation images, "
              f"{len(train_set.class_names)} classes; backend {args.backend}; run folder {out}")
    try:
        trainer.fit(train_loader, val_loader, epochs=args.epochs)
    except KeyboardInterrupt:
        last = os.path.join(out, "last.npz")
        trainer.save(last)
        write_history(trainer.history, out)
        print(f"\ninterrupted: saved the current state to {last}; continue with "
              f"python -m tinyvgg.train --resume {last}", file=sys.stderr)
        return 130
    finish(trainer, val_loader, out, progress)
    return 0


def finish(trainer, val_loader, out, progress):
    """Evaluate the best checkpoint on the validation data and draw its confusion matrix."""
    from .plots import confusion_matrix, plot_confusion, save_figure
    best = checkpoint.load(os.path.join(out, "best.npz"))
    best.load_into(trainer.model)
    result = evaluate(trainer.model, val_loader)
    names = trainer.meta["class_names"]
    counts = confusion_matrix(result["labels"], result["predictions"], len(names))
    save_figure(plot_confusion(counts, names), os.path.join(out, "confusion.png"))
    seconds = sum(trainer.history["seconds"])
    print(f"best validation accuracy {result['accuracy']:.4f} (epoch {best.meta['epoch']} of {trainer.epoch}), "
          f"{seconds:.0f} s of training; results in {out}")


if __name__ == "__main__":
    cli.run(main)
