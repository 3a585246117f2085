"""The grader's checks: inputs, reference answers and points, one function per part.

Everything here runs in the grader's own process and never imports a student's
code. ``make_task(part, seed)`` draws the inputs of a part from ``seed`` (a fresh
random one at each grading), computes the right answers with the loop references
of :mod:`tinyvgg.naive` and the formulas below (float64), and lists the checks:
each names a *case* (a recipe of :mod:`tinyvgg.assignment_runner` with its inputs),
how its outputs are judged, and the points it is worth. The student's code runs
the cases in a sandboxed child and hands back arrays; :func:`score` judges them.
A part can never earn more than its checks are worth.
"""
import numpy as np

from . import feedback, naive
from .runner import compare

#: Points per part (their sum is what a submission with every part can earn).
PARTS = {"im2col": 10, "conv": 20, "pool": 10, "dense": 10, "relu": 5, "dropout": 10, "softmax": 10, "sgd": 10,
         "batchnorm": 15, "leaky": 5,
         "strided": 10, "global_average": 5, "rmsprop": 5, "adam": 10, "top_k": 5, "residual": 10}
TOL = 1e-6


class Task:
    """The cases of one part (inputs and recipe) and its checks (what each case must output)."""

    def __init__(self, part):
        self.part, self.cases, self.checks = part, {}, []
        self.lent_im2col = {}  # "H,W,C,K,pad" -> im2col's gather index: conv is judged with the grader's im2col

    def lend_im2col(self, x_shape, K, pad):
        """Hand the child im2col for inputs of ``x_shape`` as plain data: for one padded image, the flat
        position of every entry of its columns (the loop version run on the positions themselves)."""
        _, H, W, C = x_shape
        positions = np.arange((H + 2 * pad) * (W + 2 * pad) * C, dtype=np.float64)
        index = naive.im2col(positions.reshape(1, H + 2 * pad, W + 2 * pad, C), K, 0)  # (Ho*Wo, K*K*C)
        self.lent_im2col[f"{H},{W},{C},{K},{pad}"] = index.astype(np.int64)

    def case(self, name, recipe, arrays, **kwargs):
        self.cases[name] = {"recipe": recipe, "arrays": {k: np.asarray(v) for k, v in arrays.items()},
                            "kwargs": kwargs}
        return name

    def check(self, points, title, case, expected=None, kind="match", tol=TOL):
        self.checks.append({"points": points, "title": title, "case": case, "kind": kind, "tol": tol,
                            "expected": {k: np.asarray(v, dtype=np.float64) for k, v in (expected or {}).items()}})

    def meta(self):
        """What the child needs to know (JSON): each case's recipe and keyword arguments."""
        return {"part": self.part,
                "cases": {name: {"recipe": c["recipe"], "kwargs": c["kwargs"]} for name, c in self.cases.items()}}

    def input_arrays(self):
        """``{"<case>/<name>": array}``: every input, for the task file."""
        arrays = {f"{case}/{name}": value for case, c in self.cases.items() for name, value in c["arrays"].items()}
        return {**arrays, **{f"lend/{key}": index for key, index in self.lent_im2col.items()}}


def score(task, outputs, errors):
    """[{"check", "points", "max", "reason"}]: each check of ``task`` judged on the child's answer."""
    results = []
    for check in task.checks:
        case = task.cases[check["case"]]
        reason = errors.get(check["case"])
        if reason is None:
            got = {name.split("/", 1)[1]: value for name, value in outputs.items()
                   if name.startswith(check["case"] + "/")}
            reason = not_real_floats(got)
        if reason is None:
            reason = compare(check["kind"], got, check["expected"], case["arrays"], case["kwargs"], check["tol"])
            if reason and check["kind"] == "match":
                reason = _with_feedback(reason, got, check["expected"], case["arrays"])
        results.append({"check": check["title"], "points": 0 if reason is not None else check["points"],
                        "max": check["points"], "reason": reason})
    return results


def _with_feedback(reason, got, expected, inputs):
    """``reason``, and how the first wrong array differs from the right one (:mod:`feedback`)."""
    for name, want in expected.items():
        answer = got.get(name)
        if answer is not None and np.all(np.isfinite(answer)):
            hint = feedback.diagnose(name, answer, want, inputs)
            if hint:
                return f"{reason}; {hint}"
    return reason


def not_real_floats(arrays):
    """None when every array is real floating point, else a sentence naming the first that is not
    (a complex answer's imaginary part, or an integer answer's rounding, would otherwise go unseen)."""
    for name, value in arrays.items():
        if value.dtype.kind != "f":
            kind = {"c": "complex", "i": "integer", "u": "integer", "b": "boolean"}.get(value.dtype.kind, "non-float")
            return f"{name} is a {kind} array ({value.dtype}); the answer must be real floating point numbers"
    return None


# ---------------------------------------------------------------- the parts

def _im2col(task, rng):
    for K, padding, pad in ((3, "same", 1), (1, "same", 0), (5, "valid", 0)):
        x = rng.standard_normal((2, 6, 5, 3))
        case = task.case(f"im2col_K{K}_{padding}", "im2col", {"x": x}, K=K, padding=padding)
        task.check(2 if K == 1 else 4 if K == 3 else 1, f"im2col copies every patch (K={K}, padding={padding!r})",
                   case, {"cols": naive.im2col(x, K, pad)}, tol=1e-12)
    x_shape = (2, 5, 6, 4)
    cols = rng.standard_normal((2 * 5 * 6, 9 * 4))
    case = task.case("col2im", "col2im", {"cols": cols}, x_shape=x_shape, K=3, padding="same")
    task.check(3, "col2im adds every patch row back (the adjoint of im2col)", case,
               {"dx": naive.col2im(cols, x_shape, 3, 1)}, tol=1e-12)


def _conv(task, rng):
    x, W, b = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    case = task.case("forward", "conv_forward", {"x": x, "W": W, "b": b}, padding="same")
    task.lend_im2col(x.shape, 3, 1)
    task.check(10, "Conv2D forward matches the definition", case, {"out": naive.conv2d_forward(x, W, b, 1)})
    x, W, b = rng.standard_normal((2, 4, 5, 2)), rng.standard_normal((3, 3, 2, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((2, 4, 5, 3))
    dx, dW, db = naive.conv2d_backward(x, W, dout, 1)
    case = task.case("backward", "conv_backward", {"x": x, "W": W, "b": b, "dout": dout}, padding="same")
    task.lend_im2col(x.shape, 3, 1)
    task.check(10, "Conv2D backward gives dx, dW and db", case, {"dx": dx, "dW": dW, "db": db})


def _pool(task, rng):
    x = rng.standard_normal((2, 6, 4, 3))
    case = task.case("forward", "maxpool_forward", {"x": x})
    task.check(4, "MaxPool2D forward", case, {"out": naive.maxpool_forward(x)}, tol=1e-12)
    x = rng.integers(0, 3, (2, 4, 6, 2)).astype(np.float64)  # many ties: the first maximum wins
    dout = rng.standard_normal((2, 2, 3, 2))
    case = task.case("ties", "maxpool_backward", {"x": x, "dout": dout})
    task.check(3, "MaxPool2D backward routes to the first maximum (with ties)", case,
               {"dx": naive.maxpool_backward(x, dout)}, tol=1e-12)
    x = rng.permutation(2 * 5 * 7 * 2).reshape(2, 5, 7, 2) / 10.0
    dout = rng.standard_normal((2, 2, 3, 2))
    case = task.case("odd", "maxpool_backward", {"x": x, "dout": dout})
    task.check(3, "MaxPool2D floors odd sizes (backward gives 0 to the dropped edge)", case,
               {"dx": naive.maxpool_backward(x, dout)}, tol=1e-12)


def _dense(task, rng):
    x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    case = task.case("forward", "dense_forward", {"x": x, "W": W, "b": b})
    task.check(4, "Dense forward", case, {"out": x @ W + b}, tol=1e-12)
    x, W, b, dout = rng.standard_normal((3, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3), \
        rng.standard_normal((3, 3))
    case = task.case("backward", "dense_backward", {"x": x, "W": W, "b": b, "dout": dout})
    task.check(6, "Dense backward gives dx, dW and db", case,
               {"dx": dout @ W.T, "dW": x.T @ dout, "db": dout.sum(axis=0)}, tol=1e-12)


def _relu(task, rng):
    x = rng.standard_normal((3, 7))
    case = task.case("forward", "relu_forward", {"x": x})
    task.check(2, "ReLU forward", case, {"out": np.maximum(x, 0)}, tol=1e-12)
    x = rng.uniform(0.1, 1, (3, 5)) * rng.choice([-1.0, 1.0], (3, 5))
    dout = rng.standard_normal((3, 5))
    case = task.case("backward", "relu_backward", {"x": x, "dout": dout})
    task.check(3, "ReLU backward passes the gradient where x > 0", case, {"dx": dout * (x > 0)}, tol=1e-12)


def _dropout(task, rng):
    x = rng.standard_normal((4, 5))
    case = task.case("eval", "dropout_eval", {"x": x}, rate=0.5, seed=int(rng.integers(1 << 30)))
    task.check(3, "Dropout is the identity at evaluation", case, {"out": x}, tol=1e-12)
    x, dout = rng.standard_normal((400, 250)), rng.standard_normal((400, 250))
    case = task.case("train", "dropout_train", {"x": x, "dout": dout}, rate=0.3, seed=int(rng.integers(1 << 30)))
    task.check(7, "Dropout drops `rate` of the units, scales the rest, and backward uses the same mask", case,
               kind="dropout")


def _softmax(task, rng):
    logits, labels = rng.standard_normal((5, 4)) * 3, rng.integers(0, 4, 5)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    case = task.case("forward", "softmax_forward", {"logits": logits, "labels": labels})
    task.check(3, "SoftmaxCrossEntropy forward", case, {"loss": -np.log(p[np.arange(5), labels]).mean()}, tol=1e-10)
    case = task.case("huge", "softmax_forward", {"logits": np.array([[1000.0, 0.0], [0.0, 1000.0]]),
                                                 "labels": np.array([1, 1])})
    task.check(2, "SoftmaxCrossEntropy is stable for logits around 1000 (subtract each row's maximum)", case,
               {"loss": 500.0}, tol=1e-10)
    logits, labels = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    case = task.case("backward", "softmax_backward", {"logits": logits, "labels": labels})
    task.check(5, "SoftmaxCrossEntropy backward: (softmax - onehot) / N", case,
               {"dlogits": (p - np.eye(5)[labels]) / 4}, tol=1e-10)


def _sgd(task, rng):
    w0, g1, g2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    case = task.case("momentum", "sgd", {"w": w0, "grads": np.stack([g1, g2])}, lr=0.1, momentum=0.9,
                     nesterov=False, weight_decay=0.01)
    v1 = -0.1 * (g1 + 0.01 * w0)
    w1 = w0 + v1
    v2 = 0.9 * v1 - 0.1 * (g2 + 0.01 * w1)
    task.check(7, "two momentum SGD steps with weight decay follow the formula", case, {"w": w1 + v2}, tol=1e-12)
    w0, g = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    case = task.case("nesterov", "sgd", {"w": w0, "grads": g[None]}, lr=0.1, momentum=0.9, nesterov=True,
                     weight_decay=0.0)
    task.check(3, "a Nesterov step", case, {"w": w0 + 0.9 * (-0.1 * g) - 0.1 * g}, tol=1e-12)


def batchnorm_reference(x, gamma, beta, eps, mean=None, var=None):
    """out of batch normalization over (N, H, W): batch statistics unless ``mean`` and ``var`` are given."""
    x2 = x.reshape(-1, x.shape[-1])
    if mean is None:
        mean, var = x2.mean(axis=0), x2.var(axis=0)
    return ((x2 - mean) / np.sqrt(var + eps) * gamma + beta).reshape(x.shape)


def _numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        plus = f()
        x[i] = old - eps
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def _batchnorm(task, rng):
    C, eps, momentum = 3, 1e-5, 0.8
    x = rng.standard_normal((4, 3, 2, C)) * rng.uniform(0.5, 3, C) + rng.uniform(-2, 2, C)
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    case = task.case("train", "batchnorm_train", {"x": x, "gamma": gamma, "beta": beta}, momentum=momentum, eps=eps)
    m = x.size // C
    x2 = x.reshape(-1, C)
    task.check(5, "BatchNorm2D in training: batch statistics, and the running averages updated", case,
               {"out": batchnorm_reference(x, gamma, beta, eps), "running_mean": (1 - momentum) * x2.mean(axis=0),
                "running_var": momentum + (1 - momentum) * x2.var(axis=0) * m / (m - 1)})
    running_mean, running_var = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    case = task.case("eval", "batchnorm_eval", {"x": x, "gamma": gamma, "beta": beta, "running_mean": running_mean,
                                                "running_var": running_var}, momentum=momentum, eps=eps)
    task.check(3, "BatchNorm2D at evaluation uses the running statistics", case,
               {"out": batchnorm_reference(x, gamma, beta, eps, running_mean, running_var)})
    x = rng.standard_normal((2, 3, 3, C)) * 2 + 1
    dout = rng.standard_normal(x.shape)

    def loss():
        return float((batchnorm_reference(x, gamma, beta, eps) * dout).sum())
    expected = {"dx": _numerical_gradient(loss, x), "dgamma": _numerical_gradient(loss, gamma),
                "dbeta": _numerical_gradient(loss, beta)}
    case = task.case("backward", "batchnorm_backward", {"x": x, "gamma": gamma, "beta": beta, "dout": dout},
                     momentum=momentum, eps=eps)
    task.check(7, "BatchNorm2D backward gives dx, dgamma and dbeta", case, expected)


def _leaky_relu(task, rng):
    alpha = round(float(rng.uniform(0.05, 0.5)), 3)       # drawn: a slope written into the code as 0.01 fails
    x = rng.standard_normal((3, 7))
    case = task.case("forward", "leaky_relu_forward", {"x": x}, alpha=alpha)
    task.check(2, f"LeakyReLU({alpha}) forward: x where x > 0, alpha * x elsewhere", case,
               {"out": np.where(x > 0, x, alpha * x)}, tol=1e-12)
    x = rng.uniform(0.1, 1, (3, 5)) * rng.choice([-1.0, 1.0], (3, 5))   # away from the kink
    dout = rng.standard_normal((3, 5))
    case = task.case("backward", "leaky_relu_backward", {"x": x, "dout": dout}, alpha=alpha)
    task.check(3, f"LeakyReLU({alpha}) backward: dout where x > 0, alpha * dout elsewhere", case,
               {"dx": np.where(x > 0, dout, alpha * dout)}, tol=1e-12)


def _strided(task, rng):
    for K, padding, pad, stride, dilation, points in ((3, "same", 1, 2, 1, 3), (3, "same", 2, 1, 2, 2),
                                                      (2, 1, 1, 3, 2, 1)):
        x = rng.standard_normal((2, 7, 6, 3))
        case = task.case(f"im2col_K{K}_s{stride}_d{dilation}", "im2col_strided", {"x": x}, K=K, padding=padding,
                         stride=stride, dilation=dilation)
        task.check(points, f"im2col_strided copies every patch (K={K}, padding={padding!r}, stride={stride}, "
                           f"dilation={dilation})", case, {"cols": naive.im2col(x, K, pad, stride, dilation)},
                   tol=1e-12)
    for K, pad, stride, dilation in ((3, 1, 2, 2), (2, 0, 3, 1)):   # the second reads some pixels never: dx 0 there
        x_shape = (2, 7, 8, 2)
        rows = 2 * naive.output_size(7, K, pad, stride, dilation) * naive.output_size(8, K, pad, stride, dilation)
        cols = rng.standard_normal((rows, K * K * 2))
        case = task.case(f"col2im_K{K}_s{stride}_d{dilation}", "col2im_strided", {"cols": cols}, x_shape=x_shape,
                         K=K, padding=pad, stride=stride, dilation=dilation)
        task.check(2, f"col2im_strided adds every entry back where it came from (K={K}, stride={stride}, "
                      f"dilation={dilation})", case, {"dx": naive.col2im(cols, x_shape, K, pad, stride, dilation)},
                   tol=1e-12)


def _global_pool(task, rng):
    x = rng.standard_normal((3, 4, 5, 2))
    means = np.array([[sum(x[n, h, w, c] for h in range(4) for w in range(5)) / 20 for c in range(2)]
                      for n in range(3)])
    case = task.case("forward", "global_pool_forward", {"x": x})
    task.check(2, "GlobalAveragePool2D forward: each channel's mean over H and W", case, {"out": means}, tol=1e-12)
    x, dout = rng.standard_normal((2, 3, 6, 4)), rng.standard_normal((2, 4))
    dx = np.zeros_like(x)
    for n, h, w, c in np.ndindex(*x.shape):
        dx[n, h, w, c] = dout[n, c] / (3 * 6)     # each pixel counts 1/(H*W) in its channel's mean
    case = task.case("backward", "global_pool_backward", {"x": x, "dout": dout})
    task.check(3, "GlobalAveragePool2D backward spreads dout / (H*W) over every pixel", case, {"dx": dx}, tol=1e-12)


def rmsprop_reference(w, grads, lr, rho, eps, weight_decay):
    """w after one RMSProp step per gradient (Hinton's lecture 6e, no bias correction), in float64."""
    s = np.zeros_like(w)
    for g in grads:
        g = g + weight_decay * w                       # the L2 term joins the gradient
        s = rho * s + (1 - rho) * g ** 2
        w = w - lr * g / (np.sqrt(s) + eps)
    return w


def adam_reference(w, grads, lr, beta1, beta2, eps, weight_decay):
    """w after one Adam step per gradient (Kingma & Ba, 2015, Algorithm 1, with the L2 term), in float64."""
    m, s = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        s = beta2 * s + (1 - beta2) * g ** 2
        m_hat, s_hat = m / (1 - beta1 ** t), s / (1 - beta2 ** t)     # the bias corrections
        w = w - lr * m_hat / (np.sqrt(s_hat) + eps)
    return w


def _away_from_zero(rng, shape):
    """Entries of either sign with sizes in [0.5, 2]. Where every gradient of a coordinate is tiny, eps decides
    its step, and then where eps goes (Algorithm 1's eps, or its "eps hat" with the corrections folded into
    the rate, as optim.Adam does) would count; away from 0 the two agree to 1e-7."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)


def _scaled_gradient(rng, steps):
    """The same gradient ``steps`` times, its rows scaled by 1e-3, 1 and 1e3 (entries kept away from 0): a
    per-coordinate method must step alike in every row."""
    g = _away_from_zero(rng, (3, 4)) * np.array([[1e-3], [1.0], [1e3]])
    return np.stack([g] * steps)


def _rmsprop(task, rng):
    w0, grads = 0.01 * rng.standard_normal((3, 4)), _away_from_zero(rng, (3, 3, 4))  # w and the steps alike in size
    settings = dict(lr=0.01, rho=0.8, eps=1e-8, weight_decay=0.1)
    case = task.case("three_steps", "rmsprop", {"w": w0, "grads": grads}, **settings)
    task.check(3, "three RMSProp steps with weight decay (rho=0.8) follow the formula", case,
               {"w": rmsprop_reference(w0, grads, **settings)})
    w0, grads = 0.01 * rng.standard_normal((3, 4)), _scaled_gradient(rng, 2)
    settings = dict(lr=0.01, rho=0.9, eps=1e-8, weight_decay=0.0)  # eps inside the root would show in row 1
    case = task.case("scales", "rmsprop", {"w": w0, "grads": grads}, **settings)
    task.check(2, "RMSProp's step does not depend on the gradient's scale (rows scaled by 1e-3, 1, 1e3)", case,
               {"w": rmsprop_reference(w0, grads, **settings)})


def _adam(task, rng):
    w0, grads = 0.01 * rng.standard_normal((3, 4)), _away_from_zero(rng, (3, 3, 4))
    settings = dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-8, weight_decay=0.1)
    case = task.case("three_steps", "adam", {"w": w0, "grads": grads}, **settings)
    task.check(6, "three Adam steps with weight decay (beta1=0.8, beta2=0.95) follow the formula", case,
               {"w": adam_reference(w0, grads, **settings)})
    w0, grads = 0.01 * rng.standard_normal((3, 4)), _scaled_gradient(rng, 2)
    settings = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-12, weight_decay=0.0)
    case = task.case("bias_correction", "adam", {"w": w0, "grads": grads}, **settings)
    task.check(4, "with bias correction Adam's first steps have size lr, whatever the gradient's scale", case,
               {"w": adam_reference(w0, grads, **settings)})


def top_k_reference(scores, labels, k):
    """Top-k accuracy by a loop: an example is right when fewer than k other classes score at least as high."""
    right = 0
    for row, label in zip(scores, labels):
        rivals = sum(1 for j in range(len(row)) if j != label and row[j] >= row[label])
        right += rivals < k
    return right / len(labels)


def _top_k(task, rng):
    scores, labels = rng.standard_normal((30, 10)), rng.integers(0, 10, 30)
    for k, points in ((1, 1), (3, 2)):
        case = task.case(f"k{k}", "top_k", {"scores": scores, "labels": labels}, k=k)
        task.check(points, f"top-{k} accuracy of random scores", case,
                   {"accuracy": top_k_reference(scores, labels, k)}, tol=1e-12)
    scores, labels = rng.integers(0, 3, (30, 6)).astype(np.float64), rng.integers(0, 6, 30)  # many ties
    case = task.case("ties", "top_k", {"scores": scores, "labels": labels}, k=2)
    task.check(2, "top-2 accuracy with tied scores (a tie counts against the true class)", case,
               {"accuracy": top_k_reference(scores, labels, 2)}, tol=1e-12)


def residual_reference(x, s1, c1, s2, c2, dout, nested):
    """out, dx and the inner gradients of the residual block of the runner's fixed stack, by hand (float64).

    F(x) = s2 * roll(tanh(s1 * x + c1)) + c2 (roll: each feature moves one place along the last axis),
    out = x + F(x). ``nested``: the first three layers sit in an inner block of their own, so
    out = x + s2 * (x + roll(tanh(s1 * x + c1))) + c2.
    """
    h = np.tanh(s1 * x + c1)
    y = (x if nested else 0) + np.roll(h, 1, axis=-1)
    out = x + s2 * y + c2
    dy = dout * s2
    du = np.roll(dy, -1, axis=-1) * (1 - h ** 2)                # back through the roll and the tanh
    dx = dout + (dy if nested else 0) + du * s1
    grads = {"ds1": (du * x).sum(axis=0), "dc1": du.sum(axis=0), "ds2": (dout * y).sum(axis=0),
             "dc2": dout.sum(axis=0)}
    return out, dx, grads


def _residual(task, rng):
    def inputs(N=4, D=5):
        return {"x": rng.standard_normal((N, D)), "s1": rng.uniform(0.5, 1.5, D) * rng.choice([-1.0, 1.0], D),
                "c1": rng.standard_normal(D), "s2": rng.uniform(0.5, 1.5, D), "c2": rng.standard_normal(D),
                "dout": rng.standard_normal((N, D))}
    a = inputs()
    out, _, _ = residual_reference(**a, nested=False)
    case = task.case("forward", "residual_forward", a)
    task.check(3, "Residual forward: x + F(x), F the grader's fixed stack", case, {"out": out})
    a = inputs()
    _, dx, grads = residual_reference(**a, nested=False)
    case = task.case("backward", "residual_backward", a)
    task.check(5, "Residual backward: dx = dout + F's share, and F's gradients", case, {"dx": dx, **grads})
    a = inputs()
    _, dx, grads = residual_reference(**a, nested=True)
    case = task.case("nested", "residual_backward", a, nested=True)
    task.check(2, "a Residual inside a Residual: dx and the gradients of both", case, {"dx": dx, **grads})


BUILDERS = {"im2col": _im2col, "conv": _conv, "pool": _pool, "dense": _dense, "relu": _relu, "dropout": _dropout,
            "softmax": _softmax, "sgd": _sgd, "batchnorm": _batchnorm, "leaky": _leaky_relu,
            "strided": _strided, "global_average": _global_pool, "rmsprop": _rmsprop, "adam": _adam,
            "top_k": _top_k, "residual": _residual}


def make_task(part, seed):
    """The :class:`Task` of ``part`` with inputs drawn from ``seed``; its checks add up to ``PARTS[part]``."""
    task = Task(part)
    BUILDERS[part](task, np.random.default_rng(seed))
    assert sum(c["points"] for c in task.checks) == PARTS[part], part
    return task
