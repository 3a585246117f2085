import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg import backend, layers
from tinyvgg.classroom import naive
from tinyvgg.gradcheck import check_layer, check_loss, check_model
from tinyvgg.fastconv import FastBatchNorm2D, FastConv2D, FastDense, FastMaxPool2D, FastReLU
from tinyvgg.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy

f64 = np.float64
seeds = st.integers(0, 2**32 - 1)
batch = st.integers(1, 3)
side = st.integers(2, 6)
channels = st.integers(1, 4)


def distinct_values(rng, shape):
    """Values spaced at least 1/size apart in random order: no max-pool ties."""
    size = int(np.prod(shape))
    return rng.permutation(size).reshape(shape) / size - 0.5


def away_from_zero(rng, shape):
    """Values in +-[0.1, 1]: finite differences never straddle the ReLU kink."""
    return rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


# ---- gradient checks: every input and every parameter, float64, relative error < 1e-6 ----

@given(batch, side, side, channels, channels, st.sampled_from([1, 3, 5]), st.sampled_from([Conv2D, FastConv2D]), seeds)
def test_conv_gradients(N, H, W, C, F, K, conv, seed):
    rng = np.random.default_rng(seed)
    layer = conv(C, F, kernel_size=K, rng=rng, dtype=f64)
    layer.params["b"] = rng.standard_normal(F)
    errors = check_layer(layer, rng.standard_normal((N, H, W, C)), seed=seed)
    assert set(errors) == {"x", "W", "b"} and max(errors.values()) < 1e-6


@given(batch, side, side, channels, st.sampled_from([MaxPool2D, FastMaxPool2D]), seeds)
def test_maxpool_gradients(N, H, W, C, pool, seed):
    rng = np.random.default_rng(seed)
    errors = check_layer(pool(), distinct_values(rng, (N, H, W, C)), seed=seed)
    assert errors["x"] < 1e-6


@given(batch, st.integers(1, 8), st.integers(1, 8), st.sampled_from([Dense, FastDense]), seeds)
def test_dense_gradients(N, D, M, dense, seed):
    rng = np.random.default_rng(seed)
    layer = dense(D, M, rng=rng, dtype=f64)
    layer.params["b"] = rng.standard_normal(M)
    errors = check_layer(layer, rng.standard_normal((N, D)), seed=seed)
    assert set(errors) == {"x", "W", "b"} and max(errors.values()) < 1e-6


@given(batch, side, channels, seeds)
def test_relu_gradients(N, H, C, seed):
    rng = np.random.default_rng(seed)
    assert check_layer(ReLU(), away_from_zero(rng, (N, H, H, C)), seed=seed)["x"] < 1e-6


@given(batch, st.integers(1, 10), st.sampled_from([0.0, 0.2, 0.5, 0.9]), seeds)
def test_dropout_gradients_with_fixed_mask(N, D, rate, seed):
    rng = np.random.default_rng(seed)
    layer = Dropout(rate, rng=rng)
    layer.fixed_mask = (rng.random((N, D)) >= rate) / (1 - rate)
    assert check_layer(layer, rng.standard_normal((N, D)), seed=seed)["x"] < 1e-6


@given(batch, side, channels, seeds)
def test_flatten_gradients(N, H, C, seed):
    rng = np.random.default_rng(seed)
    assert check_layer(Flatten(), rng.standard_normal((N, H, H, C)), seed=seed)["x"] < 1e-6


@given(st.integers(1, 6), st.integers(2, 10), seeds)
def test_softmax_cross_entropy_gradient(N, K, seed):
    rng = np.random.default_rng(seed)
    # unit-scale logits: a saturated softmax (p ~ 1) has gradients near 1e-6, below what
    # central differences resolve relative to the loss's rounding
    logits = rng.standard_normal((N, K))
    assert check_loss(SoftmaxCrossEntropy(), logits, rng.integers(0, K, N)) < 1e-6


@pytest.mark.parametrize("bn", [BatchNorm2D, FastBatchNorm2D])
@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (1, 1, 1, 5), (4, 2, 3, 1)])
def test_batchnorm_gradients_with_batch_statistics(xp, backend_name, shape, bn):
    rng = np.random.default_rng(sum(shape))
    layer = bn(shape[-1], dtype=f64)
    layer.params = {"gamma": rng.uniform(0.5, 2, shape[-1]), "beta": rng.standard_normal(shape[-1])}
    layer.to(backend_name)
    x = xp.asarray(rng.standard_normal(shape) * 3 + 1)
    errors = check_layer(layer, x, seed=1)
    assert set(errors) == {"x", "gamma", "beta"} and max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("bn", [BatchNorm2D, FastBatchNorm2D])
def test_batchnorm_gradients_with_running_statistics_when_frozen(xp, backend_name, rng, bn):
    layer = bn(3, dtype=f64)
    layer.params["gamma"] = rng.uniform(0.5, 2, 3)
    layer.buffers = {"running_mean": rng.standard_normal(3), "running_var": rng.uniform(0.5, 2, 3)}
    layer.trainable = False
    layer.to(backend_name)
    before = {k: backend.to_host(v).copy() for k, v in layer.buffers.items()}
    errors = check_layer(layer, xp.asarray(rng.standard_normal((2, 3, 3, 3))))
    assert max(errors.values()) < 1e-6, errors
    for name, value in before.items():  # a frozen layer leaves its statistics alone
        np.testing.assert_array_equal(backend.to_host(layer.buffers[name]), value)


def test_batchnorm_normalizes_with_batch_statistics_and_tracks_running_ones(rng):
    layer = BatchNorm2D(4, momentum=0.8, dtype=f64)
    layer.params = {"gamma": np.array([1.0, 2.0, 0.5, 1.0]), "beta": np.array([0.0, 1.0, -1.0, 3.0])}
    x = rng.standard_normal((5, 3, 2, 4)) * [1, 2, 3, 4] + [0, 10, -5, 1]
    out = layer.forward(x, train=True).reshape(-1, 4)
    mean, var = x.reshape(-1, 4).mean(axis=0), x.reshape(-1, 4).var(axis=0)
    np.testing.assert_allclose(out, (x.reshape(-1, 4) - mean) / np.sqrt(var + 1e-5) * layer.params["gamma"]
                               + layer.params["beta"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=0), layer.params["beta"], atol=1e-12)
    m = 5 * 3 * 2
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], 0.8 + 0.2 * var * m / (m - 1), rtol=1e-12)
    # evaluation uses the running statistics and changes nothing
    running = {k: v.copy() for k, v in layer.buffers.items()}
    out_eval = layer.forward(x)
    expected = (x - running["running_mean"]) / np.sqrt(running["running_var"] + 1e-5) * layer.params["gamma"] \
        + layer.params["beta"]
    np.testing.assert_allclose(out_eval, expected, rtol=1e-12, atol=1e-12)
    assert layer.cache is None and all(np.array_equal(layer.buffers[k], running[k]) for k in running)
    with pytest.raises(ValueError, match="BatchNorm2D expects input of shape"):
        layer.forward(np.zeros((2, 4)))


def test_whole_stack_passes_the_random_direction_check(rng):
    stack = [Conv2D(3, 4, rng=rng, dtype=f64), BatchNorm2D(4, dtype=f64), ReLU(), MaxPool2D(),
             Conv2D(4, 6, rng=rng, dtype=f64), ReLU(), MaxPool2D(), Flatten(),
             Dense(2 * 2 * 6, 10, rng=rng, dtype=f64), ReLU(), Dropout(0.5, rng=rng),
             Dense(10, 5, rng=rng, dtype=f64)]
    x = rng.standard_normal((3, 8, 8, 3))
    assert check_model(stack, SoftmaxCrossEntropy(), x, rng.integers(0, 5, 3), directions=6) < 1e-6
    assert all(getattr(layer, "fixed_mask", None) is None for layer in stack)  # masks released


# ---- the layers, reference and fast, against the slow loop references ----

@given(batch, side, side, channels, channels, st.sampled_from([1, 3, 5]), st.sampled_from(["same", "valid"]),
       st.sampled_from([Conv2D, FastConv2D]), seeds)
def test_conv_matches_naive_loops(N, H, W, C, F, K, padding, conv, seed):
    rng = np.random.default_rng(seed)
    layer = conv(C, F, kernel_size=K, padding=padding, rng=rng, dtype=f64)
    if H + 2 * layer.pad < K or W + 2 * layer.pad < K:
        return
    layer.params["b"] = rng.standard_normal(F)
    x = rng.standard_normal((N, H, W, C))
    out = layer.forward(x, train=True)
    np.testing.assert_allclose(out, naive.conv2d_forward(x, layer.params["W"], layer.params["b"], layer.pad),
                               rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(x, layer.params["W"], dout, layer.pad)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], dW_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], db_ref, rtol=1e-12, atol=1e-12)


@given(batch, side, side, channels, st.booleans(), st.sampled_from([MaxPool2D, FastMaxPool2D]), seeds)
def test_maxpool_matches_naive_loops_including_ties_and_odd_sizes(N, H, W, C, ties, pool_class, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (N, H, W, C)).astype(f64) if ties else rng.standard_normal((N, H, W, C))
    pool = pool_class()
    out = pool.forward(x, train=True)
    assert out.shape == (N, H // 2, W // 2, C)
    np.testing.assert_array_equal(out, naive.maxpool_forward(x))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(pool.backward(dout), naive.maxpool_backward(x, dout))


# ---- properties every layer keeps ----

def all_layers(rng, dtype):
    """(layer, input) for every layer, reference and fast, in ``dtype``."""
    return [
        (Conv2D(3, 4, rng=rng, dtype=dtype), rng.standard_normal((2, 5, 5, 3)).astype(dtype)),
        (FastConv2D(3, 4, rng=rng, dtype=dtype), rng.standard_normal((2, 5, 5, 3)).astype(dtype)),
        (BatchNorm2D(3, dtype=dtype), rng.standard_normal((2, 5, 5, 3)).astype(dtype)),
        (FastBatchNorm2D(3, dtype=dtype), rng.standard_normal((2, 5, 5, 3)).astype(dtype)),
        (MaxPool2D(), rng.standard_normal((2, 5, 5, 3)).astype(dtype)),
        (FastMaxPool2D(), rng.standard_normal((2, 5, 5, 3)).astype(dtype)),
        (Dense(6, 4, rng=rng, dtype=dtype), rng.standard_normal((2, 6)).astype(dtype)),
        (FastDense(6, 4, rng=rng, dtype=dtype), rng.standard_normal((2, 6)).astype(dtype)),
        (ReLU(), rng.standard_normal((2, 6)).astype(dtype)),
        (FastReLU(), rng.standard_normal((2, 6)).astype(dtype)),
        (Dropout(0.3, rng=rng), rng.standard_normal((2, 6)).astype(dtype)),
        (Flatten(), rng.standard_normal((2, 2, 2, 3)).astype(dtype)),
    ]


def test_float32_in_float32_out_and_dout_untouched(xp, backend_name, rng):
    for layer, x in all_layers(rng, np.float32):
        layer.to(backend_name)
        x = xp.asarray(x)
        out = layer.forward(x, train=True)
        assert out.dtype == xp.float32, layer
        dout = xp.asarray(rng.standard_normal(out.shape).astype(np.float32))
        dout_before = dout.copy()
        dx = layer.backward(dout)
        assert dx.dtype == xp.float32 and dx.shape == x.shape, layer
        assert all(g.dtype == xp.float32 for g in layer.grads.values()), layer
        assert bool((dout == dout_before).all()), f"{layer!r} modified dout"
    loss = SoftmaxCrossEntropy()
    value = loss.forward(xp.asarray(rng.standard_normal((4, 3)).astype(np.float32)), xp.asarray([0, 1, 2, 0]))
    assert value.dtype == xp.float32 and loss.backward().dtype == xp.float32


def test_evaluation_forward_keeps_no_cache(rng):
    for layer, x in all_layers(rng, np.float32):
        layer.forward(x, train=True)
        layer.forward(x)
        assert layer.cache is None, layer


def test_chunked_convolution_equals_unchunked(monkeypatch, rng):
    layer = Conv2D(3, 5, rng=rng, dtype=f64)
    layer.params["b"] = rng.standard_normal(5)
    x = rng.standard_normal((7, 6, 6, 3))
    dout = rng.standard_normal((7, 6, 6, 5))
    whole = layer.forward(x, train=True), layer.backward(dout), dict(layer.grads)
    one_image = 6 * 6 * 9 * 3 * 8  # the columns of one image: 9 taps of 3 channels per pixel
    monkeypatch.setattr(layers, "IM2COL_MAX_BYTES", 2 * one_image)  # chunks of 2, 2, 2, 1 images
    assert [c.stop - c.start for c in layer._chunks(x)] == [2, 2, 2, 1]
    chunked = layer.forward(x, train=True), layer.backward(dout), dict(layer.grads)
    np.testing.assert_array_equal(chunked[0], whole[0])  # each row's product is the same computation
    np.testing.assert_array_equal(chunked[1], whole[1])
    for name in ("W", "b"):  # dW sums the chunks in another order: equal up to rounding
        np.testing.assert_allclose(chunked[2][name], whole[2][name], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("conv", [Conv2D, FastConv2D])
def test_a_kernel_larger_than_the_input_gets_a_clear_error_on_both_paths(conv):
    with pytest.raises(ValueError, match="a 3x3 kernel with padding 0 does not fit an input of 2x2 pixels"):
        conv(3, 4, padding="valid").forward(np.zeros((1, 2, 2, 3), np.float32))


def test_conv_output_shape_and_clear_error_on_wrong_channels(rng):
    layer = Conv2D(3, 8, rng=rng)
    assert layer.output_shape((32, 32, 3)) == (32, 32, 8)
    assert layer.forward(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 32, 32, 8)
    with pytest.raises(ValueError, match=r"Conv2D expects input .* 3 in the last axis, got \(2, 32, 32, 1\)"):
        layer.forward(np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="Dense expects"):
        Dense(4, 2).forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="at least 2x2"):
        MaxPool2D().forward(np.zeros((1, 1, 4, 1)))


def test_dropout_is_identity_in_evaluation_and_keeps_the_mean_in_training(rng):
    x = np.ones((200, 500), np.float32)
    layer = Dropout(0.4, rng=rng)
    assert layer.forward(x) is x
    out = layer.forward(x, train=True)
    assert abs((out == 0).mean() - 0.4) < 0.01
    assert abs(out.mean() - 1.0) < 0.01
    np.testing.assert_array_equal(layer.backward(x), out)  # the same mask, applied to the gradient
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


def test_same_seed_same_dropout_masks():
    x = np.ones((4, 8), np.float32)
    a = Dropout(0.5, rng=np.random.default_rng(3)).forward(x, train=True)
    b = Dropout(0.5, rng=np.random.default_rng(3)).forward(x, train=True)
    np.testing.assert_array_equal(a, b)


def test_softmax_cross_entropy_is_stable_and_right():
    loss = SoftmaxCrossEntropy()
    assert float(loss.forward(np.zeros((3, 10)), np.array([1, 2, 3]))) == pytest.approx(np.log(10))
    huge = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]], dtype=np.float32)
    value = float(loss.forward(huge, np.array([0, 0])))
    assert np.isfinite(value) and value == pytest.approx(1e4 / 2)
    assert np.isfinite(loss.backward()).all()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loss.forward(huge, np.array([0, 3]))
    with pytest.raises(ValueError, match="integer class indices"):
        loss.forward(huge, np.array([0.0, 1.0]))


@pytest.mark.gpu
def test_cupy_matches_numpy(cupy, rng):
    for layer, x in all_layers(rng, np.float64):
        if isinstance(layer, Dropout):
            layer.fixed_mask = (rng.random(x.shape) >= 0.3) / 0.7
        out = layer.forward(x, train=True)
        dout = rng.standard_normal(out.shape)
        dx = layer.backward(dout)
        grads = {k: v.copy() for k, v in layer.grads.items()}
        layer.to("cupy")
        if isinstance(layer, Dropout):
            layer.fixed_mask = backend.to_device(layer.fixed_mask, "cupy")
        out_gpu = layer.forward(backend.to_device(x, "cupy"), train=True)
        dx_gpu = layer.backward(backend.to_device(dout, "cupy"))
        np.testing.assert_allclose(backend.to_host(out_gpu), out, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(backend.to_host(dx_gpu), dx, rtol=1e-10, atol=1e-12)
        for name, g in grads.items():
            np.testing.assert_allclose(backend.to_host(layer.grads[name]), g, rtol=1e-10, atol=1e-12)


def test_fast_relu_overwrites_its_input_only_and_gives_the_reference_gradient(rng):
    x = rng.standard_normal((3, 4))
    expected = np.maximum(x, 0)
    layer = FastReLU()
    out = layer.forward(x, train=True)
    assert out is x  # in place of its input: one activation less
    np.testing.assert_array_equal(out, expected)
    dout = rng.standard_normal((3, 4))
    dout_before = dout.copy()
    np.testing.assert_array_equal(layer.backward(dout), dout_before * (expected > 0))
    np.testing.assert_array_equal(dout, dout_before)  # backward never modifies dout
