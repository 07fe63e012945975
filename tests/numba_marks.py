"""Whether numba (the ``fast`` extra) imports here, as skip marks and a backend list for the
tests that compare chainrule's compiled kernels with its NumPy ones."""

import importlib

import pytest


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


HAS_NUMBA = _importable("numba")
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
BACKENDS = ["numpy", pytest.param("numba", marks=needs_numba)]
