"""GlobalAveragePool2D (lesson 20): each channel's mean over the image, and its gradient dout / (H*W)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg import backend
from tinyvgg.gradcheck import check_layer, check_model
from tinyvgg.layers import Conv2D, Dense, GlobalAveragePool2D, ReLU, SoftmaxCrossEntropy
from tinyvgg.models import Sequential


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 3), (3, 5, 2, 1)])
def test_gradient_in_float64_on_every_backend(xp, shape):
    x = xp.asarray(np.random.default_rng(sum(shape)).standard_normal(shape))
    errors = check_layer(GlobalAveragePool2D(), x, seed=2)
    assert set(errors) == {"x"} and errors["x"] < 1e-6, errors


@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_forward_is_each_channels_mean_and_backward_spreads_dout_evenly(N, H, W, C, seed):
    rng = np.random.default_rng(seed)
    x, dout = rng.standard_normal((N, H, W, C)), rng.standard_normal((N, C))
    layer = GlobalAveragePool2D()
    out = layer.forward(x, train=True)
    expected = np.array([[sum(x[n, h, w, c] for h in range(H) for w in range(W)) / (H * W) for c in range(C)]
                         for n in range(N)])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dout_before = dout.copy()
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dout, dout_before)  # backward never modifies dout
    assert dx.shape == x.shape
    for h in range(H):
        for w in range(W):
            np.testing.assert_allclose(dx[:, h, w, :], dout / (H * W), rtol=1e-15)


def test_float32_stays_float32_and_numpy_and_cupy_agree(xp, backend_name):
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((2, 5, 3, 4)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    layer = GlobalAveragePool2D()
    out = layer.forward(xp.asarray(x), train=True)
    dx = layer.backward(xp.asarray(dout))
    assert out.dtype == dx.dtype == np.float32 and out.shape == (2, 4) and dx.shape == (2, 5, 3, 4)
    np.testing.assert_allclose(backend.to_host(out), x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(backend.to_host(dx), np.broadcast_to(dout[:, None, None] / 15, x.shape), rtol=1e-6)


def test_no_cache_at_evaluation_and_a_clear_error_for_a_flat_input():
    layer = GlobalAveragePool2D()
    layer.forward(np.zeros((1, 2, 2, 3)))
    assert layer.cache is None and layer.params == {} and layer.output_shape((7, 9, 5)) == (5,)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, H, W, C\), got \(2, 12\)"):
        layer.forward(np.zeros((2, 12)))


def test_a_gap_head_takes_any_image_size_and_passes_the_whole_stack_check(rng):
    f64 = np.float64
    model = Sequential([("conv", Conv2D(3, 4, rng=rng, dtype=f64)), ("relu", ReLU()),
                        ("gap", GlobalAveragePool2D()), ("logits", Dense(4, 3, rng=rng, dtype=f64))])
    for size in (5, 8, 13):
        assert model.forward(np.zeros((2, size, size + 1, 3))).shape == (2, 3)
    x = rng.standard_normal((2, 6, 7, 3))
    assert check_model(model, SoftmaxCrossEntropy(), x, rng.integers(0, 3, 2), directions=4) < 1e-6
