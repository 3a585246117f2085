"""im2col and col2im: a convolution as one matrix multiply.

A KxK convolution computes, at every output pixel, a dot product between the
KxK patch of input channels around it and each filter. ``im2col`` copies every
patch into one row of a matrix, so that the whole convolution becomes

    out = im2col(x) @ W.reshape(KH*KW*C, F)     # (N*H*W, KH*KW*C) @ (KH*KW*C, F)

one large matrix multiply, the operation BLAS libraries and GPUs run fastest.

The copy is built from KH*KW slice copies: tap (i, j) of every patch is the
input shifted by (i, j), so ``cols[:, :, :, i, j, :] = x_pad[:, i:i+H, j:j+W, :]``.
With NHWC data each patch row is KH*KW contiguous runs of C channels.

``col2im`` is the adjoint (the transpose) of ``im2col``: it adds every patch
row back onto the pixels it was copied from, which is exactly what the
backward pass needs for dL/dx. Both use only slicing, so they run unchanged
on NumPy and CuPy (no ``np.add.at``, whose scatter semantics differ).

Only stride 1 is supported (all VGG convolutions use it).
"""
from .backend import get_array_module


def resolve_padding(kernel_size, padding="same"):
    """The number of zero rows/columns added on each side.

    ``"same"`` keeps the spatial size (K // 2 for an odd K), ``"valid"`` adds
    none, and an integer is taken as it is.

    >>> resolve_padding(3), resolve_padding(7, "valid"), resolve_padding(3, 2)
    (1, 0, 2)
    """
    if not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size!r}.")
    if padding == "same":
        if kernel_size % 2 == 0:
            raise ValueError(f"'same' padding needs an odd kernel_size (1, 3, 5, 7, ...), got {kernel_size}.")
        return kernel_size // 2
    if padding == "valid":
        return 0
    if isinstance(padding, int) and padding >= 0:
        return padding
    raise ValueError(f"padding must be 'same', 'valid' or a non-negative integer, got {padding!r}.")


def conv_output_size(size, kernel_size, padding):
    """Output height (or width) of a stride-1 convolution: size + 2p - K + 1."""
    return size + 2 * padding - kernel_size + 1


def output_hw(x_shape, kernel_size, pad):
    """(Ho, Wo) of a stride-1 convolution of an (N, H, W, C) input, or a clear error when the kernel does not fit."""
    N, H, W, C = x_shape
    Ho = conv_output_size(H, kernel_size, pad)
    Wo = conv_output_size(W, kernel_size, pad)
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"a {kernel_size}x{kernel_size} kernel with padding {pad} does not fit "
            f"an input of {H}x{W} pixels; use a larger input or more padding."
        )
    return Ho, Wo


def im2col(x, kernel_size=3, padding="same"):
    """Copy every KxK patch of ``x`` into one row of a matrix.

    x: (N, H, W, C). Returns cols: (N*Ho*Wo, KH*KW*C), row ``(n, h, w)`` holding
    the patch whose top-left corner is (h, w) in the zero-padded input, ordered
    (kh, kw, c) to match HWIO weights ``W.reshape(KH*KW*C, F)``.

    >>> import numpy as np
    >>> im2col(np.arange(4.0).reshape(1, 2, 2, 1), kernel_size=1).ravel()
    array([0., 1., 2., 3.])
    """
    xp = get_array_module(x)
    pad = resolve_padding(kernel_size, padding)
    N, H, W, C = x.shape
    K = kernel_size
    Ho, Wo = output_hw(x.shape, K, pad)
    x_pad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # (N, H+2p, W+2p, C)
    # [part im2col] hint: fill cols (N, Ho, Wo, K, K, C) with one slice copy per kernel tap (i, j): which block of
    # x_pad does tap (i, j) of every window read?
    ### BEGIN SOLUTION
    cols = xp.empty((N, Ho, Wo, K, K, C), dtype=x.dtype)
    for i in range(K):
        for j in range(K):
            # tap (i, j) of every patch is the padded input shifted by (i, j)
            cols[:, :, :, i, j, :] = x_pad[:, i:i + Ho, j:j + Wo, :]
    ### END SOLUTION
    return cols.reshape(N * Ho * Wo, K * K * C)  # (N, Ho, Wo, KH, KW, C) -> (N*Ho*Wo, KH*KW*C)


def col2im(cols, x_shape, kernel_size=3, padding="same"):
    """Add every patch row of ``cols`` back onto the input pixels it came from.

    The adjoint of :func:`im2col`: ``<im2col(x), y> == <x, col2im(y, x.shape)>``.
    cols: (N*Ho*Wo, KH*KW*C); returns dx: x_shape = (N, H, W, C).
    A pixel that belongs to several patches receives the sum of their values.
    """
    xp = get_array_module(cols)
    pad = resolve_padding(kernel_size, padding)
    N, H, W, C = x_shape
    K = kernel_size
    Ho, Wo = output_hw(x_shape, K, pad)
    cols = cols.reshape(N, Ho, Wo, K, K, C)  # (N*Ho*Wo, KH*KW*C) -> (N, Ho, Wo, KH, KW, C)
    # [part im2col] hint: the adjoint of im2col: each entry of cols is added back onto the pixel it was copied from,
    # one slice per tap; then drop the padding
    ### BEGIN SOLUTION
    dx_pad = xp.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=cols.dtype)
    for i in range(K):
        for j in range(K):
            dx_pad[:, i:i + Ho, j:j + Wo, :] += cols[:, :, :, i, j, :]
    ### END SOLUTION
    return dx_pad[:, pad:pad + H, pad:pad + W, :]
