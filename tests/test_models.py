import numpy as np
import pytest

from tinyvgg.gradcheck import check_model
from tinyvgg.layers import SoftmaxCrossEntropy
from tinyvgg.models import KERNELS, Sequential, build_model, vgg, vgg11, vgg13, vgg16, vgg19


@pytest.mark.parametrize("builder, expected", [
    (vgg11, 132_863_336), (vgg13, 133_047_848), (vgg16, 138_357_544), (vgg19, 143_667_240)])
def test_parameter_counts_of_the_paper_configurations(builder, expected):
    # zeros init: counting needs the shapes, not 138M random draws
    model = builder(num_classes=1000, input_shape=(224, 224, 3), init="zeros")
    assert model.num_params() == expected


def test_names_shapes_and_width():
    model = vgg16(num_classes=10, input_shape=(64, 32, 3), width=0.25, fc_units=32)
    params = model.named_params()
    assert list(params)[:4] == ["block1_conv1.W", "block1_conv1.b", "block1_conv2.W", "block1_conv2.b"]
    assert params["block1_conv1.W"].shape == (3, 3, 3, 16)
    assert params["block5_conv3.W"].shape == (3, 3, 128, 128)
    assert params["fc1.W"].shape == (2 * 1 * 128, 32)
    assert params["predictions.W"].shape == (32, 10)
    out = model.forward(np.zeros((2, 64, 32, 3), np.float32))
    assert out.shape == (2, 10) and out.dtype == np.float32


def test_include_top_false_gives_the_convolutional_base():
    base = vgg16(input_shape=(64, 64, 3), width=0.125, include_top=False)
    assert base.names[-1] == "block5_pool"
    assert base.forward(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 2, 2, 64)


def test_same_seed_same_model_and_rebuild_from_config():
    a = vgg11(num_classes=5, input_shape=(32, 32, 3), width=0.125, fc_units=16, seed=3)
    b = build_model(a.config, seed=3)
    for (name, p), q in zip(a.named_params().items(), b.named_params().values()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    c = vgg11(num_classes=5, input_shape=(32, 32, 3), width=0.125, fc_units=16, seed=4)
    assert not np.array_equal(a.named_params()["block1_conv1.W"], c.named_params()["block1_conv1.W"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(30, 32, 3)), "divisible by 32"),
    (dict(input_shape=(16, 16, 3)), "divisible by 32"),
    (dict(width=0), "width must be positive"),
])
def test_bad_configurations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vgg16(**kwargs)
    with pytest.raises(ValueError, match="unknown model 'vgg15'"):
        vgg("vgg15")


def test_summary_has_every_layer_and_totals():
    model = vgg16(num_classes=1000, input_shape=(224, 224, 3), init="zeros", kernels="fast")
    text = model.summary()
    assert "block1_conv1 (FastConv2D)" in text and "(None, 224, 224, 64)" in text and "102,764,544" in text
    assert "Kernels: fast (FastConv2D, FastDense, FastMaxPool2D, FastReLU, tinyvgg.fastconv)" in text
    reference = vgg16(num_classes=1000, input_shape=(224, 224, 3), init="zeros").summary()  # the default
    assert "block1_conv1 (Conv2D)" in reference and "Kernels: reference (tinyvgg.layers)" in reference
    assert "Total params: 138,357,544" in text
    assert "Multiply-adds per example (forward): 15.47G" in text  # the well-known ~15.5 GMACs of VGG16
    assert "Activation memory" in text


def test_load_params_refuses_another_configuration():
    small = vgg11(num_classes=3, input_shape=(32, 32, 3), width=0.125, fc_units=8)
    other = vgg11(num_classes=4, input_shape=(32, 32, 3), width=0.125, fc_units=8)
    with pytest.raises(ValueError, match="predictions.W has shape"):
        other.load_params(small.named_params())
    with pytest.raises(ValueError, match="missing"):
        other.load_params({})


@pytest.mark.parametrize("kernels", KERNELS)
def test_a_whole_vgg_passes_the_random_direction_check(kernels):
    rng = np.random.default_rng(0)
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=6, dtype=np.float64, rng=rng,
                  kernels=kernels)
    x = rng.standard_normal((2, 32, 32, 3))
    assert check_model(model, SoftmaxCrossEntropy(), x, np.array([0, 2]), directions=3) < 1e-6


def test_vgg_bn_puts_batch_norm_between_each_convolution_and_its_relu():
    model = vgg16(num_classes=1000, input_shape=(224, 224, 3), init="zeros", batch_norm=True)
    assert model.names[:4] == ["block1_conv1", "block1_bn1", "block1_relu1", "block1_conv2"]
    # torchvision's vgg16_bn: 138,365,992 parameters (gamma and beta of 4,224 channels) plus running statistics
    assert model.num_params() == 138_357_544 + 2 * 4224 == 138_365_992
    assert len(model.named_buffers()) == 2 * 13 and model.config["batch_norm"] is True
    assert "block1_bn1.running_var" in model.named_buffers() and "block1_bn1.gamma" in model.named_params()


@pytest.mark.parametrize("kernels", KERNELS)
def test_a_whole_vgg_bn_passes_the_random_direction_check(kernels):
    rng = np.random.default_rng(1)
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=6, dtype=np.float64, rng=rng,
                  batch_norm=True, kernels=kernels)
    x = rng.standard_normal((3, 32, 32, 3))
    assert check_model(model, SoftmaxCrossEntropy(), x, np.array([0, 2, 1]), directions=3) < 1e-6


def test_sequential_runs_layers_in_order_and_rejects_duplicate_names():
    from tinyvgg.layers import Dense, ReLU
    model = Sequential([("a", Dense(2, 2, dtype=np.float64)), ("relu", ReLU())])
    assert model["relu"] is model.layers[1]
    with pytest.raises(ValueError, match="unique"):
        Sequential([("a", ReLU()), ("a", ReLU())])


def test_a_small_head_init_starts_the_papers_wide_head_at_chance_loss():
    # The paper's head (4096 units, dropout 0.5) under He's variance starts with logits of standard deviation
    # well above 1, so a first loss far above ln 10; torchvision's N(0, 0.01) puts them near zero.
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((16, 32, 32, 3)).astype(np.float32), rng.integers(0, 10, 16)
    losses = {}
    for head_init in (None, "small_normal"):
        model = vgg16(num_classes=10, input_shape=(32, 32, 3), width=1 / 8, fc_units=4096, dropout=0.5,
                      batch_norm=True, head_init=head_init, seed=0)
        losses[head_init] = float(SoftmaxCrossEntropy().forward(model.forward(x, train=True), labels))
    assert losses[None] > 3 and losses["small_normal"] == pytest.approx(np.log(10), abs=0.05)
    assert model.config["head_init"] == "small_normal"
    rebuilt = vgg(**model.config)
    assert float(rebuilt["fc2"].params["W"].std()) == pytest.approx(0.01, rel=0.01)
    assert "head_init" not in vgg16(num_classes=10, input_shape=(32, 32, 3), width=1 / 8).config


def test_fast_and_reference_kernels_build_the_same_model_and_compute_the_same_step():
    from tinyvgg import fastconv
    built = {k: vgg11(num_classes=4, input_shape=(32, 32, 3), width=1 / 16, fc_units=8, dropout=0.5, batch_norm=True,
                      dtype=np.float64, seed=3, kernels=k) for k in KERNELS}
    fast, reference = built["fast"], built["reference"]
    assert any(type(layer) in fastconv.FAST_CLASSES.values() for layer in fast.layers)
    assert not any(type(layer) in fastconv.FAST_CLASSES.values() for layer in reference.layers)
    assert fast.config == reference.config and "kernels" not in fast.config  # checkpoints do not change
    x = np.random.default_rng(0).standard_normal((5, 32, 32, 3))
    labels = np.array([0, 1, 2, 3, 0])
    for model in (fast, reference):
        model.input_grad = False  # as a trainer does: the first layer skips dx
        loss = SoftmaxCrossEntropy()
        loss.forward(model.forward(x.copy(), train=True), labels)
        assert model.backward(loss.backward()) is None
    for name, g in reference.named_grads().items():
        np.testing.assert_allclose(fast.named_grads()[name], g, rtol=1e-9, atol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="kernels must be one of fast, reference"):
        vgg11(kernels="turbo")
