"""Our VGG16 training step against the same step of an earlier commit, interleaved in one process.

    python benchmarks/bench_versions.py --against cc49c00 --case a --steps 15
    python benchmarks/bench_versions.py --against main~3 --case both
    python benchmarks/bench_versions.py --against 6da4c31 --through trainer   # Trainer.train_step, as train.py
    python benchmarks/bench_versions.py --against cc49c00 --case default      # the default run's network

A shared machine's speed swings 20-30% from minute to minute, so two versions are compared step
by step in turn, each step after a quiet gap (OpenBLAS's spinning threads would otherwise take
a core from the next step), and the ratio quoted is the median of the per-pair ratios. The
earlier commit's package is unpacked (``git archive``) into a temporary folder and imported
under another name (``tinyvgg_then``), which its relative imports allow; commits from before
the src/ layout (``tinyvgg/``) and after it (``src/tinyvgg/``) both work.
"""
import argparse
import importlib
import inspect
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from common import blas_info, median  # noqa: E402
from bench_vgg_step import CASES  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

#: The network `python -m tinyvgg.train` builds with no arguments (VGG16 at width 0.25 with batch normalization, a
#: 256-unit head without dropout, 10 classes, 32x32, batch 64), with its input centering where the version has it.
DEFAULT_RUN = dict(image=32, batch=64, classes=10, fc_units=256, width=0.25, batch_norm=True, dropout=0.0,
                   center_images=True, first_conv_init="he_normal_zero_mean")


def load_version(revision, folder):
    """Import the package of ``revision`` as ``tinyvgg_then``."""
    for path in ("src/tinyvgg", "tinyvgg"):
        archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", revision, path], capture_output=True)
        if archive.returncode == 0:
            break
    else:
        raise SystemExit(f"git archive {revision}: {archive.stderr.decode().strip()}")
    tar_path = os.path.join(folder, "then.tar")
    with open(tar_path, "wb") as f:
        f.write(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(folder, filter="data")
    os.rename(os.path.join(folder, path), os.path.join(folder, "tinyvgg_then"))
    sys.path.insert(0, folder)
    return importlib.import_module("tinyvgg_then")


def trainer_class(package):
    """The package's Trainer, wherever that version keeps it (training.loop since the training wing)."""
    for name in (".training.loop", ".trainer"):
        try:
            return importlib.import_module(package + name).Trainer
        except ImportError:
            continue
    raise SystemExit(f"{package} has no Trainer")


def make_step(package, case, seed=0, through="layers"):
    """The training step of ``package`` (its fast path, as `python -m tinyvgg.train` runs it): the model's
    forward, backward and the optimizer called here (``through="layers"``), or its Trainer's train_step."""
    models = importlib.import_module(package + ".models")
    layers = importlib.import_module(package + ".layers")
    optim = importlib.import_module(package + ".optim")
    fast = {"kernels": "fast"} if "KERNELS" in vars(models) else {}  # older versions built the fast layers anyway
    accepted = inspect.signature(models.vgg).parameters
    extra = {key: case[key] for key in ("width", "batch_norm", "dropout", "center_images", "first_conv_init")
             if key in case and key in accepted}  # what this version knows of the case's network
    model = models.vgg16(num_classes=case["classes"], input_shape=(case["image"],) * 2 + (3,),
                         fc_units=case["fc_units"], seed=seed, **fast, **extra)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["batch"], case["image"], case["image"], 3), np.float32)
    y = rng.integers(0, case["classes"], case["batch"])
    sgd = getattr(optim, "FastSGD", optim.SGD)  # before the split, SGD itself was the blocked update
    optimizer = sgd(model.named_params(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    loss_fn = layers.SoftmaxCrossEntropy()
    if hasattr(type(model), "input_grad"):
        model.input_grad = False

        def backward(dout):
            model.backward(dout)
    else:
        def backward(dout):
            model.backward(dout, input_grad=False)

    def step():
        loss_fn.forward(model.forward(x, train=True), y)
        backward(loss_fn.backward())
        optimizer.step(model.named_grads())
    if through == "trainer":
        trainer = trainer_class(package)(model, optimizer, rng, progress=False)
        return lambda: trainer.train_step(x, y)
    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--against", required=True, help="a git revision, e.g. main~1 or a commit hash")
    p.add_argument("--case", choices=["a", "b", "both", "default"], default="a",
                   help="a, b: bench_vgg_step's cases (VGG16 at full width); default: the default run's network")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--gap", type=float, default=0.3, help="seconds of quiet before each timed step")
    p.add_argument("--through", choices=["layers", "trainer"], default="layers",
                   help="time the layers and optimizer called directly, or the Trainer's train_step around them")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        load_version(args.against, folder)
        print(f"BLAS: {blas_info()}")
        for name in ("a", "b") if args.case == "both" else (args.case,):
            case = DEFAULT_RUN if name == "default" else CASES[name]
            steps = {"now": make_step("tinyvgg", case, through=args.through),
                     "then": make_step("tinyvgg_then", case, through=args.through)}
            for step in steps.values():  # warm-up: allocations, scratch buffers
                step()
            times = {"now": [], "then": []}
            for i in range(args.steps):
                order = ("now", "then") if i % 2 == 0 else ("then", "now")
                for version in order:
                    time.sleep(args.gap)
                    start = time.perf_counter()
                    steps[version]()
                    times[version].append(time.perf_counter() - start)
            ratios = [a / b for a, b in zip(times["now"], times["then"])]
            print(f"case {name} ({case['image']}x{case['image']}, batch {case['batch']}, through the {args.through}), "
                  f"{args.steps} pairs: "
                  f"now {median(times['now']):.3f} s, {args.against} {median(times['then']):.3f} s; "
                  f"now / then, median of pair ratios {median(ratios):.3f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
