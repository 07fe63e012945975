"""Shared test settings: hypothesis sized for a 2-core CI machine, a float64 oracle, the NumPy
kernels on demand and interrupted file writes."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from chainrule.io import files
from numba_marks import use_kernels

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def central_differences(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Jacobian ``f(x).shape + x.shape`` of ``f`` by central differences, one entry at a time.

    Deliberately naive and independent of ``chainrule.check``: it is the tests' oracle.
    """
    x = np.array(x, dtype=np.float64)
    out_shape = np.shape(f(x.copy()))
    jac = np.zeros(out_shape + x.shape)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        jac[(..., *index)] = (np.asarray(f(plus)) - np.asarray(f(minus))) / (2 * eps)
    return jac


@pytest.fixture
def numeric_jacobian():
    return central_differences


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def numpy_kernels(monkeypatch):
    """Run the test on the NumPy reference kernels, whether or not numba is installed."""
    use_kernels(monkeypatch, "numpy")


@pytest.fixture
def interrupted_writes(monkeypatch):
    """``with interrupted_writes():`` every atomic file write stops halfway with
    KeyboardInterrupt, as Ctrl-C would."""

    def write_half(file, data: bytes) -> None:
        file.write(data[:len(data) // 2])
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def interrupted():
        with monkeypatch.context() as patch:
            patch.setattr(files, "_write_payload", write_half)
            yield

    return interrupted
