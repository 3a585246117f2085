import numpy as np
import pytest

from tinyvgg import init


@pytest.mark.parametrize("shape, fans", [((10, 20), (10, 20)), ((3, 3, 4, 8), (36, 72))])
def test_fans_of_dense_and_conv_weights(shape, fans):
    assert init.compute_fans(shape) == fans


@pytest.mark.parametrize("name, variance", [
    ("he_normal", lambda fi, fo: 2 / fi),
    ("he_uniform", lambda fi, fo: 2 / fi),
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
