"""Shared fixtures: the backends present, a seeded RNG, and hypothesis settings."""
import os

import numpy as np
import pytest
from hypothesis import settings

from tinyvgg import backend
from tinyvgg.threads import FIXED_VARIABLE, blas_threads

# float32 results change with the BLAS thread count, and tests compare runs (in this process and in the
# commands they start) bit for bit: the suite fixes the count at the pool's own, as a user does with
# --threads. tests/test_threads.py clears it to test the measuring.
os.environ.setdefault(FIXED_VARIABLE, str(blas_threads() or 1))

# Gradient checks call a layer hundreds of times per example: few examples, no deadline.
settings.register_profile("tinyvgg", max_examples=40, deadline=None)
settings.load_profile("tinyvgg")


def cupy_unavailable_reason():
    """None when CuPy can run here, else the sentence that says why not."""
    try:
        backend.require("cupy")
    except backend.BackendUnavailable as err:
        return str(err)
    return None


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend_name(request):
    """Each backend present; the CuPy case skips with the reason where it cannot run."""
    if request.param == "cupy":
        reason = cupy_unavailable_reason()
        if reason:
            pytest.skip(reason)
    return request.param


@pytest.fixture
def xp(backend_name):
    """The array module of each backend present (numpy, and cupy where a GPU is)."""
    return backend.require(backend_name)


@pytest.fixture
def cupy():
    """The cupy module, for tests that compare CuPy against NumPy; skips without a GPU."""
    reason = cupy_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return backend.require("cupy")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
