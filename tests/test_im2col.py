import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg.classroom import naive
from tinyvgg.fastconv import FastConv2D
from tinyvgg.gradcheck import check_layer
from tinyvgg.im2col import col2im, col2im_strided, conv_output_size, im2col, im2col_strided, resolve_padding
from tinyvgg.layers import Conv2D

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


# ---- stride and dilation (lesson 20): im2col_strided against the loops of classroom/naive.py ----

steps = st.integers(1, 3)
small_kernels = st.sampled_from([1, 2, 3])


def strided_fits(shape, K, pad, d):
    return min(shape[1], shape[2]) + 2 * pad >= d * (K - 1) + 1


@given(shapes, small_kernels, st.sampled_from(["valid", 0, 1, 2]), steps, steps, st.integers(0, 2**32 - 1))
def test_im2col_strided_copies_every_patch(shape, K, padding, stride, dilation, seed):
    pad = resolve_padding(K, padding, dilation)
    if not strided_fits(shape, K, pad, dilation):
        with pytest.raises(ValueError, match="does not fit"):
            im2col_strided(np.zeros(shape), K, padding, stride, dilation)
        return
    x = np.random.default_rng(seed).standard_normal(shape)
    cols = im2col_strided(x, K, padding, stride, dilation)
    np.testing.assert_array_equal(cols, naive.im2col(x, K, pad, stride, dilation))
    np.testing.assert_array_equal(im2col(x, K, padding, stride, dilation), cols)  # im2col hands it over
    Ho = conv_output_size(shape[1], K, pad, stride, dilation)
    assert Ho == naive.output_size(shape[1], K, pad, stride, dilation)  # the formula, against counting


@given(shapes, small_kernels, st.sampled_from(["valid", 0, 1, 2]), steps, steps, st.integers(0, 2**32 - 1))
def test_col2im_strided_is_the_adjoint_and_matches_the_loops(shape, K, padding, stride, dilation, seed):
    pad = resolve_padding(K, padding, dilation)
    if not strided_fits(shape, K, pad, dilation):
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cols = im2col_strided(x, K, padding, stride, dilation)
    y = rng.standard_normal(cols.shape)
    dx = col2im_strided(y, shape, K, padding, stride, dilation)
    np.testing.assert_allclose(dx, naive.col2im(y, shape, K, pad, stride, dilation), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(col2im(y, shape, K, padding, stride, dilation), dx)
    # <im2col(x), y> == <x, col2im(y)>
    assert np.vdot(cols, y) == pytest.approx(np.vdot(x, dx), rel=1e-12, abs=1e-12)


@given(shapes, st.sampled_from([1, 3, 5]), paddings, st.integers(0, 2**32 - 1))
def test_stride_1_dilation_1_is_the_plain_im2col(shape, K, padding, seed):
    pad = resolve_padding(K, padding)
    if not fits(shape, K, pad):
        return
    x = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_array_equal(im2col_strided(x, K, padding), im2col(x, K, padding))


def test_the_output_size_formula():
    # floor((H + 2p - d(K-1) - 1) / s) + 1, for the cases lesson 20 works through
    assert [conv_output_size(H, K, p, s, d) for H, K, p, s, d in
            ((32, 3, 1, 1, 1), (32, 3, 1, 2, 1), (7, 3, 0, 2, 1), (224, 7, 3, 2, 1), (32, 3, 2, 1, 2),
             (10, 3, 0, 1, 4), (9, 1, 0, 2, 1))] == [32, 16, 3, 112, 32, 2, 5]


@given(st.integers(1, 9), st.sampled_from([1, 3, 5]), steps, steps)
def test_same_padding_at_stride_s_gives_ceil_h_over_s_and_keeps_the_size_at_stride_1(H, K, stride, dilation):
    pad = resolve_padding(K, "same", dilation)
    assert conv_output_size(H, K, pad, stride, dilation) == -(-H // stride)


def test_strided_float32_stays_float32_on_every_backend(xp):
    x = xp.ones((2, 7, 6, 3), dtype=xp.float32)
    cols = im2col_strided(x, 3, "same", 2, 2)
    assert cols.dtype == xp.float32 and cols.shape == (2 * 4 * 3, 27)
    dx = col2im_strided(cols, x.shape, 3, "same", 2, 2)
    assert dx.dtype == xp.float32 and dx.shape == x.shape


def test_a_stride_larger_than_the_window_reads_some_pixels_never():
    x = np.ones((1, 7, 7, 1))
    counts = col2im_strided(im2col_strided(x, 2, 0, stride=3), x.shape, 2, 0, stride=3)[0, :, :, 0]
    assert counts[:, 2].sum() == 0 and counts[:, 5].sum() == 0 and counts[6].sum() == 0 and counts[0, 0] == 1


@pytest.mark.parametrize("stride, dilation", [(0, 1), (1, 0), (1.5, 1), (-2, 1)])
def test_a_bad_stride_or_dilation_is_refused(stride, dilation):
    with pytest.raises(ValueError, match="must be a positive integer"):
        im2col(np.zeros((1, 5, 5, 1)), 3, "same", stride, dilation)
    with pytest.raises(ValueError, match="must be a positive integer"):
        Conv2D(1, 1, stride=stride, dilation=dilation)
    with pytest.raises(ValueError, match="must be a positive integer"):
        Conv2D(1, 1, stride=True)  # a flag is not a step


# ---- Conv2D with a stride and a dilation ----

@given(st.integers(1, 2), st.integers(3, 7), st.integers(3, 7), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from([(2, 1), (1, 2), (2, 2), (3, 1)]), st.sampled_from(["same", "valid", 1]),
       st.integers(0, 2**32 - 1))
def test_strided_and_dilated_conv_gradients_in_float64(N, H, W, C, F, steps_, padding, seed):
    stride, dilation = steps_
    rng = np.random.default_rng(seed)
    layer = Conv2D(C, F, 3, padding, rng=rng, dtype=np.float64, stride=stride, dilation=dilation)
    if not strided_fits((N, H, W, C), 3, layer.pad, dilation):
        return
    layer.params["b"] = rng.standard_normal(F)
    errors = check_layer(layer, rng.standard_normal((N, H, W, C)), seed=seed)
    assert set(errors) == {"x", "W", "b"} and max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("stride, dilation", [(2, 1), (1, 2), (2, 2), (3, 2)])
def test_strided_conv_matches_the_loops(rng, stride, dilation):
    layer = Conv2D(3, 4, 3, "same", rng=rng, dtype=np.float64, stride=stride, dilation=dilation)
    layer.params["b"] = rng.standard_normal(4)
    x = rng.standard_normal((2, 8, 7, 3))
    out = layer.forward(x, train=True)
    W, b = layer.params["W"], layer.params["b"]
    np.testing.assert_allclose(out, naive.conv2d_forward(x, W, b, layer.pad, stride, dilation), rtol=1e-12, atol=1e-12)
    assert out.shape[1:] == layer.output_shape(x.shape[1:])
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    for got, want in zip((dx, layer.grads["W"], layer.grads["b"]),
                         naive.conv2d_backward(x, W, dout, layer.pad, stride, dilation)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_stride_s_same_is_the_stride_1_output_at_every_s_th_pixel(rng):
    x = rng.standard_normal((2, 9, 8, 3))
    one = Conv2D(3, 4, 3, rng=rng, dtype=np.float64, dilation=2)
    two = Conv2D(3, 4, 3, dtype=np.float64, stride=2, dilation=2)
    two.params = one.params
    np.testing.assert_allclose(two.forward(x), one.forward(x)[:, ::2, ::2], rtol=1e-12, atol=1e-12)


def test_a_dilated_kernel_is_a_larger_kernel_with_zeros_between_its_taps(rng):
    x = rng.standard_normal((1, 9, 9, 2))
    dilated = Conv2D(2, 3, 3, rng=rng, dtype=np.float64, dilation=2)
    wide = Conv2D(2, 3, 5, dtype=np.float64)
    wide.params = {"W": np.zeros((5, 5, 2, 3)), "b": dilated.params["b"]}
    wide.params["W"][::2, ::2] = dilated.params["W"]
    np.testing.assert_allclose(dilated.forward(x), wide.forward(x), rtol=1e-12, atol=1e-12)


def test_the_fast_conv_refuses_a_stride_or_dilation_with_a_sentence():
    for kwargs in ({"stride": 2}, {"dilation": 2}):
        with pytest.raises(ValueError, match="FastConv2D runs stride 1 and dilation 1 only"):
            FastConv2D(3, 4, **kwargs)
    expected = "Conv2D(3, 4, kernel_size=3, padding='same', stride=2, dilation=3)"
    assert repr(Conv2D(3, 4, stride=2, dilation=3)) == expected
    assert repr(Conv2D(3, 4)) == "Conv2D(3, 4, kernel_size=3, padding='same')"
