"""Helpers shared by the benchmark scripts: machine facts, the matmul peak, timing, output."""
import json
import os
import platform
import statistics
import time

import numpy as np

from tinyvgg import backend


def blas_info():
    """The BLAS library NumPy uses, its kernel (e.g. SkylakeX) and threads, via threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"note": "pip install threadpoolctl to see the BLAS kernel"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
    return {"note": "no BLAS found by threadpoolctl"}


def machine_info():
    return {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "numpy": np.__version__,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "blas": blas_info()}


def matmul_peak_gflops(n=2048, repeats=5, xp=np):
    """GFLOP/s of a large float32 matmul: the ceiling a convolution-as-matmul can reach."""
    a = xp.ones((n, n), dtype=xp.float32)
    b = xp.ones((n, n), dtype=xp.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def timed(fn):
    """Seconds that ``fn()`` takes, with the GPU (if any) synchronized before reading the clock."""
    backend.synchronize()
    start = time.perf_counter()
    fn()
    backend.synchronize()
    return time.perf_counter() - start


def median(values):
    return statistics.median(values)


def write_json(path, result):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")


def print_table(rows, headers):
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    print(line.format(*headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))
