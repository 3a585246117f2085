import numpy as np
import pytest

from tinyvgg import gradcheck
from tinyvgg.layers import Dense, ReLU


class WrongDense(Dense):
    """A Dense layer whose dW forgot the transpose-and-multiply: a typical student bug."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["W"] = self.grads["W"] * 1.01
        return dx


def test_numerical_gradient_of_a_known_function(rng):
    x = rng.standard_normal((3, 4))
    x_before = x.copy()
    grad = gradcheck.numerical_gradient(lambda: (x ** 3).sum(), x)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(x, x_before)  # every perturbation undone exactly


def test_a_correct_layer_passes(rng):
    errors = gradcheck.check_layer(Dense(4, 3, rng=rng, dtype=np.float64), rng.standard_normal((2, 4)))
    assert max(errors.values()) < 1e-8


def test_a_wrong_backward_fails_with_error_and_preview(rng):
    layer = WrongDense(4, 3, rng=rng, dtype=np.float64)
    with pytest.raises(gradcheck.GradientCheckError) as info:
        gradcheck.check_layer(layer, rng.standard_normal((2, 4)))
    message = str(info.value)
    assert "W: relative error" in message and "analytic" in message and "numerical" in message
    assert "x: relative error" not in message  # dx is still right and is not blamed


def test_the_random_direction_check_catches_a_wrong_gradient(rng):
    x = rng.standard_normal(50)
    assert gradcheck.check_direction(lambda: (x ** 2).sum(), [x], [2 * x]) < 1e-8
    with pytest.raises(gradcheck.GradientCheckError, match="random-direction check"):
        gradcheck.check_direction(lambda: (x ** 2).sum(), [x], [2.02 * x])


def test_model_check_catches_a_wrong_layer_inside_a_stack(rng):
    from tinyvgg.layers import SoftmaxCrossEntropy
    stack = [Dense(6, 5, rng=rng, dtype=np.float64), ReLU(), WrongDense(5, 3, rng=rng, dtype=np.float64)]
    with pytest.raises(gradcheck.GradientCheckError):
        gradcheck.check_model(stack, SoftmaxCrossEntropy(), rng.standard_normal((4, 6)), rng.integers(0, 3, 4))


def test_float32_is_refused_with_the_reason(rng):
    with pytest.raises(TypeError, match="float64"):
        gradcheck.check_layer(ReLU(), rng.standard_normal((2, 3)).astype(np.float32))


def test_the_demo_checks_every_layer(capsys):
    gradcheck.main([])
    out = capsys.readouterr().out
    for name in ("Conv2D", "MaxPool2D", "Dense", "ReLU", "Dropout", "Flatten", "SoftmaxCrossEntropy", "random v"):
        assert name in out
    assert "all gradient checks passed" in out


def test_main_checks_what_is_written_and_lists_the_blank_parts(monkeypatch, capsys):
    from tinyvgg.layers import Conv2D, MaxPool2D

    def blank(part):
        def method(self, *args, **kwargs):
            raise NotImplementedError(f"part {part}")
        return method

    assert gradcheck.main([]) == 0
    assert "all gradient checks passed" in capsys.readouterr().out
    monkeypatch.setattr(Conv2D, "forward", blank("conv"))   # as in a handout where conv and pool are still blank
    monkeypatch.setattr(MaxPool2D, "backward", blank("pool"))
    assert gradcheck.main([]) == 1
    out = capsys.readouterr().out
    assert "Dense(6, 4" in out and "dW" in out and "Traceback" not in out     # the written layers were checked
    last = out.strip().splitlines()[-1]
    assert last.startswith("every written part passed its gradient check; not written yet: part conv (")
    assert "part pool (needed by MaxPool2D" in last and "a small CNN using every layer" in last
