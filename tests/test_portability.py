"""Every array-module attribute the package uses exists in CuPy as well as in NumPy.

The GPU cannot run in CI, but CuPy imports without one, so its namespace can be
checked against what the code asks of ``xp``: a NumPy-only function in a code
path that CuPy arrays take would otherwise only fail on a student's GPU.
"""
import ast
import pathlib

import numpy as np
import pytest

import tinyvgg

PACKAGE = pathlib.Path(tinyvgg.__file__).parent


def array_module_attributes(source):
    """Every attribute chain used on a name ``xp``: {("maximum",), ("random", "standard_normal"), ...}."""
    chains = set()
    for node in ast.walk(ast.parse(source)):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if chain and isinstance(node, ast.Name) and node.id == "xp":
            chains.add(tuple(reversed(chain)))
    return chains


def missing_in(module, chains):
    """The chains that do not resolve on ``module``, as dotted names."""
    missing = []
    for chain in sorted(chains):
        obj = module
        for name in chain:
            if not hasattr(obj, name):
                missing.append(".".join(chain))
                break
            obj = getattr(obj, name)
    return missing


def package_chains():
    chains = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for chain in array_module_attributes(path.read_text()):
            chains.setdefault(chain, []).append(path.name)
    return chains


def import_cupy_module():
    try:
        import cupy
    except ImportError:
        pytest.skip('CuPy is not installed (pip install -e ".[gpu]"; CI installs it to run this check)')
    return cupy


PLANTED = '''
def busy_days(x):
    xp = get_array_module(x)
    return xp.busday_count(x, x) + xp.random.standard_normal(3)
'''


def test_the_scanner_finds_attributes_of_xp():
    assert array_module_attributes(PLANTED) == {("busday_count",), ("random",), ("random", "standard_normal")}
    chains = package_chains()
    assert ("matmul",) in chains and ("maximum",) in chains  # it sees the real code too
    assert missing_in(np, chains) == []


def test_a_planted_numpy_only_call_is_caught():
    cupy = import_cupy_module()
    assert missing_in(np, array_module_attributes(PLANTED)) == []
    assert missing_in(cupy, array_module_attributes(PLANTED)) == ["busday_count"]


def test_the_package_uses_only_what_cupy_has():
    cupy = import_cupy_module()
    missing = {".".join(c): files for c, files in package_chains().items() if missing_in(cupy, [c])}
    assert not missing, f"NumPy-only functions on a path CuPy arrays take: {missing}"
    # the strided view backend.py hands out on CuPy
    assert hasattr(cupy.lib.stride_tricks, "sliding_window_view")
