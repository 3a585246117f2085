"""Numerical gradient checks: the proof that a backward pass is right.

A derivative is a limit, so we can estimate it without any calculus:

    dL/dx_i ~ (L(x + eps*e_i) - L(x - eps*e_i)) / (2*eps)      (central difference)

whose error shrinks like eps**2. In float64 with eps = 1e-6 it agrees with a
correct analytic gradient to about 1e-9 relative error; a wrong backward pass
is off by far more. Three checks build on this:

- :func:`numerical_gradient`: the estimate above for every element of an array.
- :func:`check_layer`: one layer's dL/dx and every dL/dparam, element by element,
  for the scalar loss L = sum(forward(x) * G) with a fixed random G (so that
  backward receives dout = G).
- :func:`check_direction`: for inputs too large to perturb one element at a
  time (a whole model), compare the directional derivative <grad L, v> with
  (L(x + eps*v) - L(x - eps*v)) / (2*eps) along a few random directions v.

The error measure is ||a - n|| / (||a|| + ||n||): 0 when equal, 1 when
unrelated, and not fooled by entries that are near zero. A failed check raises
:class:`GradientCheckError` with the error and a preview of both gradients.

Run ``python -m tinyvgg.gradcheck`` to check every layer of the package.
"""
import contextlib

import numpy as np

from .backend import get_array_module, to_host

DEFAULT_EPS = 1e-6
DEFAULT_TOL = 1e-6


class GradientCheckError(AssertionError):
    """An analytic gradient disagrees with its numerical estimate. ``errors``: the relative error of each
    gradient that failed, ``{name: error}`` (empty for a random-direction check, whose message gives it)."""

    errors = {}


def relative_error(analytic, numeric):
    """||a - n|| / (||a|| + ||n||) over all elements, computed on the host in float64."""
    a = to_host(analytic).astype(np.float64)
    n = to_host(numeric).astype(np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def _preview(values, count=6):
    flat = np.ravel(to_host(values))
    text = np.array2string(flat[:count], precision=6, separator=", ")
    return text if flat.size <= count else text[:-1] + ", ...]"


def _require_float64(name, array):
    if array.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 arrays ({name} is {array.dtype}): "
                        "float32 rounding swamps the finite differences; build the layer with dtype=np.float64.")


def numerical_gradient(f, x, eps=DEFAULT_EPS):
    """Estimate dL/dx by central differences, one element at a time.

    f: a function of no arguments returning the scalar loss, which reads ``x``;
    x: a float64 array, perturbed in place and restored exactly.
    Returns an array of x's shape and backend. Costs 2 * x.size calls of f.
    """
    _require_float64("x", x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient perturbs x in place through a flat view: pass a C-contiguous array.")
    xp = get_array_module(x)
    grad = np.zeros(x.shape)
    flat_x = x.reshape(-1)  # a view: writing to it perturbs x
    for i in range(flat_x.size):
        old = flat_x[i].copy()
        flat_x[i] = old + eps
        loss_plus = float(f())
        flat_x[i] = old - eps
        loss_minus = float(f())
        flat_x[i] = old
        grad.flat[i] = (loss_plus - loss_minus) / (2 * eps)
    return xp.asarray(grad)


def _raise_if_failed(errors, analytic, numeric, tol, what):
    failed = {name: err for name, err in errors.items() if not err < tol}
    if failed:
        lines = [f"{what}: gradient check failed (relative error must be below {tol:g})"]
        for name, err in failed.items():
            lines += [f"  {name}: relative error {err:.3e}",
                      f"    analytic  {_preview(analytic[name])}",
                      f"    numerical {_preview(numeric[name])}"]
        error = GradientCheckError("\n".join(lines))
        error.errors = failed
        raise error


def check_layer(layer, x, *, eps=DEFAULT_EPS, tol=DEFAULT_TOL, seed=0):
    """Check a layer's dL/dx and every dL/dparam against central differences.

    The loss is L = sum(layer.forward(x, train=True) * G) with G a fixed random
    array, so backward is called with dout = G. x and the parameters must be
    float64. Returns ``{"x": err, "W": err, ...}`` (relative errors) and raises
    :class:`GradientCheckError` if any is not below ``tol``.
    """
    _require_float64("x", x)
    for name, p in layer.params.items():
        _require_float64(name, p)
    xp = get_array_module(x)
    out = layer.forward(x, train=True)
    G = xp.asarray(np.random.default_rng(seed).standard_normal(out.shape))

    def loss():
        return (layer.forward(x, train=True) * G).sum()

    analytic = {"x": layer.backward(G).copy()}
    analytic.update({name: g.copy() for name, g in layer.grads.items()})
    numeric = {"x": numerical_gradient(loss, x, eps)}
    for name, p in layer.params.items():
        numeric[name] = numerical_gradient(loss, p, eps)
    errors = {name: relative_error(analytic[name], numeric[name]) for name in numeric}
    _raise_if_failed(errors, analytic, numeric, tol, repr(layer))
    return errors


def check_loss(loss_layer, logits, labels, *, eps=DEFAULT_EPS, tol=DEFAULT_TOL):
    """Check a loss layer's dL/dlogits against central differences; returns the relative error."""
    _require_float64("logits", logits)
    loss_layer.forward(logits, labels)
    analytic = {"logits": loss_layer.backward().copy()}
    numeric = {"logits": numerical_gradient(lambda: loss_layer.forward(logits, labels), logits, eps)}
    errors = {"logits": relative_error(analytic["logits"], numeric["logits"])}
    _raise_if_failed(errors, analytic, numeric, tol, repr(loss_layer))
    return errors["logits"]


def check_direction(loss_fn, arrays, grads, *, directions=3, eps=DEFAULT_EPS, tol=DEFAULT_TOL, seed=0,
                    what="model"):
    """Random-direction check: <grad L, v> against (L(a + eps*v) - L(a - eps*v)) / (2*eps).

    loss_fn: no-argument function returning the scalar loss computed from
    ``arrays`` (perturbed in place and restored). grads: the analytic
    gradients, one per array. Each direction v is drawn over all arrays jointly
    and scaled to unit length. Returns the worst relative error,
    |a - n| / (|a| + |n|), and raises :class:`GradientCheckError` above ``tol``.
    """
    for i, a in enumerate(arrays):
        _require_float64(f"array {i}", a)
    rng = np.random.default_rng(seed)
    saved = [a.copy() for a in arrays]
    worst = 0.0
    try:
        for d in range(directions):
            vs = [rng.standard_normal(a.shape) for a in arrays]
            norm = np.sqrt(sum(float((v * v).sum()) for v in vs))
            vs = [get_array_module(a).asarray(v / norm) for a, v in zip(arrays, vs)]
            analytic = sum(float((g * v).sum()) for g, v in zip(grads, vs))
            for a, a0, v in zip(arrays, saved, vs):
                a[...] = a0 + eps * v
            loss_plus = float(loss_fn())
            for a, a0, v in zip(arrays, saved, vs):
                a[...] = a0 - eps * v
            loss_minus = float(loss_fn())
            numeric = (loss_plus - loss_minus) / (2 * eps)
            denom = abs(analytic) + abs(numeric)
            err = 0.0 if denom == 0 else abs(analytic - numeric) / denom
            worst = max(worst, err)
            if not err < tol:
                raise GradientCheckError(
                    f"{what}: random-direction check {d} failed: relative error {err:.3e} (must be below {tol:g}); "
                    f"analytic <grad, v> = {analytic:.9g}, numerical = {numeric:.9g}")
    finally:
        for a, a0 in zip(arrays, saved):
            a[...] = a0
    return worst


@contextlib.contextmanager
def frozen_randomness(layers):
    """Within the block, calling the yielded function holds every layer's random draws (dropout
    masks) at those of the last training forward pass (:meth:`~tinyvgg.layers.Layer.hold_randomness`);
    they are released at the end.

    A gradient check evaluates the loss many times; it must be the same function
    each time, so random masks are drawn once and then held fixed.
    """
    try:
        yield lambda: [layer.hold_randomness(True) for layer in layers]
    finally:
        for layer in layers:
            layer.hold_randomness(False)


def check_model(layers, loss_layer, x, labels, **kwargs):
    """Random-direction check of a whole stack of layers plus a loss.

    layers: a list of layers (or a model with a ``layers`` attribute), float64;
    the check moves x and every parameter along random directions at once.
    Dropout masks are held fixed for the check. Returns the worst relative error.
    """
    layers = list(getattr(layers, "layers", layers))

    def loss():
        out = x
        for layer in layers:
            out = layer.forward(out, train=True)
        return loss_layer.forward(out, labels)

    with frozen_randomness(layers) as freeze:
        loss()
        freeze()
        dout = loss_layer.backward()
        for layer in reversed(layers):
            dout = layer.backward(dout)
        arrays, grads = [x], [dout]
        for layer in layers:
            for name in layer.params:
                arrays.append(layer.params[name])
                grads.append(layer.grads[name].copy())
        return check_direction(loss, arrays, grads, what=kwargs.pop("what", "model"), **kwargs)


def _demo_layers(rng):
    """One small float64 instance of every layer, with an input that avoids kinks and ties."""
    from .layers import GlobalAveragePool2D, ImageCentering
    from .layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPool2D, ReLU
    f64 = np.float64
    away_from_zero = rng.uniform(0.1, 1.0, (2, 4, 4, 3)) * rng.choice([-1.0, 1.0], (2, 4, 4, 3))
    dropout = Dropout(0.5, rng=rng)
    dropout.fixed_mask = (rng.random((2, 6)) >= 0.5) / 0.5
    return [
        (Conv2D(3, 4, kernel_size=3, rng=rng, dtype=f64), rng.standard_normal((2, 5, 5, 3))),
        (Conv2D(3, 2, kernel_size=1, rng=rng, dtype=f64), rng.standard_normal((2, 3, 3, 3))),
        (BatchNorm2D(3, dtype=f64), rng.standard_normal((2, 4, 4, 3)) * 2 + 1),
        (MaxPool2D(), rng.permutation(2 * 5 * 5 * 3).reshape(2, 5, 5, 3) / 10.0),  # distinct: no ties
        (Dense(6, 4, rng=rng, dtype=f64), rng.standard_normal((3, 6))),
        (ReLU(), away_from_zero),
        (LeakyReLU(0.1), away_from_zero),
        (dropout, rng.standard_normal((2, 6))),
        (Flatten(), rng.standard_normal((2, 2, 2, 3))),
        (Conv2D(3, 2, kernel_size=3, rng=rng, dtype=f64, stride=2, dilation=2), rng.standard_normal((2, 7, 6, 3))),
        (GlobalAveragePool2D(), rng.standard_normal((2, 3, 4, 3))),
        (ImageCentering(), rng.standard_normal((2, 4, 3, 3))),
    ]


def _blank_part(err):
    """The part that a blank of the student version names in its NotImplementedError (or the message)."""
    text = str(err) or "a part"
    return text[len("part "):] if text.startswith("part ") else text


def main(argv=None):
    """Gradient-check every layer and a small stack; print the relative errors.

    In the student version some parts are still blank (they raise NotImplementedError, naming
    the part): the checks of what is written run, and the blanks are listed at the end.
    Returns 0 when every check ran and passed, 1 when some part is not written yet.
    """
    import argparse
    argparse.ArgumentParser(prog="python -m tinyvgg.gradcheck",
                            description="Gradient-check every layer of tinyvgg and a small stack of them, "
                                        "in float64, and print the relative errors.").parse_args(argv)
    from .layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy
    rng = np.random.default_rng(0)
    blank = {}  # part -> what could not be checked because of it
    print(f"{'layer':<45} {'gradient':<8} {'relative error':>14}")

    def attempt(what, check):
        try:
            return check()
        except NotImplementedError as err:
            blank.setdefault(_blank_part(err), []).append(what)
            print(f"{what:<45} {'-':<8} {'not written':>14}")
            return None

    for layer, x in _demo_layers(rng):
        errors = attempt(repr(layer), lambda: check_layer(layer, x))
        for name, err in (errors or {}).items():
            print(f"{layer!r:<45} {'d' + name:<8} {err:>14.2e}")
    logits = rng.standard_normal((4, 5))
    err = attempt("SoftmaxCrossEntropy()", lambda: check_loss(SoftmaxCrossEntropy(), logits, rng.integers(0, 5, 4)))
    if err is not None:
        print(f"{'SoftmaxCrossEntropy()':<45} {'dlogits':<8} {err:>14.2e}")
    f64 = np.float64
    stack = [Conv2D(3, 4, rng=rng, dtype=f64), BatchNorm2D(4, dtype=f64), ReLU(), MaxPool2D(),
             Conv2D(4, 4, rng=rng, dtype=f64), ReLU(), MaxPool2D(), Flatten(), Dense(16, 8, rng=rng, dtype=f64),
             ReLU(), Dropout(0.5, rng=rng), Dense(8, 3, rng=rng, dtype=f64)]
    x = rng.standard_normal((2, 8, 8, 3))
    err = attempt("a small CNN using every layer",
                  lambda: check_model(stack, SoftmaxCrossEntropy(), x, rng.integers(0, 3, 2), directions=5))
    if err is not None:
        print(f"{'a small CNN using every layer':<45} {'random v':<8} {err:>14.2e}")
    if blank:
        print("every written part passed its gradient check; not written yet: "
              + "; ".join(f"part {part} (needed by {', '.join(whats)})" for part, whats in blank.items()))
        return 1
    print(f"all gradient checks passed (tolerance {DEFAULT_TOL:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
