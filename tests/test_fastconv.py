"""The fast layers give their reference class's results (the reference is tested against loops),
and the kernels under them cover every image and row once, whatever the block size."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg import backend, fastconv
from tinyvgg.fastconv import (FAST_CLASSES, FastBatchNorm2D, FastConv2D, FastDense, FastImageCentering, FastMaxPool2D,
                              FastReLU)
from tinyvgg.gradcheck import check_layer
from tinyvgg.im2col import im2col
from tinyvgg.layers import BatchNorm2D, Conv2D, Dense, ImageCentering, MaxPool2D, ReLU

seeds = st.integers(0, 2**32 - 1)
TIGHT = dict(rtol=1e-12, atol=1e-12)


REFERENCE_OF = {fast: reference for reference, fast in FAST_CLASSES.items()}
F64 = {"dtype": np.float64}
CASES = {  # fast class -> (constructor arguments, keyword arguments, input shape)
    FastConv2D: ((4, 6, 3), F64, (3, 7, 6, 4)),
    FastMaxPool2D: ((), {}, (3, 7, 6, 4)),
    FastBatchNorm2D: ((4,), F64, (3, 5, 6, 4)),
    FastDense: ((5, 3), F64, (4, 5)),
    FastReLU: ((), {}, (3, 5, 6, 4)),
    FastImageCentering: ((), {}, (3, 8, 6, 3)),  # 48 pixels an image: rows of 16 pixels (see pixels_per_row)
}


def fast_and_reference(fast_class, rng):
    """A fast layer of ``CASES`` and its reference class, with the same random parameters."""
    args, kwargs, _ = CASES[fast_class]
    fast, ref = fast_class(*args, **kwargs), REFERENCE_OF[fast_class](*args, **kwargs)
    for name, value in fast.params.items():
        fast.params[name] = rng.uniform(0.5, 1.5, value.shape)  # positive: a fair gamma, a non-zero bias
        ref.params[name] = fast.params[name].copy()
    return fast, ref


def test_every_fast_class_is_a_subclass_of_its_reference():
    assert set(FAST_CLASSES) == {Conv2D, MaxPool2D, BatchNorm2D, Dense, ReLU, ImageCentering}
    assert all(issubclass(fast, ref) for ref, fast in FAST_CLASSES.items())


@pytest.mark.parametrize("fast_class", list(CASES), ids=lambda c: c.__name__)
@pytest.mark.parametrize("train", [True, False], ids=["trainable", "frozen"])
def test_each_fast_class_equals_its_reference_forward_and_backward(xp, backend_name, fast_class, train):
    """Forward, dx, every gradient and the running statistics, on every backend present."""
    rng = np.random.default_rng(7)
    fast, ref = fast_and_reference(fast_class, rng)
    shape = CASES[fast_class][2]
    fast.to(backend_name)
    ref.to(backend_name)
    x = rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape) - 0.5  # distinct: no ties, no 0
    for layer in (fast, ref):
        layer.trainable = train  # frozen: batch normalization's running statistics and its simple backward
    out_ref = ref.forward(xp.asarray(x), train=True)
    out = fast.forward(xp.asarray(x), train=True)  # FastReLU writes into its input: each gets its own copy
    np.testing.assert_allclose(backend.to_host(out), backend.to_host(out_ref), **TIGHT)
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx = fast.backward(dout.copy())
    np.testing.assert_allclose(backend.to_host(dx), backend.to_host(ref.backward(dout.copy())), **TIGHT)
    assert set(fast.grads) == set(ref.grads)
    for name in ref.grads:
        np.testing.assert_allclose(backend.to_host(fast.grads[name]), backend.to_host(ref.grads[name]), **TIGHT)
    for name in ref.buffers:  # running statistics moved the same way
        np.testing.assert_allclose(backend.to_host(fast.buffers[name]), backend.to_host(ref.buffers[name]), **TIGHT)


@pytest.mark.parametrize("fast_class", [FastConv2D, FastDense], ids=lambda c: c.__name__)
def test_the_first_layer_skips_dx_and_still_gives_dW(fast_class):
    rng = np.random.default_rng(3)
    fast, ref = fast_and_reference(fast_class, rng)
    x = rng.standard_normal(CASES[fast_class][2])
    out = fast.forward(x, train=True)
    ref.forward(x, train=True)
    dout = rng.standard_normal(out.shape)
    fast.input_grad = ref.input_grad = False
    assert fast.backward(dout) is None and ref.backward(dout) is None
    np.testing.assert_allclose(fast.grads["W"], ref.grads["W"], **TIGHT)


@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 5), st.sampled_from([1, 3, 5]),
       st.integers(0, 3), seeds)
def test_padded_im2col_equals_the_reference(N, H, W, C, K, pad, seed):
    if H + 2 * pad < K or W + 2 * pad < K:
        return
    x = np.random.default_rng(seed).standard_normal((N, H, W, C))
    x_pad = fastconv.pad_into(x, pad, "test")
    np.testing.assert_array_equal(x_pad, np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))))
    np.testing.assert_array_equal(fastconv.im2col_padded(x_pad, K, "test-cols"), im2col(x, K, pad))


def test_scratch_buffers_are_reused_and_stale_borders_never_leak():
    big = fastconv.pad_into(np.full((2, 5, 5, 3), 7.0), 1, "t")
    small = fastconv.pad_into(np.ones((1, 2, 2, 3)), 2, "t")  # reuses the buffer of `big`
    assert np.shares_memory(big, small)
    assert small.sum() == 12 and small[:, 2:4, 2:4].min() == 1
    fastconv.release_scratch()


@pytest.mark.parametrize("K, padding", [(3, "same"), (1, "same"), (5, "same"), (3, "valid"), (5, 1),
                                        (2, "valid"), (4, 1)])  # even kernels: dense layers turned into convs
def test_fast_convolution_equals_the_reference(K, padding):
    rng = np.random.default_rng(0)
    fast = FastConv2D(4, 6, K, padding=padding, rng=rng, dtype=np.float64)
    ref = Conv2D(4, 6, K, padding=padding, rng=rng, dtype=np.float64)
    ref.params = {k: v.copy() for k, v in fast.params.items()}
    ref.params["b"] = fast.params["b"] = rng.standard_normal(6)
    x = rng.standard_normal((3, 7, 6, 4))
    out = fast.forward(x, train=True)
    np.testing.assert_allclose(out, ref.forward(x, train=True), **TIGHT)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(fast.backward(dout), ref.backward(dout), **TIGHT)
    for name in ("W", "b"):
        np.testing.assert_allclose(fast.grads[name], ref.grads[name], **TIGHT)


def test_fast_pool_keeps_only_references_to_existing_arrays():
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
    pool = FastMaxPool2D()
    out = pool.forward(x, train=True)
    assert pool.cache[0] is x and pool.cache[1] is out
    np.testing.assert_array_equal(out, MaxPool2D().forward(x))


def test_blocks_cover_every_image_and_row_once_within_the_byte_limit():
    for N, rows, row_bytes, limit in [(5, 4, 10, 80), (3, 7, 10, 30), (2, 5, 10, 5), (4, 3, 1, None), (1, 9, 8, 72)]:
        parts = fastconv.blocks(N, rows, row_bytes, limit)
        covered = [(image, row) for images, band in parts for image in range(N)[images] for row in range(rows)[band]]
        assert sorted(covered) == [(image, row) for image in range(N) for row in range(rows)]
        sizes = [len(range(N)[images]) * len(range(rows)[band]) for images, band in parts]
        assert limit is None or max(sizes) * row_bytes <= max(limit, row_bytes)  # one row is the least a block holds
        assert max(sizes) - min(sizes) < max(sizes) / 2 + 1  # no tiny last block
        assert all(band == slice(0, rows) or images.stop - images.start == 1 for images, band in parts)


@pytest.mark.parametrize("K, padding, limit_rows", [(3, "same", 1), (3, "same", 2), (5, 1, 3), (2, "valid", 2),
                                                    (3, "valid", 4), (1, "same", 1)])
def test_convolution_in_row_bands_equals_the_reference(K, padding, limit_rows):
    rng = np.random.default_rng(K + limit_rows)
    ref = Conv2D(4, 6, K, padding=padding, rng=rng, dtype=np.float64)
    ref.params["b"] = rng.standard_normal(6)
    W, b, pad = ref.params["W"], ref.params["b"], ref.pad
    x = rng.standard_normal((2, 7, 6, 4))                            # 7 rows: bands of 1-4 rows, some uneven
    out = ref.forward(x, train=True)
    limit = limit_rows * out.shape[2] * K * K * 4 * 8                # `limit_rows` rows of the forward's columns
    np.testing.assert_allclose(fastconv.conv_forward(x, W, b, pad, np.empty_like(out), limit), out, **TIGHT)
    dout = rng.standard_normal(out.shape)
    dx_ref = ref.backward(dout)
    for input_grad in (True, False):
        dx, dW, db = fastconv.conv_backward(x, W, dout, pad, limit, input_grad)
        if input_grad:
            np.testing.assert_allclose(dx, dx_ref, **TIGHT)
        else:
            assert dx is None
        np.testing.assert_allclose(dW, ref.grads["W"], **TIGHT)
        np.testing.assert_allclose(db, ref.grads["b"], **TIGHT)


@pytest.mark.parametrize("layer", [FastConv2D(3, 4), FastMaxPool2D()], ids=["conv", "pool"])
def test_an_empty_batch_gives_empty_results(layer):
    out = layer.forward(np.zeros((0, 6, 6, 3), np.float32), train=True)
    assert out.shape[0] == 0
    assert layer.backward(np.zeros(out.shape, np.float32)).shape == (0, 6, 6, 3)


@pytest.mark.parametrize("K, padding", [(3, "same"), (2, "valid")])
def test_convolution_in_row_bands_passes_the_gradient_check(K, padding, monkeypatch):
    rng = np.random.default_rng(K)
    layer = FastConv2D(3, 4, K, padding=padding, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 5, 4, 3))
    monkeypatch.setattr(fastconv, "CPU_CHUNK_BYTES", 2 * 4 * K * K * 4 * 8)  # bands of two rows
    assert len(fastconv.blocks(2, 5, 4 * K * K * 4 * 8, fastconv.CPU_CHUNK_BYTES)) > 2
    assert max(check_layer(layer, x).values()) < 1e-6


@pytest.mark.parametrize("limit_rows", [1, 2, 3, 7, 100])
def test_pool_backward_in_blocks_equals_the_loops(limit_rows):
    from tinyvgg.classroom import naive
    rng = np.random.default_rng(limit_rows)
    x = rng.integers(0, 3, (5, 7, 6, 3)).astype(np.float64)  # ties, an odd row, 5 images: uneven blocks
    pool = FastMaxPool2D()
    out = pool.forward(x, train=True)
    dout = rng.standard_normal(out.shape)
    dx = fastconv.maxpool_backward(x, out, dout, max_bytes=limit_rows * 2 * x[0, 0].nbytes)  # bands or images
    np.testing.assert_array_equal(dx, naive.maxpool_backward(x, dout))


@pytest.mark.parametrize("conv", [Conv2D, FastConv2D])
def test_even_valid_kernels_pass_the_gradient_check(conv):
    rng = np.random.default_rng(1)
    layer = conv(3, 4, kernel_size=2, padding="valid", rng=rng, dtype=np.float64)
    assert max(check_layer(layer, rng.standard_normal((2, 5, 4, 3))).values()) < 1e-6


@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3, 4, 16, 127, 128, 130]),
       st.booleans(), seeds)
def test_wide_rows_give_the_reference_numbers_at_any_shape(N, H, W, C, trainable, seed):
    """Batch normalization and the image centering on wide rows (k pixels a row, k a power of two dividing the
    pixels, none from 128 channels on): forward, dx and the parameters' gradients as the reference computes them."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, C)) * 3 + 1
    dout = rng.standard_normal(x.shape)
    bn, bn_ref = FastBatchNorm2D(C, dtype=np.float64), BatchNorm2D(C, dtype=np.float64)
    for name in bn.params:
        bn.params[name] = bn_ref.params[name] = rng.uniform(0.5, 1.5, C)
    bn.trainable = bn_ref.trainable = trainable
    close = dict(rtol=1e-11, atol=1e-11)  # other summation orders than the reference's, in float64
    for fast, ref in ((bn, bn_ref), (FastImageCentering(), ImageCentering())):
        np.testing.assert_allclose(fast.forward(x.copy(), train=True), ref.forward(x.copy(), train=True), **close)
        np.testing.assert_allclose(fast.backward(dout.copy()), ref.backward(dout.copy()), **close)
        for name in ref.grads:
            np.testing.assert_allclose(fast.grads[name], ref.grads[name], **close)
    np.testing.assert_allclose(bn.buffers["running_var"], bn_ref.buffers["running_var"], **close)


@pytest.mark.parametrize("C, pixels, k", [(3, 1024, 256), (16, 1024, 32), (16, 48, 16), (64, 96, 8), (16, 90, 2),
                                          (16, 7, 1), (128, 1024, 1)])
def test_a_wide_row_holds_at_least_512_values_where_the_pixels_allow(C, pixels, k):
    assert fastconv.pixels_per_row(pixels, C, np) == k


@pytest.mark.parametrize("layer, shape", [(FastBatchNorm2D(4, dtype=np.float64), (2, 8, 8, 4)),   # 128 pixels a row
                                          (FastImageCentering(), (2, 8, 8, 3))],                  # 64 pixels a row
                         ids=["batchnorm", "centering"])
def test_wide_row_layers_pass_the_gradient_check(layer, shape):
    """dL/dx and every parameter's gradient against central differences, in float64, with rows of many pixels."""
    assert fastconv.pixels_per_row(shape[1] * shape[2] * (shape[0] if layer.params else 1), shape[3], np) >= 64
    x = np.random.default_rng(4).standard_normal(shape)
    assert max(check_layer(layer, x).values()) < 1e-6
