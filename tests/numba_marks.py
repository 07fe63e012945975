"""Whether numba (the ``fast`` extra) imports here, as skip marks and a backend list for the
tests that compare chainrule's compiled kernels with its NumPy ones, and ``use_kernels`` to
switch between them."""

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


def use_kernels(monkeypatch: pytest.MonkeyPatch, backend: str, any_size: bool = False) -> None:
    """Dispatch chainrule's kernels to ``backend`` (``"numpy"`` or ``"numba"``) while
    ``monkeypatch`` lasts; ``any_size``: arrays under ``SMALLEST_COMPILED`` too."""
    from chainrule.nn import kernels

    compiled = kernels._compile() if backend == "numba" else None
    monkeypatch.setattr(kernels, "_compiled", lambda: compiled)
    if any_size:
        monkeypatch.setattr(kernels, "SMALLEST_COMPILED", 0)
