"""The built-in data set: ten classes of coloured shapes, drawn from a seed (nothing downloaded)."""
import numpy as np

from .arrays import ArrayDataset

SHAPE_CLASSES = ("disk", "ring", "square", "frame", "triangle", "diamond", "plus", "cross", "hbar", "vbar")


def _shape_mask(kind, dy, dx, r):
    """Boolean mask of one shape centred at (0, 0) with radius r, on offset grids dy, dx."""
    ady, adx = np.abs(dy), np.abs(dx)
    thick = r / 4
    if kind == "disk":
        return dy**2 + dx**2 <= r**2
    if kind == "ring":
        return ((0.55 * r)**2 <= dy**2 + dx**2) & (dy**2 + dx**2 <= r**2)
    if kind == "square":
        return np.maximum(ady, adx) <= 0.8 * r
    if kind == "frame":
        return (0.45 * r <= np.maximum(ady, adx)) & (np.maximum(ady, adx) <= 0.8 * r)
    if kind == "triangle":  # apex up
        return (dy >= -r) & (dy <= 0.7 * r) & (adx <= 0.6 * (dy + r))
    if kind == "diamond":
        return ady + adx <= r
    if kind == "plus":
        return ((ady <= thick) & (adx <= r)) | ((adx <= thick) & (ady <= r))
    if kind == "cross":  # the plus turned by 45 degrees
        u, v = np.abs(dy + dx) / np.sqrt(2), np.abs(dy - dx) / np.sqrt(2)
        return ((u <= thick) & (v <= r)) | ((v <= thick) & (u <= r))
    if kind == "hbar":
        return (ady <= thick) & (adx <= r)
    if kind == "vbar":
        return (adx <= thick) & (ady <= r)
    raise ValueError(f"unknown shape {kind!r}")


def make_shapes(num_images=6000, seed=0, image_size=32):
    """The built-in data set: ``num_images`` images of 10 shape classes, balanced.

    Each image has a random background colour with a soft gradient and noise,
    and one shape of random size (a quarter to 3/4 of the image), position and
    colour (kept apart from the background's). Same seed, same images.

    >>> ds = make_shapes(20, seed=0)
    >>> ds.images.shape, ds.class_names[:3]
    ((20, 32, 32, 3), ['disk', 'ring', 'square'])
    """
    rng = np.random.default_rng(seed)
    S = image_size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64) + 0.5
    labels = np.arange(num_images) % len(SHAPE_CLASSES)
    rng.shuffle(labels)
    images = np.empty((num_images, S, S, 3), dtype=np.uint8)
    for n, label in enumerate(labels):
        r = rng.uniform(0.14, 0.38) * S
        cy, cx = rng.uniform(r, S - r, size=2)
        background = rng.uniform(0, 1, 3)
        foreground = rng.uniform(0, 1, 3)
        while np.abs(foreground - background).sum() < 0.6:  # keep the shape visible
            foreground = rng.uniform(0, 1, 3)
        gradient = rng.uniform(-0.15, 0.15, 2)
        shade = (gradient[0] * (yy / S - 0.5) + gradient[1] * (xx / S - 0.5))[..., None]  # (S, S, 1)
        img = background + shade + rng.normal(0, 0.04, (S, S, 3))
        mask = _shape_mask(SHAPE_CLASSES[label], yy - cy, xx - cx, r)
        img[mask] = foreground + rng.normal(0, 0.04, (int(mask.sum()), 3))
        images[n] = np.clip(img * 255, 0, 255).round().astype(np.uint8)
    return ArrayDataset(images, labels, SHAPE_CLASSES)
