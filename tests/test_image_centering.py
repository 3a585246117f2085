"""ImageCentering: each image's own mean colour off (what --centering puts first), and its gradient."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg import backend, checkpoint, memory
from tinyvgg.gradcheck import check_layer, check_model
from tinyvgg.layers import ImageCentering, SoftmaxCrossEntropy
from tinyvgg.models import KERNELS, build_model, vgg11


@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (1, 1, 1, 3), (3, 5, 2, 1)])
def test_gradient_in_float64_on_every_backend(xp, shape):
    x = xp.asarray(np.random.default_rng(sum(shape)).standard_normal(shape))
    errors = check_layer(ImageCentering(), x, seed=3)
    assert set(errors) == {"x"} and errors["x"] < 1e-6, errors


@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_every_channel_of_every_image_ends_at_mean_zero_whatever_colour_was_added(N, H, W, C, seed):
    rng = np.random.default_rng(seed)
    x, cast, dout = rng.standard_normal((N, H, W, C)), rng.normal(0, 5, (N, 1, 1, C)), rng.standard_normal((N, H, W, C))
    layer = ImageCentering()
    out = layer.forward(x, train=True)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(out, x - np.array([[[[x[n, :, :, c].mean() for c in range(C)]]] for n in range(N)]),
                               atol=1e-12)
    np.testing.assert_allclose(layer.forward(x + cast), out, atol=1e-10)  # blind to a per-image colour cast
    dout_before = dout.copy()
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dout, dout_before)  # backward never modifies dout
    jacobian = np.eye(H * W) - 1 / (H * W)            # d out_i / d x_j over one image's channel, its pixels in a row
    for n in range(N):
        for c in range(C):
            np.testing.assert_allclose(dx[n, :, :, c].ravel(), jacobian.T @ dout[n, :, :, c].ravel(), atol=1e-12)


def test_float32_stays_float32_no_cache_and_a_clear_error_for_a_flat_input(xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype(np.float32))
    layer = ImageCentering()
    out = layer.forward(x, train=True)
    assert out.dtype == layer.backward(out).dtype == np.float32 and layer.cache is None and layer.params == {}
    np.testing.assert_allclose(backend.to_host(out).mean(axis=(1, 2)), 0, atol=1e-6)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, H, W, C\), got \(2, 12\)"):
        layer.forward(xp.zeros((2, 12)))


@pytest.mark.parametrize("kernels", KERNELS)
def test_a_centred_vgg_starts_with_the_layer_passes_the_whole_model_check_and_ignores_colour_casts(kernels):
    rng = np.random.default_rng(0)  # a draw whose ReLUs and pools sit away from their kinks, as in test_models
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=6, dtype=np.float64, rng=rng,
                  batch_norm=True, kernels=kernels, center_images=True, first_conv_init="he_normal_zero_mean")
    assert model.names[:2] == ["centering", "block1_conv1"]
    assert model.config["center_images"] is True and model.config["first_conv_init"] == "he_normal_zero_mean"
    np.testing.assert_allclose(model["block1_conv1"].params["W"].sum(axis=(0, 1)), 0, atol=1e-12)
    x = rng.standard_normal((2, 32, 32, 3))
    assert check_model(model, SoftmaxCrossEntropy(), x, np.array([0, 2]), directions=3) < 1e-6
    cast = rng.normal(0, 3, (2, 1, 1, 3))
    np.testing.assert_allclose(model.forward(x + cast), model.forward(x), rtol=1e-9, atol=1e-12)
    plain = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=6)
    assert "center_images" not in plain.config and "first_conv_init" not in plain.config  # older files read the same


def test_a_checkpoint_keeps_the_centering_and_a_crafted_value_gets_a_sentence(tmp_path):
    config = dict(depth="vgg11", num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=6, batch_norm=True,
                  center_images=True, first_conv_init="he_normal_zero_mean")
    model = build_model(config, seed=0)
    path = str(tmp_path / "best.npz")
    checkpoint.save(path, model.named_params(), {"model_config": model.config}, buffers=model.named_buffers())
    loaded, _ = checkpoint.load_model(path)
    assert loaded.names[0] == "centering" and loaded.config == model.config
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert memory.config_problem(dict(config, center_images="yes")) == "its center_images is neither true nor false"
    checkpoint.save(path, model.named_params(), {"model_config": dict(model.config, center_images=1)},
                    buffers=model.named_buffers())
    with pytest.raises(checkpoint.CheckpointError, match="center_images is neither true nor false"):
        checkpoint.load_model(path)


@pytest.mark.parametrize("kernels", KERNELS)
def test_training_skips_the_first_convolutions_dx_behind_the_centering_and_keeps_its_gradients(kernels):
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=6, dropout=0.0, seed=0,
                  kernels=kernels, center_images=True)
    x, labels, loss = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32), [0, 2], \
        SoftmaxCrossEntropy()
    grads = {}
    for input_grad in (True, False):
        model.input_grad = input_grad
        assert model["centering"].input_grad is model["block1_conv1"].input_grad is input_grad
        assert model["block1_relu1"].input_grad is True          # only the layers up to the first with weights
        loss.forward(model.forward(x, train=True), np.array(labels))
        dx = model.backward(loss.backward())
        assert (dx is None) is (not input_grad)
        grads[input_grad] = {name: g.copy() for name, g in model.named_grads().items()}
    # The fast convolution without dx takes dW from the columns of x instead of those of dout: the same float32
    # products summed in another order (equal bit for bit on some BLAS kernels, not on others).
    same = dict(rtol=0, atol=0) if kernels == "reference" else dict(rtol=1e-5, atol=1e-7)
    for name, g in grads[True].items():
        np.testing.assert_allclose(grads[False][name], g, **same)
