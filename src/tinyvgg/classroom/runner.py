"""The side of the grader that touches a student's code: call it, hand back arrays.

Each *recipe* below builds one of the student's layers (or the optimizer) from
given arrays, calls it, and returns what it computed as arrays. It checks
nothing and knows no answer: the grader (:mod:`tinyvgg.classroom.checks`, in
another process) compares the arrays with its own references and awards every
point. :func:`compare` is how a set of outputs is judged; the student version's
tests use it too, on fixed inputs whose answers are stored with them.

Run as a program (by the grader, in a sandboxed child process; see
:mod:`tinyvgg.classroom.bubblewrap`)::

    python -I -S _grader_runner.py TASK.npz RESULT.npz PACKAGE_PARENT LIBRARY_DIR MODE CPU MEMORY FILE PROCESSES

it sets its import path to the standard library, NumPy and the submission's copy alone, applies its
limits (MODE "bubblewrap": inside the grader's bwrap sandbox; "unsafe": Landlock and an audit hook),
then runs every case of the task and writes
``RESULT.npz``: the outputs (``<case>/<name>``) and ``errors``, a JSON object
naming each case that raised and why. Nothing is pickled either way.
"""
import json
import os
import sys
import traceback


def _isolate_imports(package_parent, library_dir):
    """sys.path: this folder (the grader's runner and sandbox), the standard library, the folder that holds
    the submission's ``tinyvgg``, then NumPy's; nothing else (Python runs with -I -S: no site, no .pth)."""
    here = os.path.dirname(os.path.abspath(__file__))
    stdlib = [p for p in sys.path if p and os.path.abspath(p) != here]
    sys.path[:] = [here, *stdlib, package_parent, library_dir]


if __name__ == "__main__":  # the grader's child: the import path is set before anything else is imported
    _isolate_imports(*sys.argv[3:5])

import numpy as np  # after the import path is set

F64 = np.float64


def _conv(arrays, kwargs):
    from tinyvgg.layers import Conv2D
    KH, KW, C, F = arrays["W"].shape
    layer = Conv2D(C, F, kernel_size=KH, padding=kwargs["padding"], dtype=F64)
    layer.params = {"W": arrays["W"].copy(), "b": arrays["b"].copy()}
    return layer


def conv_forward(a, kw):
    return {"out": _conv(a, kw).forward(a["x"].copy(), train=True)}


def conv_backward(a, kw):
    layer = _conv(a, kw)
    layer.forward(a["x"].copy(), train=True)
    dx = layer.backward(a["dout"].copy())
    return {"dx": dx, "dW": layer.grads.get("W"), "db": layer.grads.get("b")}


def im2col(a, kw):
    from tinyvgg.im2col import im2col
    return {"cols": im2col(a["x"].copy(), kw["K"], kw["padding"])}


def col2im(a, kw):
    from tinyvgg.im2col import col2im
    return {"dx": col2im(a["cols"].copy(), tuple(kw["x_shape"]), kw["K"], kw["padding"])}


def maxpool_forward(a, kw):
    from tinyvgg.layers import MaxPool2D
    return {"out": MaxPool2D().forward(a["x"].copy(), train=True)}


def maxpool_backward(a, kw):
    from tinyvgg.layers import MaxPool2D
    pool = MaxPool2D()
    pool.forward(a["x"].copy(), train=True)
    return {"dx": pool.backward(a["dout"].copy())}


def _dense(a):
    from tinyvgg.layers import Dense
    layer = Dense(*a["W"].shape, dtype=F64)
    layer.params = {"W": a["W"].copy(), "b": a["b"].copy()}
    return layer


def dense_forward(a, kw):
    return {"out": _dense(a).forward(a["x"].copy(), train=True)}


def dense_backward(a, kw):
    layer = _dense(a)
    layer.forward(a["x"].copy(), train=True)
    dx = layer.backward(a["dout"].copy())
    return {"dx": dx, "dW": layer.grads.get("W"), "db": layer.grads.get("b")}


def relu_forward(a, kw):
    from tinyvgg.layers import ReLU
    return {"out": ReLU().forward(a["x"].copy(), train=True)}


def relu_backward(a, kw):
    from tinyvgg.layers import ReLU
    layer = ReLU()
    layer.forward(a["x"].copy(), train=True)
    return {"dx": layer.backward(a["dout"].copy())}


def dropout_eval(a, kw):
    from tinyvgg.layers import Dropout
    return {"out": Dropout(kw["rate"], rng=np.random.default_rng(kw["seed"])).forward(a["x"].copy())}


def dropout_train(a, kw):
    from tinyvgg.layers import Dropout
    layer = Dropout(kw["rate"], rng=np.random.default_rng(kw["seed"]))
    out = np.array(layer.forward(a["x"].copy(), train=True))  # a copy: backward must not be able to change it
    return {"out": out, "dx": layer.backward(a["dout"].copy())}


def softmax_forward(a, kw):
    from tinyvgg.layers import SoftmaxCrossEntropy
    return {"loss": SoftmaxCrossEntropy().forward(a["logits"].copy(), a["labels"].astype(np.int64))}


def softmax_backward(a, kw):
    from tinyvgg.layers import SoftmaxCrossEntropy
    loss = SoftmaxCrossEntropy()
    loss.forward(a["logits"].copy(), a["labels"].astype(np.int64))
    return {"dlogits": loss.backward()}


def sgd(a, kw):
    from tinyvgg.optim import SGD
    params = {"layer.W": a["w"].copy()}
    opt = SGD(params, lr=kw["lr"], momentum=kw["momentum"], nesterov=kw["nesterov"],
              weight_decay=kw["weight_decay"])
    for g in a["grads"]:
        opt.step({"layer.W": g.copy()})
    return {"w": params["layer.W"]}


def rmsprop(a, kw):
    from tinyvgg.optim import RMSProp
    params = {"layer.W": a["w"].copy()}
    opt = RMSProp(params, lr=kw["lr"], rho=kw["rho"], eps=kw["eps"], weight_decay=kw["weight_decay"])
    for g in a["grads"]:
        opt.step({"layer.W": g.copy()})
    return {"w": params["layer.W"]}


def adam(a, kw):
    from tinyvgg.optim import Adam
    params = {"layer.W": a["w"].copy()}
    opt = Adam(params, lr=kw["lr"], beta1=kw["beta1"], beta2=kw["beta2"], eps=kw["eps"],
               weight_decay=kw["weight_decay"])
    for g in a["grads"]:
        opt.step({"layer.W": g.copy()})
    return {"w": params["layer.W"]}


def _batchnorm(a, kw):
    from tinyvgg.layers import BatchNorm2D
    layer = BatchNorm2D(a["gamma"].shape[0], momentum=kw["momentum"], eps=kw["eps"], dtype=F64)
    layer.params = {"gamma": a["gamma"].copy(), "beta": a["beta"].copy()}
    if "running_mean" in a:
        layer.buffers = {"running_mean": a["running_mean"].copy(), "running_var": a["running_var"].copy()}
    return layer


def batchnorm_train(a, kw):
    layer = _batchnorm(a, kw)
    out = layer.forward(a["x"].copy(), train=True)
    return {"out": out, "running_mean": layer.buffers.get("running_mean"),
            "running_var": layer.buffers.get("running_var")}


def batchnorm_eval(a, kw):
    return {"out": _batchnorm(a, kw).forward(a["x"].copy())}


def batchnorm_backward(a, kw):
    layer = _batchnorm(a, kw)
    layer.forward(a["x"].copy(), train=True)
    dx = layer.backward(a["dout"].copy())
    return {"dx": dx, "dgamma": layer.grads.get("gamma"), "dbeta": layer.grads.get("beta")}


def leaky_relu_forward(a, kw):
    from tinyvgg.layers import LeakyReLU
    return {"out": LeakyReLU(kw["alpha"]).forward(a["x"].copy(), train=True)}


def leaky_relu_backward(a, kw):
    from tinyvgg.layers import LeakyReLU
    layer = LeakyReLU(kw["alpha"])
    layer.forward(a["x"].copy(), train=True)
    return {"dx": layer.backward(a["dout"].copy())}


def im2col_strided(a, kw):
    from tinyvgg.im2col import im2col_strided
    return {"cols": im2col_strided(a["x"].copy(), kw["K"], kw["padding"], kw["stride"], kw["dilation"])}


def col2im_strided(a, kw):
    from tinyvgg.im2col import col2im_strided
    return {"dx": col2im_strided(a["cols"].copy(), tuple(kw["x_shape"]), kw["K"], kw["padding"], kw["stride"],
                                 kw["dilation"])}


def global_pool_forward(a, kw):
    from tinyvgg.layers import GlobalAveragePool2D
    return {"out": GlobalAveragePool2D().forward(a["x"].copy(), train=True)}


def global_pool_backward(a, kw):
    from tinyvgg.layers import GlobalAveragePool2D
    layer = GlobalAveragePool2D()
    layer.forward(a["x"].copy(), train=True)
    return {"dx": layer.backward(a["dout"].copy())}


def top_k(a, kw):
    from tinyvgg.metrics import top_k_accuracy
    return {"accuracy": top_k_accuracy(a["scores"].copy(), a["labels"].astype(np.int64), kw["k"])}


def _fixed_stack(a):
    """The grader's own inner layers for a residual block (none of them a part a student writes):
    y = s * x + c, tanh, and a roll of the features by one place. Returns them as (name, layer) pairs."""
    from tinyvgg.layers import Layer

    class Scale(Layer):
        def __init__(self, s, c):
            super().__init__()
            self.params = {"s": s.copy(), "c": c.copy()}

        def forward(self, x, train=False):
            self.cache = x
            return x * self.params["s"] + self.params["c"]

        def backward(self, dout):
            self.grads = {"s": (dout * self.cache).sum(axis=0), "c": dout.sum(axis=0)}
            return dout * self.params["s"]

    class Tanh(Layer):
        def forward(self, x, train=False):
            self.cache = np.tanh(x)
            return self.cache

        def backward(self, dout):
            return dout * (1 - self.cache ** 2)

    class Roll(Layer):
        def forward(self, x, train=False):
            return np.roll(x, 1, axis=-1)

        def backward(self, dout):
            return np.roll(dout, -1, axis=-1)

    return [("scale1", Scale(a["s1"], a["c1"])), ("tanh", Tanh()), ("roll", Roll()), ("scale2", Scale(a["s2"], a["c2"]))]


def _residual_block(a, nested):
    from tinyvgg.models import Residual
    stack = _fixed_stack(a)
    return Residual([("inner", Residual(stack[:3])), stack[3]]) if nested else Residual(stack)


def residual_forward(a, kw):
    return {"out": _residual_block(a, False).forward(a["x"].copy(), train=True)}


def residual_backward(a, kw):
    nested = kw.get("nested", False)
    block = _residual_block(a, nested)
    block.forward(a["x"].copy(), train=True)
    dx = block.backward(a["dout"].copy())
    grads, inner = block.grads, "inner." if nested else ""
    return {"dx": dx, "ds1": grads.get(inner + "scale1.s"), "dc1": grads.get(inner + "scale1.c"),
            "ds2": grads.get("scale2.s"), "dc2": grads.get("scale2.c")}


RECIPES = {f.__name__: f for f in (
    im2col, col2im, conv_forward, conv_backward, maxpool_forward, maxpool_backward, dense_forward, dense_backward,
    relu_forward, relu_backward, dropout_eval, dropout_train, softmax_forward, softmax_backward, sgd, rmsprop, adam,
    batchnorm_train, batchnorm_eval, batchnorm_backward, leaky_relu_forward, leaky_relu_backward,
    im2col_strided, col2im_strided, global_pool_forward, global_pool_backward, top_k, residual_forward,
    residual_backward)}


def run_case(recipe, arrays, kwargs):
    """(outputs, error): float64 arrays from one recipe, or the reason it could not give them."""
    try:
        raw = RECIPES[recipe](arrays, kwargs)
        outputs = {}
        for name, value in raw.items():
            if value is None:
                return {}, f"{name} was not computed (None)"
            value = np.asarray(value)  # a list, a 0-d array or a NumPy scalar become arrays; the dtype stays
            if value.dtype.kind not in "biufc":
                return {}, f"{name} is not an array of numbers (dtype {value.dtype})"
            outputs[name] = value  # the grader judges its dtype: complex or integer answers score nothing
        return outputs, None
    except NotImplementedError:
        return {}, "not implemented yet"
    except Exception as err:  # the student's code raised
        frames = traceback.extract_tb(err.__traceback__)
        own = [f for f in frames if os.sep + "tinyvgg" + os.sep in f.filename] or frames
        where = f" (line {own[-1].lineno} of {os.path.basename(own[-1].filename)})" if own else ""
        return {}, f"raised {type(err).__name__}: {err}{where}"[:500]


def relative_error(a, b):
    a, b = np.asarray(a, dtype=F64), np.asarray(b, dtype=F64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def compare(kind, outputs, expected, inputs, kwargs, tol):
    """None when ``outputs`` pass, else one sentence saying what is wrong.

    kind "match": every expected array is matched to a relative error below ``tol``;
    "dropout": the outputs of Dropout(rate) in training on ``inputs["x"]``: about ``rate``
    of the units zeroed, the others scaled by 1 / (1 - rate), and dx the same mask applied to dout.
    """
    if kind == "match":
        for name, want in expected.items():
            got = outputs.get(name)
            if got is None:
                return f"{name} is missing"
            if got.shape != want.shape:
                return f"{name} has shape {got.shape}, expected {want.shape}"
            if not np.all(np.isfinite(got)):
                return f"{name} holds NaN or infinite values"
            err = relative_error(got, want)
            if not err < tol:
                return f"{name} is off: relative error {err:.1e} (must be below {tol:g})"
        return None
    if kind == "dropout":
        rate, x, dout = kwargs["rate"], inputs["x"], inputs["dout"]
        out, dx = outputs.get("out"), outputs.get("dx")
        if out is None or dx is None or out.shape != x.shape or dx.shape != x.shape:
            return f"out and dx must have the input's shape {x.shape}"
        if not (np.all(np.isfinite(out)) and np.all(np.isfinite(dx))):
            return "out and dx must hold finite numbers (NaN or infinity counts as neither dropped nor kept)"
        kept = out != 0
        zeros = 1 - float(kept.mean())
        if abs(zeros - rate) > 0.015:
            return f"Dropout({rate}) in training zeroed {zeros:.3f} of the units, expected about {rate}"
        if not relative_error(out[kept], x[kept] / (1 - rate)) <= 1e-12:   # "not <=": a NaN error fails
            return "the kept units must be scaled by 1 / (1 - rate) (inverted dropout keeps the mean)"
        if not relative_error(dx, np.where(kept, dout / (1 - rate), 0.0)) <= 1e-12:
            return "backward must apply the forward pass's mask (and scale) to dout"
        return None
    raise ValueError(f"unknown kind of check {kind!r}")


def _lend_im2col(lent):
    """Replace the student's im2col and col2im by the grader's, given as plain data.

    ``lent`` maps a geometry ``"H,W,C,K,pad"`` to the gather index of im2col for one padded image
    (``(Ho*Wo, K*K*C)`` positions in its flattened ``(H+2pad, W+2pad, C)`` array), made by the
    grader from its loop version: im2col is then one gather and col2im the matching scatter-add.
    No code of the grader's reaches this process.
    """
    try:
        import tinyvgg.im2col
        import tinyvgg.layers
    except Exception:
        return  # the package does not import: every case will say why

    def index_of(shape, K, padding, stride, dilation):
        if stride != 1 or dilation != 1:
            raise ValueError("the grader lends im2col only at stride 1 and dilation 1, as its convolution checks use")
        _, H, W, C = shape
        pad = K // 2 if padding == "same" else 0 if padding == "valid" else int(padding)
        key = f"{H},{W},{C},{K},{pad}"
        if key not in lent:
            raise ValueError(f"the grader lends im2col only for its own inputs, not for shape {tuple(shape)}")
        return lent[key], pad

    def im2col(x, kernel_size=3, padding="same", stride=1, dilation=1):
        index, pad = index_of(x.shape, kernel_size, padding, stride, dilation)
        N = x.shape[0]
        x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))).reshape(N, -1)
        return x_pad[:, index].reshape(N * index.shape[0], index.shape[1])  # (N*Ho*Wo, K*K*C)

    def col2im(cols, x_shape, kernel_size=3, padding="same", stride=1, dilation=1):
        index, pad = index_of(x_shape, kernel_size, padding, stride, dilation)
        N, H, W, C = x_shape
        per_image = cols.reshape(N, -1)                                     # (N, Ho*Wo*K*K*C)
        size = (H + 2 * pad) * (W + 2 * pad) * C
        dx_pad = np.stack([np.bincount(index.ravel(), weights=row, minlength=size) for row in per_image])
        dx_pad = dx_pad.reshape(N, H + 2 * pad, W + 2 * pad, C)
        return dx_pad[:, pad:pad + H, pad:pad + W, :]
    for module in (tinyvgg.im2col, tinyvgg.layers):
        module.im2col, module.col2im = im2col, col2im


def main(argv):
    task_path, result_path, mode = argv[0], argv[1], argv[4]  # argv[2:4]: the import path, set above
    cpu, memory, file_bytes, processes = (int(v) if v != "none" else None for v in argv[5:9])
    import _grader_sandbox  # the grader's copy beside this file: the submission cannot shadow it
    if mode == "bubblewrap":  # the namespaces are bwrap's; here only the limits of each process
        _grader_sandbox.set_limits(cpu, memory, file_bytes, processes)
    else:
        _grader_sandbox.lock_down(os.getcwd(), cpu, memory, file_bytes)
    with np.load(task_path, allow_pickle=False) as task:
        meta = json.loads(str(task["meta"]))
        arrays = {name: task[name] for name in task.files if name != "meta"}
    lent = {name.split("/", 1)[1]: arrays.pop(name) for name in list(arrays) if name.startswith("lend/")}
    if lent:  # judge the convolution on its own, with the grader's im2col
        _lend_im2col(lent)
    outputs, errors = {}, {}
    for case, spec in meta["cases"].items():
        inputs = {name.split("/", 1)[1]: value for name, value in arrays.items() if name.startswith(case + "/")}
        result, error = run_case(spec["recipe"], inputs, spec["kwargs"])
        if error:
            errors[case] = error
        outputs.update({f"{case}/{name}": value for name, value in result.items()})
    np.savez(result_path, errors=np.array(json.dumps(errors)), **outputs)


if __name__ == "__main__":
    main(sys.argv[1:])
