"""Pictures of training: curves, confusion matrices, filters and feature maps.

Each function returns a matplotlib ``Figure`` (shown inline in a notebook);
:func:`save_figure` writes one to a file atomically. Figures are built without
pyplot's global state, so they also work on a machine with no display.
"""
import io
import math

import numpy as np
from matplotlib.figure import Figure

from .backend import to_host
from .checkpoint import atomic_write


def save_figure(fig, path, dpi=100, tight=True):
    """Write ``fig`` as an image to ``path`` (format from the extension), atomically. tight: crop to what is
    drawn, which draws the figure twice (once to measure); a figure laid out with fixed margins, as
    :func:`plot_history`'s, is written in one drawing with ``tight=False``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.rsplit(".", 1)[-1], dpi=dpi, bbox_inches="tight" if tight else None)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_history(history):
    """Accuracy and loss per epoch, training and validation, side by side. Fixed margins: the training
    loop redraws it after every epoch, and a tight crop would draw it twice (0.40 s against 0.24 s here)."""
    fig = Figure(figsize=(10, 4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22)
    acc_ax, loss_ax = fig.subplots(1, 2)
    epochs = history["epoch"]
    for ax, key, title in ((acc_ax, "accuracy", "accuracy"), (loss_ax, "loss", "loss")):
        ax.plot(epochs, history[key], "o-", label="training")
        val = [v for v in history.get(f"val_{key}", []) if v is not None]
        if val:
            ax.plot(epochs[:len(val)], val, "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plain_text(texts):
    """Show each matplotlib ``Text`` as it is written: no math text (a ``$`` in a class name would start a formula
    that matplotlib may fail to parse, after a whole run has trained)."""
    for text in texts:
        text.set_parse_math(False)


def confusion_matrix(labels, predictions, num_classes):
    """counts[i, j] = how many examples of class i were predicted as class j."""
    pairs = np.asarray(labels) * num_classes + np.asarray(predictions)  # (true, predicted) as one index
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion(counts, class_names):
    """The confusion matrix as a heat map with the count in each cell; rows are true classes."""
    K = len(class_names)
    fig = Figure(figsize=(1.0 + 0.6 * K, 0.8 + 0.55 * K))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(K), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(K), labels=class_names)
    plain_text(ax.get_xticklabels() + ax.get_yticklabels())  # class names are folder names: "x$^$" is no formula
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"confusion matrix (accuracy {accuracy:.3f})")
    for i in range(K):
        for j in range(K):
            if counts[i, j]:
                dark = counts[i, j] > counts.max() / 2
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig


def _grid_figure(count, cell_inches, cols=None):
    """(figure, axes) for ``count`` small images in a near-square grid, axes switched off."""
    cols = cols or math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(cols * cell_inches[0], rows * cell_inches[1]))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    return fig, axes[:count]


def plot_filters(W, max_filters=64):
    """First-layer filters (KH, KW, 3, F) as small RGB images, each scaled to [0, 1]."""
    W = to_host(W)
    fig, axes = _grid_figure(min(W.shape[-1], max_filters), (0.9, 0.9))
    for f, ax in enumerate(axes):
        w = W[:, :, :, f]
        ax.imshow((w - w.min()) / (np.ptp(w) + 1e-12), interpolation="nearest")
    fig.suptitle("first-layer filters")
    return fig


def plot_feature_maps(maps, max_maps=32, title="feature maps"):
    """The channels of one activation (H, W, C) as grayscale images."""
    maps = to_host(maps)
    fig, axes = _grid_figure(min(maps.shape[-1], max_maps), (1.1, 1.1))
    for c, ax in enumerate(axes):
        ax.imshow(maps[:, :, c], cmap="viridis")
    fig.suptitle(title)
    return fig


def plot_images(images, titles=None, cols=8):
    """A grid of uint8 or [0, 1] RGB images with optional titles."""
    images = to_host(images)
    fig, axes = _grid_figure(len(images), (1.3, 1.5), cols=min(cols, len(images)))
    for i, ax in enumerate(axes):
        ax.imshow(images[i])
        if titles is not None:
            plain_text([ax.set_title(titles[i], fontsize=7)])
    return fig
