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

A *stride* s (the window moves s pixels at a time) and a *dilation* d (the K taps of the
window sit d pixels apart, so it spans d*(K-1) + 1 pixels) are the general case,
:func:`im2col_strided` and :func:`col2im_strided` (lesson 20); ``im2col`` and ``col2im``
hand a stride or dilation other than 1 to them. VGG uses stride 1 and dilation 1 throughout.
"""
from .backend import get_array_module


def resolve_padding(kernel_size, padding="same", dilation=1):
    """The number of zero rows/columns added on each side.

    ``"same"`` keeps the spatial size at stride 1: d*(K-1)/2 for an odd K (K // 2
    without dilation). At stride s it gives ceil(H / s) outputs, the stride-1 "same"
    output taken at every s-th row and column from the first. ``"valid"`` adds none,
    and an integer is taken as it is.

    >>> resolve_padding(3), resolve_padding(7, "valid"), resolve_padding(3, 2), resolve_padding(3, dilation=2)
    (1, 0, 2, 2)
    """
    if not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size!r}.")
    _check_step("dilation", dilation)
    if padding == "same":
        if kernel_size % 2 == 0:
            raise ValueError(f"'same' padding needs an odd kernel_size (1, 3, 5, 7, ...), got {kernel_size}.")
        return dilation * (kernel_size - 1) // 2
    if padding == "valid":
        return 0
    if isinstance(padding, int) and padding >= 0:
        return padding
    raise ValueError(f"padding must be 'same', 'valid' or a non-negative integer, got {padding!r}.")


def _check_step(name, value):
    """A stride or a dilation must be a positive integer (a clear error otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (1 for VGG's convolutions), got {value!r}.")


def conv_output_size(size, kernel_size, padding, stride=1, dilation=1):
    """Output height (or width) of a convolution: floor((size + 2p - d*(K-1) - 1) / s) + 1.

    The window spans d*(K-1) + 1 pixels; its first position starts at 0, the last at most at
    size + 2p - d*(K-1) - 1, and every s-th start is taken. At s = d = 1: size + 2p - K + 1.

    >>> conv_output_size(32, 3, 1), conv_output_size(32, 3, 1, stride=2), conv_output_size(32, 3, 2, dilation=2)
    (32, 16, 32)
    """
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def output_hw(x_shape, kernel_size, pad, stride=1, dilation=1):
    """(Ho, Wo) of a convolution of an (N, H, W, C) input, or a clear error when the kernel does not fit."""
    N, H, W, C = x_shape
    Ho = conv_output_size(H, kernel_size, pad, stride, dilation)
    Wo = conv_output_size(W, kernel_size, pad, stride, dilation)
    if Ho < 1 or Wo < 1:
        spans = f" (dilated by {dilation}, it spans {dilation * (kernel_size - 1) + 1} pixels)" if dilation > 1 else ""
        raise ValueError(
            f"a {kernel_size}x{kernel_size} kernel{spans} with padding {pad} does not fit "
            f"an input of {H}x{W} pixels; use a larger input or more padding."
        )
    return Ho, Wo


def im2col(x, kernel_size=3, padding="same", stride=1, dilation=1):
    """Copy every KxK patch of ``x`` into one row of a matrix.

    x: (N, H, W, C). Returns cols: (N*Ho*Wo, KH*KW*C), row ``(n, h, w)`` holding
    the patch whose top-left corner is (h, w) in the zero-padded input, ordered
    (kh, kw, c) to match HWIO weights ``W.reshape(KH*KW*C, F)``. A stride or a
    dilation other than 1 goes to :func:`im2col_strided`.

    >>> import numpy as np
    >>> im2col(np.arange(4.0).reshape(1, 2, 2, 1), kernel_size=1).ravel()
    array([0., 1., 2., 3.])
    """
    if stride != 1 or dilation != 1:
        return im2col_strided(x, kernel_size, padding, stride, dilation)
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


def col2im(cols, x_shape, kernel_size=3, padding="same", stride=1, dilation=1):
    """Add every patch row of ``cols`` back onto the input pixels it came from.

    The adjoint of :func:`im2col`: ``<im2col(x), y> == <x, col2im(y, x.shape)>``.
    cols: (N*Ho*Wo, KH*KW*C); returns dx: x_shape = (N, H, W, C).
    A pixel that belongs to several patches receives the sum of their values.
    A stride or a dilation other than 1 goes to :func:`col2im_strided`.
    """
    if stride != 1 or dilation != 1:
        return col2im_strided(cols, x_shape, kernel_size, padding, stride, dilation)
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


def im2col_strided(x, kernel_size=3, padding="same", stride=1, dilation=1):
    """:func:`im2col` with a stride s and a dilation d (lesson 20).

    cols[(n, h, w), (i, j, c)] = x_pad[n, s*h + d*i, s*w + d*j, c]: the window of output
    (h, w) starts at (s*h, s*w) in the zero-padded input, and its taps sit d pixels apart.
    x: (N, H, W, C) -> cols: (N*Ho*Wo, KH*KW*C), Ho = floor((H + 2p - d*(K-1) - 1) / s) + 1
    (:func:`conv_output_size`). At s = d = 1 it is :func:`im2col`.

    >>> import numpy as np
    >>> x = np.arange(25.0).reshape(1, 5, 5, 1)          # pixel (r, c) holds 5r + c
    >>> im2col_strided(x, 2, padding=0, stride=2, dilation=2)[:2]  # outputs (0, 0) and (0, 1)
    array([[ 0.,  2., 10., 12.],
           [ 2.,  4., 12., 14.]])
    """
    xp = get_array_module(x)
    _check_step("stride", stride)
    pad = resolve_padding(kernel_size, padding, dilation)
    N, H, W, C = x.shape
    K, s, d = kernel_size, stride, dilation
    Ho, Wo = output_hw(x.shape, K, pad, s, d)
    x_pad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # (N, H+2p, W+2p, C)
    # [part strided] hint: still one slice copy per tap (i, j); where does tap (i, j) of the first window
    # sit now, and how far apart are the pixels it reads for neighbouring outputs? (a slice can take a step)
    ### BEGIN SOLUTION
    cols = xp.empty((N, Ho, Wo, K, K, C), dtype=x.dtype)
    for i in range(K):
        for j in range(K):
            # tap (i, j) of output (h, w) reads x_pad[s*h + d*i, s*w + d*j]: Ho rows from d*i, s apart
            cols[:, :, :, i, j, :] = x_pad[:, d * i:d * i + s * (Ho - 1) + 1:s, d * j:d * j + s * (Wo - 1) + 1:s, :]
    ### END SOLUTION
    return cols.reshape(N * Ho * Wo, K * K * C)  # (N, Ho, Wo, KH, KW, C) -> (N*Ho*Wo, KH*KW*C)


def col2im_strided(cols, x_shape, kernel_size=3, padding="same", stride=1, dilation=1):
    """The adjoint of :func:`im2col_strided`: every entry of ``cols`` added back onto the pixel it was
    copied from, ``<im2col_strided(x, ...), y> == <x, col2im_strided(y, x.shape, ...)>``.

    cols: (N*Ho*Wo, KH*KW*C); returns dx: x_shape = (N, H, W, C). With a stride larger than the
    window's span some pixels are read by no window: their gradient is 0.
    """
    xp = get_array_module(cols)
    _check_step("stride", stride)
    pad = resolve_padding(kernel_size, padding, dilation)
    N, H, W, C = x_shape
    K, s, d = kernel_size, stride, dilation
    Ho, Wo = output_hw(x_shape, K, pad, s, d)
    cols = cols.reshape(N, Ho, Wo, K, K, C)  # (N*Ho*Wo, KH*KW*C) -> (N, Ho, Wo, KH, KW, C)
    # [part strided] hint: im2col_strided's slices, added to instead of read from; then drop the padding
    ### BEGIN SOLUTION
    dx_pad = xp.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=cols.dtype)
    for i in range(K):
        for j in range(K):
            # within one tap the Ho*Wo pixels are distinct (s apart), so += adds each entry once
            dx_pad[:, d * i:d * i + s * (Ho - 1) + 1:s, d * j:d * j + s * (Wo - 1) + 1:s, :] += cols[:, :, :, i, j, :]
    ### END SOLUTION
    return dx_pad[:, pad:pad + H, pad:pad + W, :]
