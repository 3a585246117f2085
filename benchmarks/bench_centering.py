"""Why a VGG16 stalls on a small set of built-in shapes, and what each half of --centering does about it.

    python benchmarks/bench_centering.py                      # 4 variants x seeds 0-4, 3 epochs, 1 BLAS thread
    python benchmarks/bench_centering.py --epochs 10 --seeds 1 3 --jobs 1

The built-in shapes draw every background in a random colour: most of each pixel's value is a colour
that says nothing about the class. The variants, each ``python -m tinyvgg.train --data shapes:1280``
with only ``train.CENTERING`` (what ``--centering`` adds to the model) replaced:

- ``none``: ``--no-centering``, the network before this change;
- ``centering``: only the :class:`~tinyvgg.layers.ImageCentering` layer (each image's mean colour off);
- ``zero_mean``: only the first convolution's filters started at zero sum (``he_normal_zero_mean``);
- ``both``: ``--centering``, the default.

Each run is its own process with a fixed thread count (``--threads``); two at a time by default (a run's
numbers depend on its thread count, not on the machine's load). Prints validation accuracy after each
epoch, per variant and seed, and the smallest after the last epoch.
"""
import argparse
import concurrent.futures
import csv
import os
import subprocess
import sys
import tempfile

VARIANTS = {
    "none": {},
    "centering": {"center_images": True},
    "zero_mean": {"first_conv_init": "he_normal_zero_mean"},
    "both": {"center_images": True, "first_conv_init": "he_normal_zero_mean"},
}


def train_one(variant, argv):
    """In this process: the command-line run with ``train.CENTERING`` set to the variant's model arguments."""
    from tinyvgg import train
    train.CENTERING = VARIANTS[variant]
    return train.main(argv + ["--centering"])


def run(variant, seed, epochs, threads, folder):
    out = os.path.join(folder, f"{variant}-{seed}")
    argv = ["--data", "shapes:1280", "--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads),
            "--quiet", "--out", out]
    code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import bench_centering as b; " \
           f"sys.exit(b.train_one({variant!r}, {argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{variant} seed {seed} failed:\n{done.stderr[-2000:]}")
    with open(os.path.join(out, "history.csv")) as f:
        return [float(row["val_accuracy"]) for row in csv.DictReader(f)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        jobs = {(v, s): pool.submit(run, v, s, args.epochs, args.threads, folder)
                for v in args.variants for s in args.seeds}
        print(f"--data shapes:1280, {args.epochs} epochs, {args.threads} BLAS thread(s): validation accuracy "
              f"after each epoch")
        for v in args.variants:
            curves = [jobs[v, s].result() for s in args.seeds]
            cells = " | ".join(f"seed {s}: " + " ".join(f"{a:.2f}" for a in c) for s, c in zip(args.seeds, curves))
            print(f"{v:10s} {cells} | last epoch {min(c[-1] for c in curves):.2f}-{max(c[-1] for c in curves):.2f}")


if __name__ == "__main__":
    main()
