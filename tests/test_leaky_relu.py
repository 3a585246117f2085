"""LeakyReLU: gradient checks away from the kink, values from the formula, alpha=0 is ReLU; every backend."""
import numpy as np
import pytest

from tinyvgg.backend import to_host
from tinyvgg.gradcheck import check_layer
from tinyvgg.layers import LeakyReLU, ReLU

ALPHAS = [0.0, 0.01, 0.2, 0.5]


def away_from_zero(rng, shape):
    """Values in +-[0.1, 1]: a central difference with eps = 1e-6 never straddles the kink at 0."""
    return rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("shape", [(3, 7), (2, 4, 4, 3)])
def test_gradient_check_float64(xp, alpha, shape, rng):
    x = xp.asarray(away_from_zero(rng, shape))
    errors = check_layer(LeakyReLU(alpha), x)
    assert set(errors) == {"x"} and errors["x"] < 1e-6


@pytest.mark.parametrize("alpha", ALPHAS)
def test_forward_and_backward_values_follow_the_formula(xp, alpha, rng):
    x = away_from_zero(rng, (4, 5, 5, 2)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    layer = LeakyReLU(alpha)
    out = layer.forward(xp.asarray(x), train=True)
    dx = layer.backward(xp.asarray(dout))
    assert out.dtype == dx.dtype == np.float32                   # alpha does not promote float32
    expected_out = np.array([[v if v > 0 else alpha * v for v in row] for row in x.reshape(-1, 2)])  # a loop
    np.testing.assert_allclose(to_host(out), expected_out.reshape(x.shape), rtol=1e-6)
    np.testing.assert_allclose(to_host(dx), np.where(x > 0, 1.0, alpha) * dout, rtol=1e-6)
    np.testing.assert_array_equal(to_host(layer.forward(xp.asarray(x))), to_host(out))  # eval = train


def test_alpha_zero_is_relu(xp, rng):
    x = xp.asarray(rng.standard_normal((3, 4, 4, 2)))
    x[0, 0, 0, :] = 0.0                                           # at the kink both pass nothing back
    dout = xp.asarray(rng.standard_normal(x.shape))
    leaky, relu = LeakyReLU(0.0), ReLU()
    np.testing.assert_array_equal(to_host(leaky.forward(x, train=True)), to_host(relu.forward(x, train=True)))
    np.testing.assert_array_equal(to_host(leaky.backward(dout)), to_host(relu.backward(dout)))


def test_negative_units_keep_a_gradient(xp):
    """The point of the leak: a unit below zero for every input still passes alpha * dout back."""
    layer = LeakyReLU(0.1)
    layer.forward(xp.full((5, 3), -2.0), train=True)
    dx = to_host(layer.backward(xp.ones((5, 3))))
    np.testing.assert_allclose(dx, np.full((5, 3), 0.1))


def test_backward_does_not_modify_dout(xp, rng):
    layer = LeakyReLU(0.3)
    layer.forward(xp.asarray(rng.standard_normal((6, 8))), train=True)
    dout = xp.asarray(rng.standard_normal((6, 8)))
    before = dout.copy()
    dx = layer.backward(dout)
    np.testing.assert_array_equal(to_host(dout), to_host(before))
    assert dx is not dout


def test_evaluation_keeps_no_cache_and_repr(xp):
    layer = LeakyReLU()
    layer.forward(xp.ones((2, 2)))
    assert layer.cache is None and layer.alpha == 0.01 and repr(layer) == "LeakyReLU(alpha=0.01)"
    assert isinstance(LeakyReLU(np.float64(0.2)).alpha, float)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 2.0])
def test_an_alpha_outside_0_1_is_refused(alpha):
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        LeakyReLU(alpha)
