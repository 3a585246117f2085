"""The grader's checks, one function per assignment part.

This file runs in a separate process with the *student's* ``tinyvgg`` first on
the path: ``python assignment_checks.py PART SEED RESULT.json``. It relies on
nothing of the student's beyond the functions under test: its loop references
and its central-difference gradients are written out here, so an edited
``gradcheck.py`` cannot change a grade. Inputs are drawn from ``SEED``, which
the grader picks at random each time, so they are not the student's test inputs.
Each check is worth some points; one that fails or raises loses them with a reason.
"""
import json
import sys
import traceback

import numpy as np

TOL = 1e-6


def numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = float(f())
        flat[i] = old - eps
        minus = float(f())
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad


def rel_error(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape}, expected {b.shape}")
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def expect_close(what, got, expected, tol=TOL):
    err = rel_error(got, expected)
    if not err < tol:
        raise AssertionError(f"{what} is off: relative error {err:.1e}")


def layer_gradients(layer, x, rng):
    """(analytic, numerical) gradients of sum(forward(x) * G) for x and every parameter."""
    out = layer.forward(x, train=True)
    G = rng.standard_normal(out.shape)
    analytic = {"dx": np.array(layer.backward(G.copy()))}
    analytic.update({f"d{k}": np.array(v) for k, v in layer.grads.items()})

    def loss():
        return (layer.forward(x, train=True) * G).sum()
    numeric = {"dx": numerical_gradient(loss, x)}
    numeric.update({f"d{k}": numerical_gradient(loss, p) for k, p in layer.params.items()})
    return analytic, numeric


def expect_gradients(layer, x, rng):
    analytic, numeric = layer_gradients(layer, x, rng)
    for name in numeric:
        if name not in analytic:
            raise AssertionError(f"backward did not fill grads[{name[1:]!r}]")
        expect_close(f"{type(layer).__name__} backward {name}", analytic[name], numeric[name])


def conv_loops(x, W, b, pad):
    N, H, Wd, C = x.shape
    K, F = W.shape[0], W.shape[3]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho, Wo = H + 2 * pad - K + 1, Wd + 2 * pad - K + 1
    out = np.empty((N, Ho, Wo, F))
    for n in range(N):
        for h in range(Ho):
            for w in range(Wo):
                out[n, h, w] = np.tensordot(xp[n, h:h + K, w:w + K], W, axes=3) + b
    return out


def pool_loops(x, dout=None):
    N, H, W, C = x.shape
    out, dx = np.empty((N, H // 2, W // 2, C)), np.zeros_like(x)
    for n in range(N):
        for h in range(H // 2):
            for w in range(W // 2):
                for c in range(C):
                    win = x[n, 2 * h:2 * h + 2, 2 * w:2 * w + 2, c]
                    out[n, h, w, c] = win.max()
                    if dout is not None:
                        i, j = np.unravel_index(np.argmax(win), (2, 2))
                        dx[n, 2 * h + i, 2 * w + j, c] = dout[n, h, w, c]
    return out, dx


# ---------------------------------------------------------------- the parts

def check_im2col(rng):
    from tinyvgg.im2col import col2im, im2col

    def copies_patches():
        for K, padding, pad in ((3, "same", 1), (1, "same", 0), (5, "valid", 0)):
            x = rng.standard_normal((2, 6, 5, 3))
            xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            Ho, Wo = 6 + 2 * pad - K + 1, 5 + 2 * pad - K + 1
            rows = [xp[n, h:h + K, w:w + K].ravel() for n in range(2) for h in range(Ho) for w in range(Wo)]
            expect_close(f"im2col (K={K}, padding={padding!r})", im2col(x, K, padding), np.array(rows), 1e-12)

    def adjoint():
        x = rng.standard_normal((2, 5, 6, 4))
        y = rng.standard_normal(im2col(x).shape)
        dx = col2im(y, x.shape)
        expect_close("<x, col2im(y)> against <im2col(x), y>", np.vdot(x, dx), np.vdot(im2col(x), y), 1e-10)
    return [(5, "im2col copies every patch", copies_patches), (5, "col2im is the adjoint of im2col", adjoint)]


def check_conv(rng):
    from tinyvgg.layers import Conv2D

    def forward():
        layer = Conv2D(3, 4, kernel_size=3, rng=rng, dtype=np.float64, fast=False)
        layer.params["b"] = rng.standard_normal(4)
        x = rng.standard_normal((2, 5, 6, 3))
        expect_close("Conv2D forward", layer.forward(x), conv_loops(x, layer.params["W"], layer.params["b"], 1))

    def backward():
        layer = Conv2D(2, 3, kernel_size=3, rng=rng, dtype=np.float64, fast=False)
        layer.params["b"] = rng.standard_normal(3)
        expect_gradients(layer, rng.standard_normal((2, 4, 5, 2)), rng)
    return [(10, "Conv2D forward matches the definition", forward),
            (10, "Conv2D backward matches numerical gradients", backward)]


def check_pool(rng):
    from tinyvgg.layers import MaxPool2D

    def forward():
        x = rng.standard_normal((2, 6, 4, 3))
        expect_close("MaxPool2D forward", MaxPool2D(fast=False).forward(x), pool_loops(x)[0], 1e-12)

    def backward_with_ties():
        x = rng.integers(0, 3, (2, 4, 6, 2)).astype(np.float64)  # many ties: the first maximum wins
        pool = MaxPool2D(fast=False)
        out = pool.forward(x, train=True)
        dout = rng.standard_normal(out.shape)
        expect_close("MaxPool2D backward (with ties)", pool.backward(dout), pool_loops(x, dout)[1], 1e-12)

    def odd_sizes():
        x = rng.permutation(2 * 5 * 7 * 2).reshape(2, 5, 7, 2) / 10.0
        pool = MaxPool2D(fast=False)
        out = pool.forward(x, train=True)
        if out.shape != (2, 2, 3, 2):
            raise AssertionError(f"an odd-sized input gives output shape {out.shape}, expected (2, 2, 3, 2)")
        dout = rng.standard_normal(out.shape)
        expect_close("MaxPool2D backward (odd sizes)", pool.backward(dout), pool_loops(x, dout)[1], 1e-12)
    return [(5, "MaxPool2D forward", forward),
            (5, "MaxPool2D backward routes to the first maximum", backward_with_ties),
            (5, "MaxPool2D floors odd sizes", odd_sizes)]


def check_dense(rng):
    from tinyvgg.layers import Dense

    def forward():
        layer = Dense(5, 3, rng=rng, dtype=np.float64)
        layer.params["b"] = rng.standard_normal(3)
        x = rng.standard_normal((4, 5))
        expect_close("Dense forward", layer.forward(x), x @ layer.params["W"] + layer.params["b"], 1e-12)

    def backward():
        layer = Dense(4, 3, rng=rng, dtype=np.float64)
        expect_gradients(layer, rng.standard_normal((3, 4)), rng)
    return [(4, "Dense forward", forward), (6, "Dense backward matches numerical gradients", backward)]


def check_relu(rng):
    from tinyvgg.layers import ReLU

    def forward():
        x = rng.standard_normal((3, 7))
        expect_close("ReLU forward", ReLU().forward(x), np.maximum(x, 0), 1e-12)

    def backward():
        x = rng.uniform(0.1, 1, (3, 5)) * rng.choice([-1.0, 1.0], (3, 5))
        expect_gradients(ReLU(), x, rng)
    return [(4, "ReLU forward", forward), (6, "ReLU backward matches numerical gradients", backward)]


def check_dropout(rng):
    from tinyvgg.layers import Dropout

    def evaluation():
        x = rng.standard_normal((4, 5))
        expect_close("Dropout at evaluation (must be the identity)", Dropout(0.5, rng=rng).forward(x), x, 1e-12)

    def training():
        x = np.ones((400, 250))
        out = np.asarray(Dropout(0.3, rng=np.random.default_rng(int(rng.integers(1 << 30)))).forward(x, train=True))
        zeros, mean = float((out == 0).mean()), float(out.mean())
        if abs(zeros - 0.3) > 0.01 or abs(mean - 1.0) > 0.02:
            raise AssertionError(f"Dropout(0.3) in training zeroed {zeros:.3f} of the units (expected 0.3) and kept "
                                 f"the mean at {mean:.3f} (expected 1.0: inverted dropout scales by 1 / (1 - rate))")

    def backward():
        layer = Dropout(0.5, rng=np.random.default_rng(int(rng.integers(1 << 30))))
        x = rng.standard_normal((6, 8))
        out = np.asarray(layer.forward(x, train=True))
        dout = rng.standard_normal(out.shape)
        expected = np.where(out != 0, dout * 2.0, 0)  # the kept units, scaled by 1 / (1 - 0.5)
        expect_close("Dropout backward (the forward pass's mask)", layer.backward(dout), expected, 1e-12)
    return [(3, "Dropout is the identity at evaluation", evaluation),
            (4, "Dropout drops `rate` of the units and keeps the mean", training),
            (3, "Dropout backward applies the same mask", backward)]


def check_softmax(rng):
    from tinyvgg.layers import SoftmaxCrossEntropy

    def forward():
        logits = rng.standard_normal((5, 4)) * 3
        labels = rng.integers(0, 4, 5)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        expected = -np.log(p[np.arange(5), labels]).mean()
        expect_close("SoftmaxCrossEntropy forward", SoftmaxCrossEntropy().forward(logits, labels), expected, 1e-10)
        huge = float(SoftmaxCrossEntropy().forward(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([1, 1])))
        if not np.isfinite(huge) or abs(huge - 500.0) > 1e-6:
            raise AssertionError(f"loss of logits around 1000 is {huge} (expected 500): subtract each row's maximum")

    def backward():
        loss = SoftmaxCrossEntropy()
        logits = rng.standard_normal((4, 5))
        labels = rng.integers(0, 5, 4)
        loss.forward(logits, labels)
        analytic = np.array(loss.backward())
        numeric = numerical_gradient(lambda: SoftmaxCrossEntropy().forward(logits, labels), logits)
        expect_close("SoftmaxCrossEntropy backward", analytic, numeric)
    return [(5, "SoftmaxCrossEntropy forward, stable for large logits", forward),
            (5, "SoftmaxCrossEntropy backward matches numerical gradients", backward)]


def check_sgd(rng):
    from tinyvgg.optim import SGD

    def momentum():
        w0, g1, g2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
        params = {"layer.W": w0.copy()}
        opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
        opt.step({"layer.W": g1.copy()})
        opt.step({"layer.W": g2.copy()})
        v1 = -0.1 * (g1 + 0.01 * w0)
        w1 = w0 + v1
        v2 = 0.9 * v1 - 0.1 * (g2 + 0.01 * w1)
        expect_close("two momentum SGD steps with weight decay", params["layer.W"], w1 + v2, 1e-12)

    def nesterov():
        w0, g = rng.standard_normal(6), rng.standard_normal(6)
        params = {"layer.W": w0.copy().reshape(2, 3)}
        SGD(params, lr=0.1, momentum=0.9, nesterov=True).step({"layer.W": g.copy().reshape(2, 3)})
        v = -0.1 * g
        expect_close("a Nesterov step", params["layer.W"].ravel(), w0 + 0.9 * v - 0.1 * g, 1e-12)
    return [(10, "momentum SGD with weight decay follows the formula", momentum),
            (5, "Nesterov momentum", nesterov)]


CHECKS = {"im2col": check_im2col, "conv": check_conv, "pool": check_pool, "dense": check_dense,
          "relu": check_relu, "dropout": check_dropout, "softmax": check_softmax, "sgd": check_sgd}


def run_part(part, seed):
    """[{"check", "points", "max", "reason"}] for one part."""
    rng = np.random.default_rng(seed)
    results = []
    for points, name, check in CHECKS[part](rng):
        try:
            check()
            results.append({"check": name, "points": points, "max": points, "reason": None})
        except NotImplementedError:
            results.append({"check": name, "points": 0, "max": points, "reason": "not implemented yet"})
        except AssertionError as err:
            results.append({"check": name, "points": 0, "max": points, "reason": str(err)})
        except Exception as err:  # the student's code raised
            where = traceback.extract_tb(err.__traceback__)[-1]
            results.append({"check": name, "points": 0, "max": points,
                            "reason": f"raised {type(err).__name__}: {err} (line {where.lineno} of "
                                      f"{where.filename.rsplit('/', 1)[-1]})"})
    return results


if __name__ == "__main__":
    part, seed, result_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    try:
        report = run_part(part, seed)
    except Exception as err:  # e.g. the student's package does not import
        report = [{"check": "import", "points": 0, "max": None,
                   "reason": f"the package could not be used: {type(err).__name__}: {err}"}]
    with open(result_path, "w") as f:
        json.dump(report, f)
