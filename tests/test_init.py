import numpy as np
import pytest

from tinyvgg import init


@pytest.mark.parametrize("shape, fans", [((10, 20), (10, 20)), ((3, 3, 4, 8), (36, 72))])
def test_fans_of_dense_and_conv_weights(shape, fans):
    assert init.compute_fans(shape) == fans


@pytest.mark.parametrize("name, variance", [
    ("he_normal", lambda fi, fo: 2 / fi),
    ("he_uniform", lambda fi, fo: 2 / fi),
    ("he_normal_zero_mean", lambda fi, fo: 2 / fi),
    ("glorot_normal", lambda fi, fo: 2 / (fi + fo)),
    ("glorot_uniform", lambda fi, fo: 2 / (fi + fo)),
    ("small_normal", lambda fi, fo: 0.01 ** 2),
])
def test_initializers_have_their_variance(name, variance):
    shape = (3, 3, 64, 128)
    W = init.get_initializer(name)(shape, np.random.default_rng(0))
    fan_in, fan_out = init.compute_fans(shape)
    assert W.shape == shape and W.dtype == np.float64
    assert abs(W.mean()) < 0.01 * W.std()
    assert W.var() == pytest.approx(variance(fan_in, fan_out), rel=0.02)


def test_uniform_initializers_stay_within_their_limit():
    W = init.he_uniform((100, 50), np.random.default_rng(0))
    assert np.abs(W).max() <= np.sqrt(6 / 100)


def test_same_seed_same_weights():
    a = init.he_normal((5, 7), np.random.default_rng(42))
    b = init.he_normal((5, 7), np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    assert init.zeros((2, 3)).sum() == 0


def test_unknown_initializer_names_the_choices():
    with pytest.raises(ValueError, match="unknown initializer 'orthogonal'.*he_normal"):
        init.get_initializer("orthogonal")


def test_zero_mean_filters_answer_flat_colour_with_zero_and_contrast_as_he_scaled():
    W = init.he_normal_zero_mean((3, 3, 3, 64), np.random.default_rng(1))
    plain = init.he_normal((3, 3, 3, 64), np.random.default_rng(1))    # the same draw before its means came off
    flat = np.ones((3, 3, 3)) * np.array([0.2, -1.0, 0.7])             # a 3x3 patch of one colour
    np.testing.assert_allclose(np.einsum("hwc,hwco->o", flat, W), 0, atol=1e-12)
    edge = np.zeros((3, 3, 3))
    edge[:, 0], edge[:, 2] = -1.0, 1.0                                 # dark left, bright right: a contrast, mean 0
    np.testing.assert_allclose(np.einsum("hwc,hwco->o", edge, W),       # what the mean took off, it never saw;
                               np.einsum("hwc,hwco->o", edge, plain) * np.sqrt(9 / 8), rtol=1e-12)  # He's scale back


@pytest.mark.parametrize("shape", [(10, 20), (1, 1, 3, 8)])
def test_zero_mean_filters_need_a_window_of_several_taps(shape):
    with pytest.raises(ValueError, match="for conv weights"):
        init.he_normal_zero_mean(shape, np.random.default_rng(0))
