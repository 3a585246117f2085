"""Overlay the training curves of several run folders in one picture.

    python benchmarks/plot_runs.py runs/bn=VGG16-BN runs/plain=plain --out compare.png

Each argument is a run folder written by ``python -m tinyvgg.train`` (it reads the
folder's ``history.json``), optionally followed by ``=label`` for the legend. The
picture has two panels, validation accuracy and training loss per epoch, one line
per run, and a dotted line at chance level (one over the number of classes,
``--classes``). The curves of batch normalization against the plain network in
benchmarks/README.md were drawn with it.
"""
import argparse
import json
import os
import sys

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tinyvgg.plots import save_figure  # noqa: E402


def read_run(argument):
    """'folder=label' (or just 'folder') -> (label, history dict)."""
    folder, _, label = argument.partition("=")
    path = os.path.join(folder, "history.json")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} does not exist; give a folder written by python -m tinyvgg.train.")
    with open(path) as f:
        return label or os.path.basename(os.path.normpath(folder)), json.load(f)


def plot_runs(runs, classes, title=None):
    """runs: [(label, history)] -> a Figure with validation accuracy and training loss per epoch."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for label, history in runs:
        val = [v for v in history["val_accuracy"] if v is not None]
        acc_ax.plot(history["epoch"][:len(val)], val, "o-", label=label)
        loss_ax.plot(history["epoch"], history["loss"], "o-", label=label)
    acc_ax.axhline(1 / classes, color="grey", linestyle=":", label="chance")
    acc_ax.set_ylim(0, 1)
    for ax, name in ((acc_ax, "validation accuracy"), (loss_ax, "training loss")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
    # one legend under both panels, where it hides no line (bbox_inches="tight" keeps it in the picture)
    fig.legend(*acc_ax.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0), ncol=2)
    if title:
        fig.suptitle(title)
    return fig


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders, each optionally as folder=label")
    p.add_argument("--out", required=True, help="the picture to write (.png, .svg, .pdf)")
    p.add_argument("--classes", type=int, default=10, help="number of classes, for the chance line")
    p.add_argument("--title")
    args = p.parse_args()
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise SystemExit(f"error: the folder {folder} does not exist; create it or choose another --out.")
    fig = plot_runs([read_run(r) for r in args.runs], args.classes, args.title)
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
