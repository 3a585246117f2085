"""``python -m tinyvgg.doctor``: what this machine has, and what to fix.

The first thing to run on a new machine. One screen: Python, NumPy and its BLAS
(library, CPU kernel, threads), then CuPy: installed or not, the CUDA version
it was built for, the driver's, and each GPU. When a GPU is usable it also runs
a short parity check (a convolution and a small VGG, forward and backward, NumPy
against CuPy in float32) and a synchronized timing. Every problem comes with its
fix. Exits 0 whenever it could look (no GPU is not an error); 1 when a parity
check fails.
"""
import os
import platform
import sys
import time

import numpy as np

from . import backend
from .classroom import bubblewrap


def cuda_wheel_for(driver_version):
    """The cupy-cudaXXx wheel that a CUDA driver (e.g. 12040 for 12.4) can run: the one of its major
    version (the gpu extra installs cupy-cuda12x, which CUDA 13 drivers run too)."""
    major = driver_version // 1000
    return f"cupy-cuda{major}x" if major >= 11 else None


def _version(v):
    return f"{v // 1000}.{(v % 1000) // 10}"


def blas_lines():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["BLAS: unknown (pip install threadpoolctl to see which library and kernel NumPy uses)"]
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return ["BLAS: none found by threadpoolctl"]
    lines = []
    for p in pools:
        lines.append(f"BLAS: {p.get('internal_api')} {p.get('version')}, kernel {p.get('architecture')}, "
                     f"{p.get('num_threads')} threads")
    core = os.environ.get("OPENBLAS_CORETYPE")
    if core:
        lines.append(f"  note: OPENBLAS_CORETYPE={core} forces an older OpenBLAS kernel; unset it for full speed "
                     "(unless your OpenBLAS build is too old for this CPU)")
    return lines


def cupy_report():
    """(lines, cupy module or None): what is known about CuPy and the GPUs, with fixes."""
    try:
        cupy = backend.require("cupy")
    except backend.BackendUnavailable as err:
        cupy = sys.modules.get("cupy")
        lines = [f"CuPy {cupy.__version__}"] + _cuda_versions(cupy) if cupy is not None else []
        return lines + [f"GPU: not usable. {err}"], None
    lines = [f"CuPy {cupy.__version__}"] + _cuda_versions(cupy)
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        lines.append(f"GPU {i}: {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
    return lines, cupy


def _cuda_versions(cupy):
    lines = []
    try:
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        lines.append(f"CUDA runtime (CuPy built for): {_version(runtime)}")
    except Exception as err:  # a broken install can fail here
        return [f"CUDA runtime: unknown ({type(err).__name__}: {err})"]
    try:
        driver = cupy.cuda.runtime.driverGetVersion()
    except Exception as err:
        lines.append(f"CUDA driver: none found ({type(err).__name__}); install the NVIDIA driver, "
                     "or run on the CPU with --backend numpy")
        return lines
    if driver == 0:
        lines.append("CUDA driver: none found; install the NVIDIA driver, or run on the CPU with --backend numpy")
    else:
        lines.append(f"CUDA driver: {_version(driver)}")
        # CUDA's minor-version compatibility: a wheel built for 13.2 runs on any 13.x driver (and 12.x
        # wheels on 12.x drivers), so only an older major version is a real mismatch.
        if driver // 1000 < runtime // 1000:
            wheel = cuda_wheel_for(driver)
            installed = installed_cupy_wheel()
            fix = (f"pip uninstall {installed} && pip install {wheel}" if installed else f"pip install {wheel}") \
                if wheel else "update the NVIDIA driver (or run on the CPU with --backend numpy)"
            lines.append(f"  problem: the driver supports CUDA {driver // 1000}.x but this CuPy was built for CUDA "
                         f"{runtime // 1000}.x; fix: {fix}")
    return lines


def installed_cupy_wheel():
    """The name of the installed CuPy distribution (e.g. cupy-cuda12x), or None."""
    from importlib import metadata
    names = sorted({(dist.metadata["Name"] or "").lower() for dist in metadata.distributions()})
    wheels = [n for n in names if n.startswith("cupy-cuda") or n == "cupy"]
    return wheels[0] if wheels else None


def parity_check(cupy, tolerance=1e-5):
    """Max relative difference NumPy vs CuPy for a conv and a small VGG (forward and backward)."""
    from .fastconv import FastConv2D
    from .layers import SoftmaxCrossEntropy
    from .models import vgg11
    rng = np.random.default_rng(0)
    results = {}
    conv = FastConv2D(8, 16, rng=rng)  # the kernels training runs
    x = rng.standard_normal((4, 16, 16, 8)).astype(np.float32)
    out = conv.forward(x, train=True)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = conv.backward(dout)
    conv.to("cupy")
    out_gpu = conv.forward(backend.to_device(x, "cupy"), train=True)
    dx_gpu = conv.backward(backend.to_device(dout, "cupy"))
    results["conv forward"] = _rel(out, out_gpu)
    results["conv backward"] = _rel(dx, dx_gpu)
    model = vgg11(num_classes=10, input_shape=(32, 32, 3), width=0.25, fc_units=64, dropout=0.0, seed=0)
    x = rng.standard_normal((8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    loss = SoftmaxCrossEntropy()
    logits = model.forward(x, train=True)
    loss.forward(logits, y)
    model.backward(loss.backward())
    grads = {k: g.copy() for k, g in model.named_grads().items()}
    model.to("cupy")
    logits_gpu = model.forward(backend.to_device(x, "cupy"), train=True)
    loss.forward(logits_gpu, backend.to_device(y, "cupy"))
    model.backward(loss.backward())
    results["vgg forward"] = _rel(logits, logits_gpu)
    results["vgg backward"] = max(_rel(g, model.named_grads()[k]) for k, g in grads.items())
    timing = _time_steps(model, logits_gpu.shape[0], cupy)
    return results, all(v < tolerance for v in results.values()), timing


def _rel(a, b):
    b = backend.to_host(b)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))


def _time_steps(model, batch, cupy, steps=5):
    from .layers import SoftmaxCrossEntropy
    x = cupy.asarray(np.random.default_rng(1).standard_normal((batch, 32, 32, 3)).astype(np.float32))
    y = cupy.zeros(batch, dtype=cupy.int64)
    loss = SoftmaxCrossEntropy()
    times = []
    model.input_grad = False  # as in training: no dL/d(images)
    for _ in range(steps + 1):
        backend.synchronize()
        start = time.perf_counter()
        loss.forward(model.forward(x, train=True), y)
        model.backward(loss.backward())
        backend.synchronize()  # GPU calls return early: wait before reading the clock
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main(argv=None):
    import argparse
    argparse.ArgumentParser(prog="python -m tinyvgg.doctor", description=__doc__.split("\n\n")[1]).parse_args(argv)
    print(f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} CPU threads")
    print(f"NumPy {np.__version__}")
    for line in blas_lines():
        print(line)
    print(bubblewrap.doctor_line())
    lines, cupy = cupy_report()
    for line in lines:
        print(line)
    if cupy is None:
        print("Result: the CPU backend works (--backend numpy); no usable GPU here.")
        return 0
    results, ok, step = parity_check(cupy)
    for name, err in results.items():
        print(f"parity {name:<14} max relative difference {err:.1e}")
    print(f"small VGG training step on the GPU: {step * 1000:.1f} ms (synchronized)")
    if not ok:
        print("Result: CuPy runs but disagrees with NumPy beyond 1e-5; reinstall CuPy for your CUDA version.")
        return 1
    print("Result: both backends work; use --backend cupy for the GPU.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
