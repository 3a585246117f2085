"""Data augmentation: random flips and crops of a batch; the VGG paper's scale jittering and colour shift.

The paper (Simonyan & Zisserman, 2014, section 3.1) augments each training image with a random
crop, a random horizontal flip and a random RGB colour shift along the principal components of the
pixel colours (from Krizhevsky et al., 2012), and with *scale jittering*: the image is first rescaled
so that its side is ``S``, drawn anew for each image from ``[S_min, S_max]`` (``[256, 512]`` for 224
crops), and the crop is taken from that.
"""
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


def scale_jitter(images, crop, S_min, S_max, rng):
    """Scale jittering: rescale each image to side S ~ uniform integers in [S_min, S_max], crop at random.

    images: uint8 (n, H, W, 3), square; crop <= S_min. Returns uint8 (n, crop, crop, 3) and the
    drawn sides S (n,). At S = crop the crop is the whole image; larger S shows a part, magnified.
    """
    from PIL import Image
    if not crop <= S_min <= S_max:
        raise ValueError(f"scale jittering needs crop <= S_min <= S_max, got {crop}, {S_min}, {S_max}.")
    sides = rng.integers(S_min, S_max + 1, len(images))
    out = np.empty((len(images), crop, crop, images.shape[3]), dtype=np.uint8)
    for i, (img, S) in enumerate(zip(images, sides)):
        big = np.asarray(Image.fromarray(img).resize((int(S), int(S)), Image.BILINEAR))  # (S, S, 3)
        top, left = rng.integers(0, S - crop + 1, 2)
        out[i] = big[top:top + crop, left:left + crop]
    return out, sides


def pixel_pca(images):
    """Principal components of the pixel colours: eigenvalues (3,), descending, and eigenvectors (3, 3).

    images: uint8 (n, H, W, 3); colours scaled to [0, 1]. Column k of the eigenvectors is the k-th
    principal direction of the 3x3 covariance of all pixels' RGB values.
    """
    pixels = images.reshape(-1, 3).astype(np.float64) / 255     # (n*H*W, 3)
    eigvals, eigvecs = np.linalg.eigh(np.cov(pixels, rowvar=False))
    order = np.argsort(eigvals)[::-1]
    return eigvals[order], eigvecs[:, order]


def colour_shift(images, eigvals, eigvecs, alphas):
    """The RGB colour shift of Krizhevsky et al.: one shift per image along the principal colour axes.

    Adds ``sum_k alphas[n, k] * sqrt(eigvals[k]) * eigvecs[:, k]`` to every pixel of image n.
    images: float (n, H, W, 3) in [0, 1]; eigvals (3,), eigvecs (3, 3) from :func:`pixel_pca`;
    alphas: (n, 3), drawn from N(0, 0.1^2) in the paper. ``sqrt(eigvals)`` is the spread of the
    colours along each axis, so alpha counts in those spreads whatever the units of the pixels
    (the papers say "proportional to the eigenvalues", a size that depends on the units). Not clipped.
    """
    shifts = (alphas * np.sqrt(eigvals)) @ eigvecs.T             # (n, 3) @ (3, 3) -> (n, 3)
    return images + shifts[:, None, None, :]
