"""Data augmentation: random flips and crops of a batch."""
import numpy as np


def augment_batch(x, flips, offsets, pad=4):
    """Random horizontal flip and random crop after zero padding, in place of x.

    x: float32 (n, H, W, C), normalized (so the zero padding is the mean colour);
    flips: (n,) bool; offsets: (n, 2) ints in [0, 2*pad].
    """
    n, H, W, C = x.shape
    padded = np.zeros((n, H + 2 * pad, W + 2 * pad, C), dtype=x.dtype)
    padded[:, pad:pad + H, pad:pad + W] = x
    for i in range(n):
        dy, dx = offsets[i]
        crop = padded[i, dy:dy + H, dx:dx + W]
        x[i] = crop[:, ::-1] if flips[i] else crop
    return x
