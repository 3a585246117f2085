"""The fast kernels give the reference results (the reference is tested against loops)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg import fastconv
from tinyvgg.im2col import im2col
from tinyvgg.layers import Conv2D, MaxPool2D

seeds = st.integers(0, 2**32 - 1)


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
    fast = Conv2D(4, 6, K, padding=padding, rng=rng, dtype=np.float64)
    ref = Conv2D(4, 6, K, padding=padding, rng=rng, dtype=np.float64, fast=False)
    ref.params = {k: v.copy() for k, v in fast.params.items()}
    ref.params["b"] = fast.params["b"] = rng.standard_normal(6)
    x = rng.standard_normal((3, 7, 6, 4))
    out = fast.forward(x, train=True)
    np.testing.assert_allclose(out, ref.forward(x, train=True), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(fast.backward(dout), ref.backward(dout), rtol=1e-12, atol=1e-12)
    for name in ("W", "b"):
        np.testing.assert_allclose(fast.grads[name], ref.grads[name], rtol=1e-12, atol=1e-12)
    assert fast.backward(dout, input_grad=False) is None  # the first layer skips dx
    np.testing.assert_allclose(fast.grads["W"], ref.grads["W"], rtol=1e-12, atol=1e-12)


def test_fast_pool_keeps_only_references_to_existing_arrays():
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
    pool = MaxPool2D()
    out = pool.forward(x, train=True)
    assert pool.cache[0] is x and pool.cache[1] is out
    np.testing.assert_array_equal(out, MaxPool2D(fast=False).forward(x))


@pytest.mark.parametrize("images_per_slice", [1, 2, 5])
def test_pool_backward_in_slices_of_the_batch_equals_the_loops(images_per_slice, monkeypatch):
    from tinyvgg import naive
    rng = np.random.default_rng(images_per_slice)
    x = rng.integers(0, 3, (5, 7, 6, 3)).astype(np.float64)  # ties, an odd row, 5 images: a short last slice
    monkeypatch.setattr(fastconv, "POOL_CHUNK_BYTES", images_per_slice * x[0].nbytes)
    pool = MaxPool2D()
    dout = rng.standard_normal(pool.forward(x, train=True).shape)
    np.testing.assert_array_equal(pool.backward(dout), naive.maxpool_backward(x, dout))


@pytest.mark.parametrize("fast", [True, False])
def test_even_valid_kernels_pass_the_gradient_check(fast):
    from tinyvgg.gradcheck import check_layer
    rng = np.random.default_rng(1)
    layer = Conv2D(3, 4, kernel_size=2, padding="valid", rng=rng, dtype=np.float64, fast=fast)
    assert max(check_layer(layer, rng.standard_normal((2, 5, 4, 3))).values()) < 1e-6
