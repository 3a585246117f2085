"""The residual block: its gradients, and that a model holding it works with the rest of tinyvgg."""
import numpy as np
import pytest

from tinyvgg.gradcheck import check_layer, check_model
from tinyvgg.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ReLU, SoftmaxCrossEntropy
from tinyvgg.models import Residual, Sequential
from tinyvgg.optim import SGD

F64 = np.float64


def dense_block(rng, width=5):
    return Residual([("dense1", Dense(width, width, rng=rng, dtype=F64)), ("relu", ReLU()),
                     ("dense2", Dense(width, width, rng=rng, dtype=F64))])


def test_forward_is_x_plus_the_body():
    rng = np.random.default_rng(0)
    block = dense_block(rng)
    x = rng.standard_normal((4, 5))
    d1, d2 = block.body["dense1"].params, block.body["dense2"].params
    expected = x + np.maximum(x @ d1["W"] + d1["b"], 0) @ d2["W"] + d2["b"]
    np.testing.assert_allclose(block.forward(x), expected, rtol=1e-12)


def test_dense_block_passes_the_gradient_check():
    rng = np.random.default_rng(1)
    block = dense_block(rng)
    x = rng.uniform(0.2, 1.0, (3, 5)) * rng.choice([-1.0, 1.0], (3, 5))
    errors = check_layer(block, x)
    assert set(errors) == {"x", "dense1.W", "dense1.b", "dense2.W", "dense2.b"}


def test_conv_block_with_batch_norm_passes_the_gradient_check():
    rng = np.random.default_rng(2)
    block = Residual([("bn1", BatchNorm2D(3, dtype=F64)), ("relu1", ReLU()),
                      ("conv1", Conv2D(3, 3, rng=rng, dtype=F64)), ("relu2", ReLU()),
                      ("conv2", Conv2D(3, 3, rng=rng, dtype=F64))])
    errors = check_layer(block, rng.standard_normal((2, 4, 4, 3)))
    assert {"x", "bn1.gamma", "bn1.beta", "conv1.W", "conv2.b"} <= set(errors)


def test_backward_is_dout_plus_the_body_and_leaves_dout_alone():
    rng = np.random.default_rng(3)
    block = dense_block(rng)
    x, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    block.forward(x, train=True)
    kept = dout.copy()
    dx = block.backward(dout)
    np.testing.assert_array_equal(dout, kept)
    twin = Sequential([(name, layer) for name, layer in zip(block.body.names, block.body.layers)])
    twin.forward(x, train=True)
    np.testing.assert_allclose(dx, dout + twin.backward(dout), rtol=1e-12)


def test_nested_blocks_pass_the_gradient_check():
    rng = np.random.default_rng(4)
    outer = Residual([("inner", dense_block(rng)), ("relu", ReLU()), ("dense", Dense(5, 5, rng=rng, dtype=F64))])
    x = rng.uniform(0.2, 1.0, (3, 5)) * rng.choice([-1.0, 1.0], (3, 5))
    assert "inner.dense1.W" in check_layer(outer, x)


def residual_mlp(rng, blocks=2, width=6, dtype=F64):
    layers = [("stem", Dense(8, width, rng=rng, dtype=dtype))]
    for b in range(1, blocks + 1):
        layers.append((f"res{b}", Residual([("relu1", ReLU()), ("dense1", Dense(width, width, rng=rng, dtype=dtype)),
                                            ("drop", Dropout(0.3, rng=rng)), ("relu2", ReLU()),
                                            ("dense2", Dense(width, width, rng=rng, dtype=dtype))])))
    layers += [("relu", ReLU()), ("head", Dense(width, 3, rng=rng, dtype=dtype))]
    return Sequential(layers, input_shape=(8,))


def test_a_model_of_blocks_passes_the_random_direction_check_with_dropout_held():
    rng = np.random.default_rng(5)
    model = residual_mlp(rng)
    check_model(model, SoftmaxCrossEntropy(), rng.standard_normal((4, 8)), rng.integers(0, 3, 4), directions=5)


def test_names_reach_the_optimizer_checkpoints_and_summary():
    rng = np.random.default_rng(6)
    model = residual_mlp(rng, dtype=np.float32)
    params = model.named_params()
    assert "res1.dense1.W" in params and "res2.dense2.b" in params and len(params) == 2 + 2 * 4 + 2
    x, y = rng.standard_normal((4, 8)).astype(np.float32), rng.integers(0, 3, 4)
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x, train=True), y)
    model.backward(loss.backward())
    assert set(model.named_grads()) == set(params)
    before = params["res1.dense1.W"].copy()
    SGD(model.named_params(), lr=0.1).step(model.named_grads())
    assert not np.array_equal(model["res1"].body["dense1"].params["W"], before)  # updated in place, inside the block
    twin = residual_mlp(np.random.default_rng(7), dtype=np.float32)
    twin.load_params(model.named_params(), model.named_buffers())
    np.testing.assert_array_equal(twin.forward(x), model.forward(x))
    text = model.summary()
    assert "res1 (Residual)" in text and f"Total params: {model.num_params():,}" in text
    frozen = model.named_params(trainable_only=True)
    model["res2"].trainable = False
    assert set(frozen) - set(model.named_params(trainable_only=True)) == {k for k in frozen if k.startswith("res2.")}


def test_batch_norm_statistics_inside_a_block_are_buffers_of_the_model():
    block = Residual([("bn", BatchNorm2D(2)), ("relu", ReLU()), ("conv", Conv2D(2, 2, rng=np.random.default_rng(0)))])
    model = Sequential([("res", block), ("flatten", Flatten())], input_shape=(4, 4, 2))
    assert set(model.named_buffers()) == {"res.bn.running_mean", "res.bn.running_var"}
    model.forward(np.ones((2, 4, 4, 2), np.float32), train=True)
    assert np.allclose(model.named_buffers()["res.bn.running_mean"], 0.1)  # momentum 0.9 from 0 towards 1


def test_a_body_that_changes_the_shape_is_refused_with_a_sentence():
    block = Residual([("dense", Dense(4, 3, rng=np.random.default_rng(0)))])
    with pytest.raises(ValueError, match="keep its input's shape"):
        block.forward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="keep its input's shape"):
        block.output_shape((4,))
