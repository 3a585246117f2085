"""``python -m tinyvgg.train``: train a VGG network and keep the results.

With no arguments it trains a width-reduced VGG16 on the built-in shapes data.
On your own images::

    python -m tinyvgg.train --data train_dir --val-data val_dir --image-size 64 --epochs 30

Everything of a run goes into one folder (``--out``): ``best.npz`` (the best
validation accuracy so far, never replaced by a worse one), ``last.npz`` (the
latest state: ``--resume`` continues from it), ``history.json``/``.csv``,
``curves.png`` and ``confusion.png``. Ctrl-C saves the latest state first.

On several processes (``mpiexec -n 4 python -m tinyvgg.train --distributed``) the
ranks first check that they agree on the run, then split every batch and add up their
gradients (:mod:`tinyvgg.training.parallel`); rank 0 writes the run folder. SIGTERM (what a
batch system sends before it ends a job), like Ctrl-C, stops after the current step and saves
the place to resume from.

With batch normalization, the running statistics that a saved model evaluates with are
recomputed over (a sample of) the training images at the end of every epoch, before
validation and saving (precise BN, :mod:`tinyvgg.training.precise_bn`; ``--precise-bn``).
"""
import argparse
import functools
import math
import os
import sys
import time

import numpy as np

from . import backend, checkpoint, cli, memory
from .data import BUILT_IN, BatchLoader, DataError, Subset, absolute_spec, open_dataset
from .data.fingerprint import fingerprint
from .models import COMMAND_KERNELS, KERNELS, VGG_CONFIGS, build_model
from .optim import SGD, Adam, FastAdam, FastRMSProp, FastSGD, LinearWarmup, ReduceLROnPlateau, RMSProp
from .run_folder import RunFolder, holds_a_run
from .threads import ThreadChooser, blas_threads
from .training import (
    BestCheckpoint,
    CurvesPlot,
    EarlyStopping,
    HistoryWriter,
    LastCheckpoint,
    LocalStep,
    Trainer,
    TrainingDiverged,
    evaluate_model,
    write_history,
)
from .training.agreement import agree, broadcast_model, file_digest
from .training.loop import training_state_problem
from .training.parallel import DataParallelStep, ShardedBatchLoader, ShardLoader, prepare_model_for_ranks
from .training.precise_bn import AGREEMENT
from .training.world import DEFAULT_TIMEOUT, World, connect, ends_every_rank_on_failure

DEFAULT_LR = {"sgd": 0.02, "adam": 0.001, "rmsprop": 0.001}
#: --head-init's choices: the initializers of the dense head, as models.vgg's head_init and logits_init
#: ("he": He for fc1 and fc2, the logits at zero; "small": N(0, 0.01) for all three, as torchvision's VGG)
HEAD_INITS = {"he": {"logits_init": "zeros"}, "small": {"head_init": "small_normal"}}
#: What --centering adds to models.vgg's arguments: each image's mean colour off, and first filters blind to flat
#: colour (on 1,280 shape images, epoch 3's validation accuracy 0.15-0.27 -> 0.36-0.57; benchmarks/README.md)
CENTERING = {"center_images": True, "first_conv_init": "he_normal_zero_mean"}
DEFAULT_WARMUP_EPOCHS = 1.0
DEFAULT_EPOCHS = 10
#: The plateau schedule ignores epochs whose validation accuracy is within this of chance (1 / classes).
CHANCE_MARGIN = 0.05
#: --precise-bn's default: recompute batch normalization's statistics over at most this many training
#: images (a fixed random sample). On the default run 512 score as 1024 and all 6,000 do, in loss and accuracy
#: after every epoch, where 256 fall behind; 8 batches' forward passes, about 3% of an epoch (benchmarks/README.md).
DEFAULT_PRECISE_BN_IMAGES = 512


def parse_args(argv=None, defaults=True):
    """The command line's settings; with ``defaults=False`` only those the command line gives."""
    p = argparse.ArgumentParser(prog="python -m tinyvgg.train", description=cli.summary(__doc__),
                                formatter_class=cli.HelpFormatter)
    p.add_argument("--backend", choices=backend.BACKENDS, default="numpy",
                   help="where to compute (run python -m tinyvgg.doctor to see what this machine has)")
    p.add_argument("--gpu-memory-limit", type=float, metavar="GB",
                   help="cap CuPy's memory pool, e.g. to share a GPU (--backend cupy only)")
    p.add_argument("--data", default="shapes",
                   help='"shapes[:N]" or "glyphs[:N]" (built in, N training images), "cifar10:PATH", or a folder '
                        'with one sub-folder per class')
    p.add_argument("--val-data", help="a validation folder (default: a seeded 10%% of --data)")
    p.add_argument("--model", choices=sorted(VGG_CONFIGS), default="vgg16", help="which VGG (the paper's A, B, D, E)")
    p.add_argument("--width", type=float, default=0.25, help="channel multiplier (1.0 = the paper)")
    p.add_argument("--image-size", type=int, default=32, help="images are resized to this (divisible by 32)")
    p.add_argument("--fc-units", type=int, default=256, help="units of the two hidden dense layers (paper: 4096)")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True,
                   help="batch normalization after every convolution (the VGG-BN variant), which learns from the "
                        "first epoch; --no-batch-norm trains the paper's plain network")
    p.add_argument("--centering", action=argparse.BooleanOptionalAction, default=True,
                   help="take each image's own mean colour off in the network's first layer and start the first "
                        "convolution's filters blind to flat colour, so the first steps learn shapes, not "
                        "backgrounds; --no-centering builds the network without them")
    p.add_argument("--head-init", choices=sorted(HEAD_INITS), default="he",
                   help="how the dense head starts: he (He for fc1 and fc2, the logits at zero: every class "
                        "equally likely at first) or small (N(0, 0.01) as torchvision's VGG; the paper's "
                        "--fc-units 4096 --dropout 0.5 needs it)")
    p.add_argument("--epochs", type=int,
                   help=f"train until this many epochs in all (default: {DEFAULT_EPOCHS}; with --resume, the run's "
                        "own number, or a larger one to extend it)")
    p.add_argument("--batch-size", type=int, default=64, help="images per training step")
    p.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="sgd", help="the update rule")
    p.add_argument("--lr", type=float, help="learning rate (default: 0.02 for sgd, 0.001 for adam and rmsprop)")
    p.add_argument("--warmup-epochs", type=float, default=DEFAULT_WARMUP_EPOCHS,
                   help="raise the learning rate linearly from a tenth of --lr over this many epochs (0: off)")
    p.add_argument("--clip-norm", type=float,
                   help="scale the gradients down when their global norm exceeds this (default: off)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD's momentum")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 penalty on the weights (paper: 5e-4)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout rate of the dense layers (the paper's 0.5 is for 4096-unit layers, with "
                        "--head-init small; on the narrow default network it stalls training for many epochs)")
    p.add_argument("--patience", type=int, default=6, help="stop after this many epochs without improvement")
    p.add_argument("--lr-patience", type=int, default=2,
                   help="divide the learning rate by 10 after this many epochs without improvement")
    p.add_argument("--augment", action="store_true", help="random flips and crops of the training images")
    p.add_argument("--precise-bn", type=int, default=DEFAULT_PRECISE_BN_IMAGES, metavar="IMAGES",
                   help="at the end of every epoch, recompute batch normalization's statistics over this many "
                        "training images (an even sample, or all of them if there are fewer; 0: keep the running "
                        "averages, which lag behind the weights when an epoch is only a few steps)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the weights, the shuffles and the augmentation")
    p.add_argument("--out", help="run folder (default: runs/<model>-<time>)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this last.npz")
    p.add_argument("--finetune", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (a new head where the classes differ)")
    p.add_argument("--freeze-until", metavar="LAYER",
                   help="with --finetune: do not train this layer and those before it (e.g. block5_pool)")
    p.add_argument("--kernels", choices=KERNELS, default=COMMAND_KERNELS,
                   help="fast: tinyvgg.fastconv's layers and the blocked optimizer update; reference: the layers of "
                        "tinyvgg.layers as the lessons teach them (the same numbers, slower)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="BLAS threads for the CPU's matrix products (default: the count that is fastest now, measured "
                        "on the first steps and again when the machine's load changes; with --distributed, each "
                        "rank's share of its cores); a fixed count makes a run repeatable bit for bit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--distributed", action="store_true",
                   help="one rank of a data-parallel run started by mpiexec -n N (needs the mpi extra): each rank "
                        "takes 1/N of every --batch-size batch and the gradients are averaged; refused outside a "
                        "launcher (a world of one process); kill -USR1 <pid of mpiexec> (or SIGTERM to every rank, as "
                        "srun sends it) stops it after the same step on every rank and saves its place")
    p.add_argument("--collective-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="with --distributed: how long a rank waits for the others at a collective before it ends the "
                        "job with a sentence (a rank stuck or lost); ranks at different collectives end it at once")
    p.add_argument("--sync-batch-norm", action="store_true",
                   help="with --distributed: batch statistics over the whole batch, as on one process (default: "
                        "each rank normalizes its own rows, as PyTorch DDP does); one process has them already")
    p.add_argument("--accumulate", type=int, default=1, metavar="K",
                   help="split each batch into K micro-batches and add up their gradients before one update: "
                        "the same step with 1/K of the activation memory (batch normalization sees micro-batches)")
    if not defaults:
        for action in p._actions:  # unlike set_defaults, leaves no "==SUPPRESS==" string to convert
            action.default = argparse.SUPPRESS
    return p.parse_args(argv)


# The arguments a resumed run takes from its checkpoint, so that it continues the same run.
RUN_ARGS = ("data", "val_data", "model", "width", "image_size", "fc_units", "batch_norm", "centering", "head_init",
            "batch_size", "optimizer", "lr", "warmup_epochs", "clip_norm", "momentum", "weight_decay", "dropout",
            "patience", "lr_patience", "augment", "seed", "freeze_until", "sync_batch_norm", "accumulate", "precise_bn")
#: The settings a resumed run may change: they act from the next step on and keep the run sound
#: (precise_bn changes only the statistics that evaluation uses). Any other that differs is refused.
CHANGEABLE_ON_RESUME = ("lr", "clip_norm", "patience", "lr_patience", "precise_bn")

#: The largest --image-size and --width: VGG16 at 1024x1024 needs about 2 GB of activations per
#: image, and at width 4 over 2 billion parameters; beyond these a run would only exhaust memory.
MAX_IMAGE_SIZE, MAX_WIDTH = memory.MAX_IMAGE_SIZE, 4.0
#: The longest --warmup-epochs: a ramp longer than any run (and a number of steps that stays an integer).
MAX_WARMUP_EPOCHS = 1000


def check_args(args):
    """Refuse any numeric setting that cannot work, before any data is read."""
    numbers = {"--epochs": args.epochs, "--batch-size": args.batch_size, "--fc-units": args.fc_units,
               "--width": args.width, "--image-size": args.image_size, "--lr": args.lr,
               "--momentum": args.momentum, "--weight-decay": args.weight_decay, "--dropout": args.dropout,
               "--warmup-epochs": args.warmup_epochs, "--clip-norm": args.clip_norm,
               "--patience": args.patience, "--lr-patience": args.lr_patience,
               "--gpu-memory-limit": args.gpu_memory_limit, "--accumulate": args.accumulate,
               "--precise-bn": args.precise_bn, "--seed": args.seed, "--collective-timeout": args.collective_timeout,
               "--threads": args.threads}
    for flag, value in numbers.items():
        if value is not None and not math.isfinite(value):
            raise cli.UsageError(f"{flag} must be a finite number, got {value}.")
    positive = {"--epochs": args.epochs, "--batch-size": args.batch_size, "--fc-units": args.fc_units,
                "--width": args.width, "--image-size": args.image_size, "--lr": args.lr, "--clip-norm": args.clip_norm,
                "--accumulate": args.accumulate, "--collective-timeout": args.collective_timeout, "--threads": args.threads}
    for flag, value in positive.items():
        if value is not None and value <= 0:
            raise cli.UsageError(f"{flag} must be positive, got {value}.")
    if args.image_size % 32 or args.image_size > MAX_IMAGE_SIZE:
        raise cli.UsageError(f"--image-size must be divisible by 32 (VGG halves it five times) and at most "
                             f"{MAX_IMAGE_SIZE}, got {args.image_size}; try 32, 64, 128 or 224.")
    if args.width > MAX_WIDTH:
        raise cli.UsageError(f"--width must be at most {MAX_WIDTH:g} (1.0 is the paper's network, 138 M parameters), "
                             f"got {args.width}; try 0.25, 0.5 or 1.")
    if not 0 <= args.dropout < 1:
        raise cli.UsageError(f"--dropout must be in [0, 1), got {args.dropout}.")
    if not 0 <= args.momentum < 1:
        raise cli.UsageError(f"--momentum must be in [0, 1), got {args.momentum}.")
    for flag, value in {"--weight-decay": args.weight_decay, "--warmup-epochs": args.warmup_epochs,
                        "--patience": args.patience, "--lr-patience": args.lr_patience,
                        "--precise-bn": args.precise_bn, "--seed": args.seed}.items():
        if value < 0:
            raise cli.UsageError(f"{flag} must be zero or positive, got {value}.")
    if args.warmup_epochs > MAX_WARMUP_EPOCHS:
        raise cli.UsageError(f"--warmup-epochs must be at most {MAX_WARMUP_EPOCHS}, got {args.warmup_epochs:g}; "
                             "try 1 or 2.")


def run_folder_path(args):
    """Where this run's files go: a new run in a missing or empty folder; a resumed run in the
    checkpoint's own folder (the default) or in a new one, never over another run."""
    if args.resume:
        own = os.path.dirname(os.path.abspath(args.resume))
        if args.out is None or os.path.realpath(args.out) == os.path.realpath(own):
            return own
        if holds_a_run(args.out):
            raise cli.UsageError(f"--out {args.out} already holds another run; --resume continues in the "
                                 f"checkpoint's own folder (leave out --out) or in a new, empty folder.")
        return args.out
    out = args.out or os.path.join("runs", f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if holds_a_run(out):
        raise cli.UsageError(f"the run folder {out} already holds files; choose another --out, "
                             f"or continue that run with --resume {os.path.join(out, 'last.npz')}.")
    return out


def make_optimizer(args, params):
    fast = args.kernels == "fast"
    if args.optimizer == "adam":
        return (FastAdam if fast else Adam)(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "rmsprop":
        return (FastRMSProp if fast else RMSProp)(params, lr=args.lr, weight_decay=args.weight_decay)
    return (FastSGD if fast else SGD)(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


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
    copied = transfer_params(source.params, model, source.buffers)
    if not copied:
        raise checkpoint.CheckpointError(f"{args.finetune} shares no layer with this model.")
    fresh = sorted({n.split(".")[0] for n in model.named_params()} - {n.split(".")[0] for n in copied})
    frozen = apply_freeze(model, args)
    if not args.quiet:
        print(f"fine-tuning from {args.finetune}: {len(copied)} weights copied, new layers {fresh or 'none'}, "
              f"{len(frozen)} layers frozen")


def load_resumed(args, given=()):
    """The checkpoint ``--resume`` continues; its run's settings replace the command line's.

    ``given``: the settings the command line gave. One that differs from the saved run's is
    applied if it is in CHANGEABLE_ON_RESUME, and refused otherwise; ``--epochs`` extends
    the run (without it, the run keeps its own number of epochs).
    """
    resumed = checkpoint.load(args.resume)
    saved = resumed.meta.get("args")
    if not isinstance(saved, dict) or not isinstance(resumed.meta.get("history"), dict):
        raise cli.UsageError(f"{args.resume} holds weights but no training state; --resume needs a last.npz "
                             "written by python -m tinyvgg.train.")
    resumed.moved_data = {}
    problem = training_state_problem(resumed.meta)
    if problem:
        raise checkpoint.CheckpointError(f"{args.resume}: its training state is damaged ({problem}); resume from a "
                                         "last.npz written by python -m tinyvgg.train.")
    defaults = parse_args([])
    if "epochs" not in given:  # written before epochs were saved: that tool's default
        args.epochs = saved.get("epochs", DEFAULT_EPOCHS)
        if not isinstance(args.epochs, int) or isinstance(args.epochs, bool):
            raise checkpoint.CheckpointError(f"{args.resume}: its saved setting epochs = {args.epochs!r} is "
                                             "damaged; resume with --epochs N.")
    changed = {}
    for name in RUN_ARGS:  # the same run goes on: its settings come from the checkpoint
        value, default = saved.get(name, getattr(defaults, name)), getattr(defaults, name)
        kind = {"lr": float, "clip_norm": float, "val_data": str, "freeze_until": str}.get(name, type(default))
        expected = (int, float) if kind is float else kind
        choices = {"model": VGG_CONFIGS, "optimizer": DEFAULT_LR, "head_init": HEAD_INITS}.get(name)
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool) and kind is not bool
                                  or choices is not None and value not in choices):
            raise checkpoint.CheckpointError(f"{args.resume}: its saved setting {name} = {value!r} is damaged; "
                                             "resume from a last.npz written by python -m tinyvgg.train.")
        if name in ("data", "val_data") and name in given and value is not None \
                and not {value.partition(":")[0], getattr(args, name).partition(":")[0]} & set(BUILT_IN) \
                and absolute_spec(getattr(args, name)) != absolute_spec(value):
            resumed.moved_data[name] = value  # the same images elsewhere? run_training compares their fingerprints
            continue
        if name in given and getattr(args, name) != value:
            if name not in CHANGEABLE_ON_RESUME:
                flag = "--" + name.replace("_", "-")
                raise cli.UsageError(f"{flag} {getattr(args, name)} would change the run that --resume continues "
                                     f"(it was trained with {value}); leave {flag} out, or start a new run "
                                     f"(--finetune {args.resume} starts from its weights).")
            changed[name] = value  # the saved value; the command line's stays in args
            continue
        setattr(args, name, value)
    for name, key in (("batch_norm", "batch_norm"), ("centering", "center_images")):
        if name not in saved:  # written before the option existed: the network it built then
            setattr(args, name, bool((resumed.meta.get("model_config") or {}).get(key, False)))
    for name, value in changed.items():
        if not args.quiet:
            print(f"--{name.replace('_', '-')} {getattr(args, name)} replaces the run's {value} from the next step on")
    return resumed


def ends_unfinished(resume):
    """Whether the run of the checkpoint ``resume`` lacks its end-of-run files (its confusion matrix, its summary
    line): a run stopped by Ctrl-C after its last step saved its last epoch but never got to write them."""
    folder = os.path.dirname(os.path.abspath(resume))
    return os.path.isfile(os.path.join(folder, "best.npz")) and not os.path.exists(os.path.join(folder, "confusion.png"))


def nothing_to_do(args, resumed):
    """The sentence that says why a resumed run has no epoch left to train, or None."""
    done = resumed.meta.get("epoch")
    if not isinstance(done, int) or resumed.meta.get("position"):
        return None  # a damaged count is reported by the restore; an interrupted epoch is always left to finish
    if done >= args.epochs:
        return (f"nothing to do: {args.resume} has trained {done} of its {args.epochs} epochs; pass --epochs N "
                f"with N above {done} to train further.")
    stopping = ((resumed.meta.get("callbacks") or {}).get("EarlyStopping") or {}).get("bad_epochs")
    if isinstance(stopping, int) and args.patience and stopping >= args.patience:
        return (f"nothing to do: the run of {args.resume} stopped early after epoch {done} (no improvement in "
                f"{stopping} epochs); pass a --patience above {stopping} to train further.")
    return None


def load_finetune_source(args):
    """The checkpoint ``--finetune`` starts from; the model's shape comes from it."""
    source = checkpoint.load(args.finetune)
    config = source.meta.get("model_config")
    if not isinstance(config, dict) or not {"depth", "width", "fc_units"} <= set(config):
        raise checkpoint.CheckpointError(f"{args.finetune} does not say which VGG it holds (no model "
                                         "configuration); --finetune needs a checkpoint written by tinyvgg.")
    problem = memory.config_problem(config)
    if problem:
        raise checkpoint.CheckpointError(f"{args.finetune} describes a model tinyvgg cannot build: {problem}; "
                                         "--finetune needs a checkpoint written by tinyvgg.")
    args.model, args.width, args.fc_units = config["depth"], config["width"], config["fc_units"]
    args.batch_norm = bool(config.get("batch_norm", False))
    args.centering = bool(config.get("center_images", False))  # the copied filters expect the inputs they learned on
    return source


@ends_every_rank_on_failure
def main(argv=None):
    args = parse_args(argv)
    world = connect(args.collective_timeout) if args.distributed else World()
    if args.distributed and args.backend == "cupy":
        world.use_gpu()  # before the first CuPy call, which would take GPU 0 on every rank
    if args.resume and args.finetune:
        raise cli.UsageError("--finetune starts a new run and --resume continues one; pass only one.")
    if args.freeze_until and not (args.finetune or args.resume):
        raise cli.UsageError("--freeze-until needs --finetune CHECKPOINT (the weights to keep).")
    resumed = load_resumed(args, vars(parse_args(argv, defaults=False))) if args.resume else None
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS
    source = load_finetune_source(args) if args.finetune else None
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    check_args(args)
    if args.backend == "numpy":  # the host's memory, before any data is read (CuPy's pool reports its own)
        memory.check_training(dict(depth=args.model, input_shape=(args.image_size, args.image_size, 3),
                                   width=args.width, fc_units=args.fc_units, num_classes=2), args.batch_size,
                              args.accumulate)
    backend.require(args.backend)
    if args.gpu_memory_limit is not None:
        if args.backend != "cupy" or args.gpu_memory_limit <= 0:
            raise cli.UsageError("--gpu-memory-limit takes a positive number of GB and needs --backend cupy.")
        backend.set_gpu_memory_limit(args.gpu_memory_limit)
    done = nothing_to_do(args, resumed) if resumed is not None else None
    if done:  # every rank stops; rank 0 says why
        if world.rank == 0:
            print(done)
        if not ends_unfinished(args.resume):
            return 0
        args.epochs = resumed.meta["epoch"]  # no epoch to train: the end-of-run files the run never wrote
    if world.rank != 0:  # rank 0 owns the run folder; the others write nothing
        return run_training(args, None, resumed, source, world)
    out = run_folder_path(args)
    with RunFolder(out):  # locked from here on; a folder this run made is removed again if it fails early
        return run_training(args, out, resumed, source, world)


def open_run_data(args, resumed, progress):
    """(train, val) of the run. A resumed run whose --data or --val-data moved must find the same images there
    (the data sets' fingerprints: file names below the folder, sizes, labels, pixel statistics), and says so;
    a saved path that no longer leads anywhere gets a sentence that says how to point to it."""
    try:
        train_set, val_set = open_dataset(args.data, args.image_size, args.val_data, seed=args.seed,
                                          progress=progress)
    except DataError as err:
        if resumed is None or resumed.moved_data:
            raise
        raise DataError(f"{err} The run of {args.resume} read its data there; if the data moved, pass its new place "
                        "with --data (and --val-data): the same images are accepted anywhere.") from None
    if resumed is not None and resumed.moved_data:
        saved = resumed.meta.get("data_fingerprint") or {}
        for name, data_set, flag in (("train", train_set, "--data"), ("val", val_set, "--val-data")):
            if saved.get(name) != fingerprint(data_set):
                raise cli.UsageError(
                    f"{flag} {getattr(args, 'data' if name == 'train' else 'val_data')} does not hold the images "
                    f"the run of {args.resume} was trained on" + ("" if saved else " (it was saved without its data's "
                                                                  "fingerprint)") + "; pass the same data, or start "
                    f"a new run (--finetune {args.resume} starts from its weights).")
        if progress:
            moved = ", ".join(f"--{n.replace('_', '-')} {v}" for n, v in resumed.moved_data.items())
            print(f"the data moved ({moved} before): the same images, so the run goes on with them")
    return train_set, val_set


def run_training(args, out, resumed, source, world=None):
    """Read the data, build everything, train, and finish; returns the exit code."""
    world = world or World()
    progress = not args.quiet and world.rank == 0
    train_set, val_set = open_run_data(args, resumed, progress)
    if resumed is not None:
        if resumed.class_names() != list(train_set.class_names):
            raise checkpoint.CheckpointError(f"{args.resume} was trained on classes {resumed.class_names()}, "
                                             f"but --data {args.data} has {train_set.class_names}.")
        mean, std = resumed.normalization()
    elif source is not None and "normalization" in source.meta:  # the features expect their own inputs
        mean, std = source.normalization()
    else:
        mean, std = train_set.channel_stats()
    if world.size > 1:  # one collective: every rank trains the same run, or every rank stops with a sentence
        agree(world, run_settings(args, train_set, val_set))

    rng = np.random.default_rng(args.seed)  # one host RNG: weights, dropout masks, shuffling, augmentation
    config = dict(depth=args.model, num_classes=len(train_set.class_names),
                  input_shape=(args.image_size, args.image_size, 3), width=args.width, fc_units=args.fc_units,
                  dropout=args.dropout, include_top=True, init="he_normal", batch_norm=args.batch_norm,
                  **HEAD_INITS[args.head_init], **(CENTERING if args.centering else {}))
    model = build_model(config, rng=rng, kernels=args.kernels)
    if source is not None:
        start_from(model, source, args)
    elif resumed is not None:
        apply_freeze(model, args)
    model.to(args.backend)
    step = None
    if world.size > 1 or args.accumulate > 1:  # layers for shards swapped in before the optimizer sees them
        step = DataParallelStep(LocalStep(prepare_model_for_ranks(model, world, args.sync_batch_norm)), world,
                                args.accumulate)
        step.check_batches(len(train_set), args.batch_size)
    optimizer = make_optimizer(args, model.named_params(trainable_only=True))
    chance = 1 / len(train_set.class_names)  # no cut while validation accuracy is within 0.05 of guessing
    scheduler = ReduceLROnPlateau(optimizer, factor=0.1, patience=args.lr_patience, threshold=chance + CHANCE_MARGIN)
    meta = {"args": {k: getattr(args, k) for k in RUN_ARGS + ("epochs",)}, "class_names": list(train_set.class_names),
            "normalization": {"mean": mean.tolist(), "std": std.tolist()}, "ranks": world.size,
            "data_fingerprint": {"train": fingerprint(train_set), "val": fingerprint(val_set)}}
    meta["args"].update(data=absolute_spec(args.data), val_data=absolute_spec(args.val_data))  # resumable anywhere
    if resumed is not None and world.rank == 0:
        keep_best_of_resumed_run(args.resume, out)
    callbacks = [EarlyStopping(args.patience), HistoryWriter(out), BestCheckpoint(os.path.join(out, "best.npz")),
                 LastCheckpoint(os.path.join(out, "last.npz")), CurvesPlot(os.path.join(out, "curves.png"))] \
        if world.rank == 0 else [EarlyStopping(args.patience)]  # the others decide the same, and write nothing
    loader = BatchLoader if world.size == 1 else functools.partial(ShardedBatchLoader, world=world)
    train_loader = loader(train_set, args.batch_size, mean, std, shuffle=True, augment=args.augment, rng=rng,
                          backend=args.backend)
    warmup = LinearWarmup(optimizer, round(args.warmup_epochs * len(train_loader))) if args.warmup_epochs else None
    threads = ThreadChooser(args.threads, why="as --threads asks") if args.threads else \
        ThreadChooser(blas_threads(), why="this rank's share of its cores") if world.size > 1 else None
    # precise BN's check keeps running statistics that agree with a batch: ranks must decide alike, as with
    # synchronized statistics they do; unsynchronized ones differ from rank to rank, so those ranks always recompute
    trainer = Trainer(model, optimizer, rng, scheduler, "val_accuracy", callbacks, meta, progress, warmup=warmup,
                      clip_norm=args.clip_norm, precise_bn=precise_bn_batches(train_set, args, mean, std, world),
                      step=step, threads=threads,
                      precise_bn_agreement=AGREEMENT if world.size == 1 or args.sync_batch_norm else None)
    if resumed is not None:
        trainer.restore(resumed)
        if args.lr != resumed.meta["args"].get("lr", args.lr):  # --lr given to a resumed run: from now on
            optimizer.lr = args.lr
            if warmup is not None:
                warmup.target_lr = args.lr  # a ramp still running now climbs to the new rate
        announce_new_world_size(args, resumed, world, progress)
    broadcast_model(world, model)  # every rank starts from rank 0's weights, as DDP and Horovod do

    val_loader = BatchLoader(val_set, 256, mean, std, backend=args.backend)
    whole_val_loader = val_loader
    if world.size > 1:  # each rank validates its part of the validation set
        val_loader = ShardLoader(val_set, 256, mean, std, backend=args.backend, world=world)
    if progress:
        print(model.summary(batch_size=args.batch_size))
        print(f"data: {len(train_set)} training and {len(val_set)} validation images, "
              f"{len(train_set.class_names)} classes; backend {args.backend}; run folder {out}"
              + (f"; {world.size} ranks" if world.size > 1 else ""))
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported by the guard, once
            trainer.fit(train_loader, val_loader, epochs=args.epochs)
    except TrainingDiverged as err:
        if world.rank != 0:  # every rank decided it on the same reduced loss: rank 0 says it, once, and ends the
            return 0         # job with its exit code (a non-zero code here could end it before rank 0 has spoken)
        done = trainer.history["epoch"]
        kept = f"best.npz and last.npz in {out} keep the run up to epoch {done[-1]}" if done else "nothing was saved"
        raise TrainingDiverged(f"{err} ({kept}.)") from None
    except KeyboardInterrupt:
        if world.rank != 0:  # every rank stopped after the same step; rank 0 saves it
            return 130
        last = os.path.join(out, "last.npz")
        trainer.save(last)
        write_history(trainer.history, out)
        where = f"epoch {trainer.epoch + 1}, step {trainer.position['step']}" if trainer.position else \
            f"the end of epoch {trainer.epoch}"
        launch = f"mpiexec -n {world.size} python -m tinyvgg.train --distributed" if world.size > 1 else \
            "python -m tinyvgg.train"
        print(f"\ninterrupted: saved the state at {where} to {last}; continue with "
              f"{launch} --resume {last}", file=sys.stderr)
        return 130
    if world.rank == 0:
        finish(trainer, whole_val_loader, out, progress)
    return 0


def precise_bn_batches(train_set, args, mean, std, world=None):
    """The batches over which batch normalization's statistics are recomputed after every epoch:
    --precise-bn training images (all of them if there are fewer), unaugmented, at the training
    batch size, in one fixed shuffled order. Shuffled, because a batch of one or two classes (a
    folder is stored class by class) has a far smaller variance than the data set; fixed, and
    drawn from its own generator, so that the run's RNG is never touched and a resumed run
    stays exact. With synchronized batch normalization on several ranks each rank takes its rows of
    every batch, as in training, so that the statistics are exactly one process's; otherwise every
    rank recomputes the same statistics from whole batches."""
    if not args.batch_norm or not args.precise_bn:
        return None
    order = np.random.default_rng(0).permutation(len(train_set))[:args.precise_bn]
    loader = functools.partial(ShardedBatchLoader, world=world) \
        if world is not None and world.size > 1 and args.sync_batch_norm else BatchLoader
    return loader(Subset(train_set, order), args.batch_size, mean, std, backend=args.backend)


#: Settings that do not change what a rank computes: the ranks may differ in them. (--data and --val-data are
#: compared by the data's fingerprint, --resume and --finetune by the checkpoint's digest: the same files may
#: lie at other paths on other machines.)
PER_RANK_SETTINGS = ("out", "quiet", "data", "val_data", "resume", "finetune", "distributed", "collective_timeout",
                     "gpu_memory_limit", "threads")


def run_settings(args, train_set, val_set):
    """What shapes the run, as plain values, for the ranks to compare (:func:`~tinyvgg.training.agreement.agree`):
    every setting that changes the computation, the data sets' fingerprints, the checkpoints' digests."""
    settings = {"--" + name.replace("_", "-"): value for name, value in sorted(vars(args).items())
                if name not in PER_RANK_SETTINGS}
    settings["the training data"] = fingerprint(train_set)
    settings["the validation data"] = fingerprint(val_set)
    for flag in ("resume", "finetune"):
        path = getattr(args, flag)
        settings[f"the --{flag} checkpoint"] = file_digest(path) if path else None
    return settings


def announce_new_world_size(args, resumed, world, progress):
    """A run saved on one number of ranks may continue on another: the global batch stays --batch-size, so
    the trajectory continues to float32 rounding (the ranks only add the same gradients in another order);
    without --sync-batch-norm each rank's batch statistics now cover other rows. Said in one line."""
    saved = resumed.meta.get("ranks", 1)
    if not isinstance(saved, int) or saved == world.size or not progress:
        return
    share = f"{args.batch_size // world.size}-{-(-args.batch_size // world.size)}" if world.size > 1 else \
        str(args.batch_size)
    note = "" if args.sync_batch_norm or not args.batch_norm else \
        " (without --sync-batch-norm, batch statistics now cover each rank's new rows)"
    print(f"resuming a run of {saved} rank{'s' * (saved > 1)} on {world.size}: the global batch stays "
          f"{args.batch_size} ({share} images per rank){note}")


def keep_best_of_resumed_run(resume, out):
    """A run resumed into a new folder starts there with a copy of its best.npz, so that the new
    folder holds the whole run and a better model is never replaced by a worse one."""
    best, target = os.path.join(os.path.dirname(os.path.abspath(resume)), "best.npz"), os.path.join(out, "best.npz")
    if os.path.realpath(os.path.dirname(best)) != os.path.realpath(out) and os.path.isfile(best) \
            and not os.path.exists(target):
        with open(best, "rb") as f:
            data = f.read()
        checkpoint.atomic_write(target, lambda f: f.write(data))


def finish(trainer, val_loader, out, progress):
    """Evaluate the best checkpoint on the validation data and draw its confusion matrix."""
    from .plots import confusion_matrix, plot_confusion, save_figure
    if not os.path.exists(os.path.join(out, "best.npz")):  # no epoch gave finite numbers
        print(f"no best.npz was saved (no epoch scored); results in {out}")
        return
    best = checkpoint.load(os.path.join(out, "best.npz"))
    best.load_into(trainer.model)
    result = evaluate_model(trainer.model, val_loader)
    names = trainer.meta["class_names"]
    counts = confusion_matrix(result["labels"], result["predictions"], len(names))
    save_figure(plot_confusion(counts, names), os.path.join(out, "confusion.png"))
    seconds = sum(trainer.history["seconds"])
    print(f"best validation accuracy {result['accuracy']:.4f} (epoch {best.meta['epoch']} of {trainer.epoch}), "
          f"{seconds:.0f} s of training; results in {out}")
    if trainer.threads is not None:
        print(trainer.threads.describe())


if __name__ == "__main__":
    cli.run(main)
