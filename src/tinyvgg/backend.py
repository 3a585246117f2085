"""Where arrays live: NumPy on the CPU, CuPy on an NVIDIA GPU.

This is the only module of tinyvgg that imports CuPy. Every other module asks
the data it receives which library it belongs to, and then uses that library::

    xp = get_array_module(x)     # numpy or cupy, whichever owns x
    y = xp.maximum(x, 0)         # the same line runs on both

There is no global switch: a model moves with ``model.to("cupy")`` and the
arrays it then holds decide. CuPy is imported lazily, the first time a CuPy
array or backend is asked for, so ``import tinyvgg`` never pays for it.

>>> import numpy as np
>>> get_array_module(np.zeros(3)) is np
True
>>> to_device([1.0, 2.0], "numpy")
array([1., 2.])
"""
import sys

import numpy as np

from .errors import BackendUnavailable

BACKENDS = ("numpy", "cupy")


def _is_cupy_array(x):
    # cupy.ndarray lives in cupy._core.core; checking the module name avoids
    # importing CuPy just to answer "no" for a NumPy array.
    return type(x).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for a in arrays:
        if _is_cupy_array(a):
            return sys.modules["cupy"]
    return np


def backend_of(x):
    """The backend name, ``"numpy"`` or ``"cupy"``, that owns array ``x``."""
    return "cupy" if _is_cupy_array(x) else "numpy"


def _import_cupy():
    try:
        import cupy
    except ImportError as err:
        raise BackendUnavailable(
            'CuPy is not installed: install it from a clone of tinyvgg with pip install -e ".[gpu]", '
            "or use --backend numpy to run on the CPU."
        ) from err
    except Exception as err:  # a broken wheel can fail with anything at import
        raise BackendUnavailable(
            f"CuPy is installed but fails to import ({type(err).__name__}: {err}); "
            "reinstall the cupy-cudaXXx wheel that matches your CUDA driver, "
            "or use --backend numpy to run on the CPU."
        ) from err
    return cupy


def require(name):
    """Return the array module for backend ``name`` or raise one clear error.

    ``require("numpy")`` always works. ``require("cupy")`` raises
    :class:`BackendUnavailable` when CuPy is missing, or when it is installed
    but no CUDA device can run code (no GPU, no driver, a driver too old for
    the wheel). ``import cupy`` succeeds on such machines, so we count the
    devices and make one tiny allocation to be sure.
    """
    if name == "numpy":
        return np
    if name != "cupy":
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}.")
    cupy = _import_cupy()
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("the CUDA runtime reports 0 devices")
        cupy.zeros(1, dtype=cupy.float32).sum().item()
    except Exception as err:
        raise BackendUnavailable(
            "CuPy is installed but no usable CUDA device was found "
            f"({type(err).__name__}: {err}); use --backend numpy to run on the CPU."
        ) from err
    return cupy


def nccl():
    """CuPy's NCCL bindings (``cupy.cuda.nccl``): the GPUs' all-reduce for data parallelism."""
    require("cupy")
    try:
        from cupy.cuda import nccl as bindings
    except ImportError as err:
        raise BackendUnavailable(f"this CuPy has no NCCL ({err}); install NCCL (pip install nvidia-nccl-cu12) "
                                 "or train the ranks with --backend numpy.") from err
    if not getattr(bindings, "available", True):
        raise BackendUnavailable("this CuPy was built without NCCL; install NCCL (pip install nvidia-nccl-cu12) "
                                 "or train the ranks with --backend numpy.")
    return bindings


def to_device(x, backend, pinned=False):
    """Return ``x`` as an array of ``backend`` ("numpy" or "cupy"), copying only if needed.

    ``pinned=True`` stages a NumPy array through page-locked host memory on its
    way to the GPU: the copy then runs at full bus speed (CuPy's pinned memory
    pool reuses the staging buffers). It changes nothing for "numpy".
    """
    if backend == "numpy":
        return to_host(x)
    cupy = require(backend)
    if pinned and isinstance(x, np.ndarray):
        import cupyx
        staging = cupyx.empty_pinned(x.shape, dtype=x.dtype)
        staging[...] = x
        x = staging
    return cupy.asarray(x)


def set_gpu_memory_limit(gigabytes):
    """Cap CuPy's memory pool (GiB); an allocation beyond it raises OutOfMemoryError."""
    require("cupy").get_default_memory_pool().set_limit(size=int(gigabytes * 2**30))


def to_host(x):
    """Return ``x`` as a NumPy array (copies a CuPy array from the GPU)."""
    if _is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def sliding_window_view(x, window_shape, axis):
    """A read-only view of every window of ``x`` (each library's own stride trick).

    ``sliding_window_view(x_pad, (3, 3), axis=(1, 2))`` of an (N, Hp, Wp, C)
    array has shape (N, Hp-2, Wp-2, C, 3, 3) and copies nothing.
    """
    if _is_cupy_array(x):
        return sys.modules["cupy"].lib.stride_tricks.sliding_window_view(x, window_shape, axis=axis)
    return np.lib.stride_tricks.sliding_window_view(x, window_shape, axis=axis)


def synchronize():
    """Wait until the GPU has finished all queued work (a no-op without CuPy).

    GPU calls return before the work is done, so a timer read without this
    measures only how fast work was queued.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None and cupy.is_available():
        cupy.cuda.get_current_stream().synchronize()
