import numpy as np
import pytest

from tinyvgg.optim import (SGD, Adam, FastAdam, FastRMSProp, FastSGD, LinearWarmup, ReduceLROnPlateau, RMSProp, StepLR,
                           clip_grad_norm)


def params_and_grads():
    params = {"dense.W": np.array([[1.0, -2.0], [0.5, 3.0]]), "dense.b": np.array([0.5, -0.5])}
    grads = {"dense.W": np.array([[0.1, 0.2], [-0.3, 0.4]]), "dense.b": np.array([1.0, -1.0])}
    return params, grads


# the readable update, and the fast one in blocks of 2**18 elements or of 3 (updates cross block boundaries)
VERSIONS = [(SGD, None), (FastSGD, 2**18), (FastSGD, 3)]


@pytest.mark.parametrize("optimizer, block", VERSIONS)
def test_sgd_momentum_follows_the_formula(monkeypatch, optimizer, block):
    if block:
        monkeypatch.setattr(optimizer, "BLOCK", block)
    params, grads = params_and_grads()
    W0 = params["dense.W"].copy()
    opt = optimizer(params, lr=0.1, momentum=0.9)
    opt.step(grads)
    opt.step(grads)
    v1 = -0.1 * grads["dense.W"]
    v2 = 0.9 * v1 - 0.1 * grads["dense.W"]
    np.testing.assert_allclose(params["dense.W"], W0 + v1 + v2, rtol=1e-12)


@pytest.mark.parametrize("optimizer", [SGD, FastSGD])
def test_nesterov_looks_ahead_and_grads_are_left_alone(optimizer):
    params, grads = params_and_grads()
    W0, g0 = params["dense.W"].copy(), grads["dense.W"].copy()
    optimizer(params, lr=0.1, momentum=0.9, nesterov=True).step(grads)
    np.testing.assert_array_equal(grads["dense.W"], g0)
    v = -0.1 * grads["dense.W"]
    np.testing.assert_allclose(params["dense.W"], W0 + 0.9 * v - 0.1 * grads["dense.W"], rtol=1e-12)


@pytest.mark.parametrize("optimizer", [SGD, FastSGD])
def test_weight_decay_skips_biases_unless_asked(optimizer):
    for decay_biases in (False, True):
        params, grads = params_and_grads()
        W0, b0 = params["dense.W"].copy(), params["dense.b"].copy()
        optimizer(params, lr=0.1, momentum=0.0, weight_decay=0.01, decay_biases=decay_biases).step(grads)
        np.testing.assert_allclose(params["dense.W"], W0 - 0.1 * (grads["dense.W"] + 0.01 * W0), rtol=1e-12)
        expected_b = b0 - 0.1 * (grads["dense.b"] + (0.01 * b0 if decay_biases else 0))
        np.testing.assert_allclose(params["dense.b"], expected_b, rtol=1e-12)


@pytest.mark.parametrize("optimizer, block", [(Adam, None), (FastAdam, 2**18), (FastAdam, 3)])
def test_adam_follows_the_formula(monkeypatch, optimizer, block):
    if block:
        monkeypatch.setattr(optimizer, "BLOCK", block)
    params, grads = params_and_grads()
    W0 = params["dense.W"].copy()
    opt = optimizer(params, lr=0.01, eps=1e-8)
    opt.step(grads)
    g = grads["dense.W"]
    m_hat, s_hat = g, g * g  # after one step the bias corrections undo the (1 - beta) factors
    np.testing.assert_allclose(params["dense.W"], W0 - 0.01 * m_hat / (np.sqrt(s_hat) + 1e-8), rtol=1e-6)


def several_steps(optimizer, steps=4, **kwargs):
    """(start, gradients, params after one step per gradient): a weight matrix and a bias, new gradients each step."""
    rng = np.random.default_rng(7)
    start = {"dense.W": rng.standard_normal((3, 4)), "dense.b": rng.standard_normal(4)}
    params = {name: value.copy() for name, value in start.items()}
    grads = [{name: rng.standard_normal(value.shape) for name, value in start.items()} for _ in range(steps)]
    opt = optimizer(params, **kwargs)
    for g in grads:
        opt.step({name: value.copy() for name, value in g.items()})
    return start, grads, params


@pytest.mark.parametrize("optimizer, block", [(RMSProp, None), (FastRMSProp, 2**18), (FastRMSProp, 5)])
def test_rmsprop_follows_the_formula_over_several_steps_with_weight_decay(monkeypatch, optimizer, block):
    if block:
        monkeypatch.setattr(optimizer, "BLOCK", block)
    lr, rho, eps, decay = 0.01, 0.8, 1e-8, 0.05
    start, grads, params = several_steps(optimizer, lr=lr, rho=rho, eps=eps, weight_decay=decay)
    for name, decayed in (("dense.W", True), ("dense.b", False)):      # biases are not decayed
        w, s = start[name].copy(), np.zeros_like(start[name])
        for g in grads:
            g = g[name] + (decay * w if decayed else 0.0)
            s = rho * s + (1 - rho) * g ** 2
            w = w - lr * g / (np.sqrt(s) + eps)
        np.testing.assert_allclose(params[name], w, rtol=1e-12)


@pytest.mark.parametrize("optimizer, block", [(Adam, None), (FastAdam, 5)])
def test_adam_follows_the_formula_over_several_steps_with_weight_decay(monkeypatch, optimizer, block):
    """Algorithm 1 of Kingma & Ba, written out; optim.Adam folds the corrections into the rate, which moves eps
    (by a factor sqrt(1 - beta2^t)): below 1e-6 of lr here."""
    if block:
        monkeypatch.setattr(optimizer, "BLOCK", block)
    lr, beta1, beta2, eps, decay = 0.01, 0.8, 0.95, 1e-8, 0.05
    start, grads, params = several_steps(optimizer, steps=5, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                         weight_decay=decay)
    for name, decayed in (("dense.W", True), ("dense.b", False)):
        w, m, s = start[name].copy(), np.zeros_like(start[name]), np.zeros_like(start[name])
        for t, g in enumerate(grads, start=1):
            g = g[name] + (decay * w if decayed else 0.0)
            m = beta1 * m + (1 - beta1) * g
            s = beta2 * s + (1 - beta2) * g ** 2
            w = w - lr * (m / (1 - beta1 ** t)) / (np.sqrt(s / (1 - beta2 ** t)) + eps)
        np.testing.assert_allclose(params[name] - start[name], w - start[name], rtol=1e-6, atol=1e-6 * lr)  # the steps


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
def test_adams_first_step_has_size_lr_whatever_the_gradients_scale(scale):
    """With a constant gradient the bias-corrected moments are exactly g and g^2: every step is lr * sign(g)."""
    g = scale * np.array([0.3, -2.0, 1.0])
    params = {"w": np.zeros(3)}
    opt = Adam(params, lr=0.01, eps=1e-12 * scale)
    for t in range(1, 4):
        opt.step({"w": g.copy()})
        np.testing.assert_allclose(params["w"], -0.01 * t * np.sign(g), rtol=1e-9)


def test_nesterov_in_the_library_is_the_look_ahead_gradient_rewritten():
    """The definition: the gradient at the look-ahead point w + mu v. The library keeps u = w + mu v as the
    parameter; u then moves by mu v_new - lr g(u). Same path, for any gradient function."""
    rng = np.random.default_rng(3)
    H = rng.standard_normal((4, 4))
    H = H @ H.T + np.eye(4)                            # a convex quadratic, f = w.H.w / 2
    lr, mu = 0.02, 0.9
    w, v = rng.standard_normal(4), np.zeros(4)
    params = {"u": w.copy()}                           # v = 0: u starts at w
    opt = SGD(params, lr=lr, momentum=mu, nesterov=True)
    for _ in range(25):
        v = mu * v - lr * H @ (w + mu * v)            # the gradient where momentum is about to take us
        w = w + v
        opt.step({"u": H @ params["u"]})
        np.testing.assert_allclose(params["u"], w + mu * v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, nesterov=True), lambda p: Adam(p, lr=0.1),
                                  lambda p: RMSProp(p, lr=0.1)])
def test_optimizers_minimize_a_quadratic(make):
    target = np.array([3.0, -1.0, 2.0])
    params = {"w": np.zeros((1, 3))}
    opt = make(params)
    for _ in range(300):
        opt.step({"w": params["w"] - target})  # gradient of ||w - target||^2 / 2
    np.testing.assert_allclose(params["w"][0], target, atol=1e-3)


@pytest.mark.parametrize("make, steps", [(lambda p: SGD(p, lr=1e-3, momentum=0.9, nesterov=True), 5000),
                                         (lambda p: Adam(p, lr=0.02), 3000),
                                         (lambda p: RMSProp(p, lr=0.002), 8000)])
def test_optimizers_find_the_bottom_of_rosenbrocks_valley(make, steps):
    """f = (1 - x)^2 + 100 (y - x^2)^2: a curved, narrow valley, its minimum at (1, 1)."""
    params = {"w": np.array([-1.5, 2.0])}
    opt = make(params)
    for _ in range(steps):
        x, y = params["w"]
        opt.step({"w": np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])})
    np.testing.assert_allclose(params["w"], [1.0, 1.0], atol=1e-2)


def test_saved_state_continues_exactly():
    params, grads = params_and_grads()
    opt = Adam(params, lr=0.01)
    opt.step(grads)
    arrays, scalars = opt.state_dict()
    assert set(arrays) == {"m/dense.W", "m/dense.b", "s/dense.W", "s/dense.b"}
    copy = {k: v.copy() for k, v in params.items()}
    restored = Adam(copy, lr=0.5)
    restored.load_state_dict(arrays, scalars)
    opt.step(grads)
    restored.step(grads)
    for name in params:
        np.testing.assert_array_equal(copy[name], params[name])
    with pytest.raises(ValueError, match="no matching"):
        SGD({"other.W": np.zeros(2)}, lr=0.1).load_state_dict(arrays, scalars)


def test_rmsprop_saved_state_continues_exactly():
    params, grads = params_and_grads()
    opt = RMSProp(params, lr=0.01, rho=0.8, weight_decay=0.1)
    opt.step(grads)
    arrays, scalars = opt.state_dict()
    assert set(arrays) == {"s/dense.W", "s/dense.b"} and scalars["iterations"] == 1
    copy = {k: v.copy() for k, v in params.items()}
    restored = RMSProp(copy, lr=0.5, rho=0.8, weight_decay=0.1)
    restored.load_state_dict(arrays, scalars)
    for _ in range(2):
        opt.step(grads)
        restored.step(grads)
    for name in params:
        np.testing.assert_array_equal(copy[name], params[name])
    with pytest.raises(ValueError, match="no matching"):
        Adam(copy, lr=0.1).load_state_dict(arrays, scalars)     # RMSProp's state is not Adam's


def test_reduce_on_plateau_divides_by_ten_after_patience():
    params, _ = params_and_grads()
    opt = SGD(params, lr=0.1)
    schedule = ReduceLROnPlateau(opt, factor=0.1, patience=2)
    reduced = [schedule.step(acc) for acc in (0.5, 0.6, 0.6, 0.59, 0.6, 0.7)]
    assert reduced == [False, False, False, False, True, False]
    assert opt.lr == pytest.approx(0.01)


def test_step_schedule():
    params, _ = params_and_grads()
    opt = SGD(params, lr=1.0)
    schedule = StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(5):
        schedule.step()
    assert opt.lr == pytest.approx(0.25)


@pytest.mark.parametrize("kwargs", [dict(lr=0), dict(lr=0.1, momentum=1.0), dict(lr=0.1, weight_decay=-1)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SGD({"w": np.zeros(2)}, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(lr=0), dict(lr=0.1, rho=1.0), dict(lr=0.1, rho=-0.1),
                                    dict(lr=0.1, weight_decay=-1)])
def test_bad_rmsprop_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        RMSProp({"w": np.zeros(2)}, **kwargs)


def test_warmup_ramps_linearly_from_a_tenth_then_leaves_the_rate_alone():
    params, grads = params_and_grads()
    opt = SGD(params, lr=0.5)
    warmup = LinearWarmup(opt, steps=4, start_factor=0.1)
    seen = []
    for _ in range(6):
        warmup.step()
        seen.append(opt.lr)
        opt.step(grads)
    np.testing.assert_allclose(seen, [0.05, 0.1625, 0.275, 0.3875, 0.5, 0.5])
    assert not warmup.active
    opt.lr = 0.05  # a later schedule's change is kept
    warmup.step()
    assert opt.lr == 0.05


def test_warmup_continues_from_the_optimizers_count_after_a_resume():
    params, grads = params_and_grads()
    opt = SGD(params, lr=1.0)
    warmup = LinearWarmup(opt, steps=10)
    for _ in range(3):
        warmup.step()
        opt.step(grads)
    arrays, scalars = opt.state_dict()
    fresh = SGD({k: v.copy() for k, v in params.items()}, lr=1.0)
    fresh.load_state_dict(arrays, scalars)
    again = LinearWarmup(fresh, steps=99)
    again.load_state_dict(warmup.state_dict())
    again.step()
    warmup.step()
    assert fresh.lr == opt.lr == pytest.approx(0.1 + 0.9 * 3 / 10)
    with pytest.raises(ValueError, match="start_factor"):
        LinearWarmup(opt, 5, start_factor=0)


def test_clip_grad_norm_bounds_the_global_norm_and_keeps_the_direction():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    original = {k: v.copy() for k, v in grads.items()}
    norm = float(np.sqrt(sum((g * g).sum() for g in original.values())))
    assert float(clip_grad_norm(grads, norm / 2)) == pytest.approx(norm)
    for k in grads:
        np.testing.assert_allclose(grads[k], original[k] / 2, rtol=1e-12)
    assert float(clip_grad_norm(grads, 10 * norm)) == pytest.approx(norm / 2)  # small enough: unchanged
    for k in grads:
        np.testing.assert_allclose(grads[k], original[k] / 2, rtol=1e-12)
    with pytest.raises(ValueError, match="max_norm must be positive"):
        clip_grad_norm(grads, float("nan"))


@pytest.mark.parametrize("reference, fast, kwargs", [
    (SGD, FastSGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (Adam, FastAdam, dict(lr=0.01, weight_decay=1e-3)),
    (RMSProp, FastRMSProp, dict(lr=0.01, rho=0.8, weight_decay=1e-3))])
def test_the_fast_update_equals_the_readable_one_and_resumes_it(xp, monkeypatch, reference, fast, kwargs):
    monkeypatch.setattr(fast, "BLOCK", 5)  # blocks that cut every parameter unevenly
    rng = np.random.default_rng(0)
    shapes = {"a.W": (3, 7), "a.b": (7,), "b.W": (2, 2, 3, 4)}
    start = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    runs = {}
    for optimizer in (reference, fast):
        params = {name: xp.asarray(value) for name, value in start.items()}
        opt = optimizer(params, **kwargs)
        for step in range(4):
            grads = {name: xp.asarray(np.random.default_rng(step).standard_normal(shapes[name])) for name in shapes}
            before = {name: g.copy() for name, g in grads.items()}
            opt.step(grads)
            assert all(bool((grads[n] == before[n]).all()) for n in grads)  # the gradients are left alone
        runs[optimizer] = (params, opt.state_dict())
    for name in shapes:
        np.testing.assert_allclose(xp.asnumpy(runs[fast][0][name]) if xp is not np else runs[fast][0][name],
                                   xp.asnumpy(runs[reference][0][name]) if xp is not np else runs[reference][0][name],
                                   rtol=1e-12, atol=1e-14)
    assert fast.name == reference.name  # a checkpoint of one resumes with the other
    assert runs[fast][1][0].keys() == runs[reference][1][0].keys()


def test_the_plateau_schedule_does_not_cut_the_rate_at_chance_level():
    """A network at 10% on 10 classes has not plateaued, it has not started: epochs at or below the threshold
    count neither as a best nor against the rate; above it the schedule works as before."""
    optimizer = SGD({"w": np.zeros(2)}, lr=0.02)
    schedule = ReduceLROnPlateau(optimizer, patience=1, threshold=0.15)
    assert not any(schedule.step(v) for v in (0.12, 0.099, 0.099, 0.117, 0.122, 0.10))
    assert optimizer.lr == 0.02 and schedule.best is None
    assert [schedule.step(v) for v in (0.4, 0.39, 0.38)] == [False, False, True] and optimizer.lr == 0.002
