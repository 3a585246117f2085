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

#: Points per part (100 in all).
PARTS = {"im2col": 10, "conv": 20, "pool": 10, "dense": 10, "relu": 5, "dropout": 10, "softmax": 10, "sgd": 10,
         "batchnorm": 15}
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


BUILDERS = {"im2col": _im2col, "conv": _conv, "pool": _pool, "dense": _dense, "relu": _relu, "dropout": _dropout,
            "softmax": _softmax, "sgd": _sgd, "batchnorm": _batchnorm}


def make_task(part, seed):
    """The :class:`Task` of ``part`` with inputs drawn from ``seed``; its checks add up to ``PARTS[part]``."""
    task = Task(part)
    BUILDERS[part](task, np.random.default_rng(seed))
    assert sum(c["points"] for c in task.checks) == PARTS[part], part
    return task
