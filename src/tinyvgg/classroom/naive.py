"""Slow, obviously-correct loop versions of im2col, convolution and max-pooling.

They follow the definitions pixel by pixel, with no tricks, so they serve as
the oracle the fast im2col/matmul kernels are tested against, as the grader's
references, and as the starting point of the convolution lesson (and its timing
comparison). NumPy only, and nothing else imported: the grader copies this file
as it is. Shapes as in :mod:`tinyvgg.layers` (NHWC, HWIO weights); ``pad`` is the
number of zero rows and columns on each side, ``stride`` the step between windows and
``dilation`` the step between a window's taps (both 1 in VGG).
"""
import numpy as np


def output_size(size, K, pad, stride=1, dilation=1):
    """The number of window positions along one axis, counted one by one: the window of output o
    reads pixels stride*o + dilation*i (i < K) of the padded axis, and all of them must exist."""
    count = 0
    while stride * count + dilation * (K - 1) < size + 2 * pad:
        count += 1
    return count


def window(x_pad, n, h, w, K, stride=1, dilation=1):
    """The (K, K, C) patch of output (h, w): x_pad[n, stride*h + dilation*i, stride*w + dilation*j, :]."""
    rows = [stride * h + dilation * i for i in range(K)]
    cols = [stride * w + dilation * j for j in range(K)]
    return x_pad[n][np.ix_(rows, cols)]


def im2col(x, K, pad, stride=1, dilation=1):
    """cols[(n, h, w), (i, j, c)] = x_pad[n, s*h + d*i, s*w + d*j, c]: one row per output pixel, one patch per row."""
    N, H, W, C = x.shape
    x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho, Wo = output_size(H, K, pad, stride, dilation), output_size(W, K, pad, stride, dilation)
    rows = [window(x_pad, n, h, w, K, stride, dilation).ravel()
            for n in range(N) for h in range(Ho) for w in range(Wo)]
    return np.array(rows, dtype=x.dtype).reshape(N * Ho * Wo, K * K * C)


def col2im(cols, x_shape, K, pad, stride=1, dilation=1):
    """The adjoint of :func:`im2col`: every row's values added back onto the pixels of its patch."""
    N, H, W, C = x_shape
    Ho, Wo = output_size(H, K, pad, stride, dilation), output_size(W, K, pad, stride, dilation)
    dx_pad = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=cols.dtype)
    row = 0
    for n in range(N):
        for h in range(Ho):
            for w in range(Wo):
                patch = cols[row].reshape(K, K, C)
                for i in range(K):
                    for j in range(K):
                        dx_pad[n, stride * h + dilation * i, stride * w + dilation * j, :] += patch[i, j]
                row += 1
    return dx_pad[:, pad:pad + H, pad:pad + W, :]


def conv2d_forward(x, W, b, pad, stride=1, dilation=1):
    """out[n, h, w, f] = b[f] + sum_{i, j, c} x_pad[n, s*h + d*i, s*w + d*j, c] * W[i, j, c, f]."""
    N, H, Wd, C = x.shape
    K, _, _, F = W.shape
    x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho, Wo = output_size(H, K, pad, stride, dilation), output_size(Wd, K, pad, stride, dilation)
    out = np.zeros((N, Ho, Wo, F), dtype=x.dtype)
    for n in range(N):
        for h in range(Ho):
            for w in range(Wo):
                patch = window(x_pad, n, h, w, K, stride, dilation)
                for f in range(F):
                    out[n, h, w, f] = b[f] + np.sum(patch * W[:, :, :, f])
    return out


def conv2d_backward(x, W, dout, pad, stride=1, dilation=1):
    """(dx, dW, db): each output gradient flows back to the input patch and weights that made it."""
    N, H, Wd, C = x.shape
    K, _, _, F = W.shape
    x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dx_pad = np.zeros_like(x_pad)
    dW = np.zeros_like(W)
    _, Ho, Wo, _ = dout.shape
    for n in range(N):
        for h in range(Ho):
            for w in range(Wo):
                rows = [stride * h + dilation * i for i in range(K)]   # the window's pixels, as in window()
                cols = [stride * w + dilation * j for j in range(K)]
                for f in range(F):
                    g = dout[n, h, w, f]
                    dW[:, :, :, f] += g * window(x_pad, n, h, w, K, stride, dilation)
                    dx_pad[n][np.ix_(rows, cols)] += g * W[:, :, :, f]      # distinct pixels: += adds each once
    dx = dx_pad[:, pad:pad + H, pad:pad + Wd, :]
    return dx, dW, dout.sum(axis=(0, 1, 2))


def maxpool_forward(x):
    """out[n, h, w, c] = max of the 2x2 window x[n, 2h:2h+2, 2w:2w+2, c] (odd edges dropped)."""
    N, H, W, C = x.shape
    out = np.zeros((N, H // 2, W // 2, C), dtype=x.dtype)
    for n in range(N):
        for h in range(H // 2):
            for w in range(W // 2):
                for c in range(C):
                    out[n, h, w, c] = x[n, 2 * h:2 * h + 2, 2 * w:2 * w + 2, c].max()
    return out


def maxpool_backward(x, dout):
    """dx: each dout goes to the first position (row-major) of its window's maximum."""
    N, H, W, C = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for h in range(H // 2):
            for w in range(W // 2):
                for c in range(C):
                    window = x[n, 2 * h:2 * h + 2, 2 * w:2 * w + 2, c]
                    i, j = np.unravel_index(np.argmax(window), (2, 2))
                    dx[n, 2 * h + i, 2 * w + j, c] += dout[n, h, w, c]
    return dx
