import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg.im2col import col2im, im2col, resolve_padding

shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4))
kernels = st.sampled_from([1, 3, 5, 7])
paddings = st.sampled_from(["same", "valid", 0, 1, 2])


def naive_patches(x, K, pad):
    """Row (n, h, w) = the flattened (K, K, C) patch at (h, w) of the padded input."""
    N, H, W, C = x.shape
    x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho, Wo = H + 2 * pad - K + 1, W + 2 * pad - K + 1
    return np.array([x_pad[n, h:h + K, w:w + K, :].ravel()
                     for n in range(N) for h in range(Ho) for w in range(Wo)]).reshape(N * Ho * Wo, K * K * C)


def fits(shape, K, pad):
    return shape[1] + 2 * pad >= K and shape[2] + 2 * pad >= K


@given(shapes, kernels, paddings, st.integers(0, 2**32 - 1))
def test_im2col_copies_every_patch(shape, K, padding, seed):
    pad = resolve_padding(K, padding)
    if not fits(shape, K, pad):
        with pytest.raises(ValueError, match="does not fit"):
            im2col(np.zeros(shape), K, padding)
        return
    x = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_array_equal(im2col(x, K, padding), naive_patches(x, K, pad))


@given(shapes, kernels, paddings, st.integers(0, 2**32 - 1))
def test_col2im_is_the_adjoint_of_im2col(shape, K, padding, seed):
    pad = resolve_padding(K, padding)
    if not fits(shape, K, pad):
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cols = im2col(x, K, padding)
    y = rng.standard_normal(cols.shape)
    dx = col2im(y, shape, K, padding)
    assert dx.shape == shape
    # <im2col(x), y> == <x, col2im(y)>
    assert np.vdot(cols, y) == pytest.approx(np.vdot(x, dx), rel=1e-12, abs=1e-12)


def test_float32_stays_float32(xp):
    x = xp.ones((2, 4, 4, 3), dtype=xp.float32)
    cols = im2col(x)
    assert cols.dtype == xp.float32 and cols.shape == (32, 27)
    assert col2im(cols, x.shape).dtype == xp.float32


def test_same_padding_counts_overlaps(xp):
    # every interior pixel of a 3x3 "same" conv belongs to 9 patches, a corner to 4
    x = xp.ones((1, 4, 4, 1))
    counts = col2im(im2col(x), x.shape)[0, :, :, 0]
    assert float(counts[1, 1]) == 9 and float(counts[0, 0]) == 4 and float(counts[0, 1]) == 6


@pytest.mark.parametrize("K, padding", [(2, "same"), (0, "same"), (3, "full"), (3, -1)])
def test_bad_kernel_or_padding_is_refused(K, padding):
    with pytest.raises(ValueError):
        im2col(np.zeros((1, 4, 4, 1)), K, padding)
