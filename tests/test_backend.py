import sys
import types

import numpy as np
import pytest

from tinyvgg import backend


def test_numpy_arrays_belong_to_numpy():
    x = np.zeros((2, 3))
    assert backend.get_array_module(x) is np
    assert backend.get_array_module(1.0, x) is np
    assert backend.backend_of(x) == "numpy"


def test_round_trip_through_each_backend(backend_name, xp):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    device = backend.to_device(host, backend_name)
    assert backend.get_array_module(device) is xp
    assert backend.backend_of(device) == backend_name
    back = backend.to_host(device)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    backend.synchronize()


def test_require_numpy_and_unknown_backend():
    assert backend.require("numpy") is np
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backend.require("tpu")


def test_missing_cupy_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(backend.BackendUnavailable, match=r'from a clone of tinyvgg with pip install -e "\.\[gpu\]"'):
        backend.require("cupy")


def test_cupy_without_a_device_says_use_numpy(monkeypatch):
    # The state measured on GPU-less machines: import works, the device count fails.
    def no_device():
        raise RuntimeError("cudaErrorInsufficientDriver")
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(backend.BackendUnavailable, match="no usable CUDA device.*--backend numpy"):
        backend.require("cupy")


def test_synchronize_without_cupy_is_a_no_op(monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    backend.synchronize()
