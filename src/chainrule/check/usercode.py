"""A user's own derivative code, loaded from ``FILE.py:NAME`` and checked against a reference.

What ``chainrule check-jacobian`` runs: :func:`load_function` imports the user's file,
:func:`check_jacobian_of` compares their Jacobian with that of ``softmax``, ``log_softmax``,
``sigmoid``, ``tanh`` or ``relu`` (:data:`REFERENCES`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chainrule.check.functions import check_jacobian
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Report
from chainrule.nn.functional import log_softmax, sigmoid, softmax

__all__ = ["REFERENCES", "check_jacobian_of", "load_function"]


# Reference functions for check-jacobian, all row-wise along the last axis.
REFERENCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
}


def check_jacobian_of(jacobian_fn: Callable[[np.ndarray], np.ndarray], of: str, size: int = 4,
                      batch: int | None = None, takes: str = "input", seed: int = 0,
                      atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> Report:
    """Check a user's Jacobian of a reference function (``of``: a key of ``REFERENCES``).

    ``jacobian_fn`` receives random pre-activations ``z`` (``takes="input"``) or the
    activations ``f(z)`` (``takes="output"``): a vector ``(size,)``, or a batch
    ``(batch, size)`` returning per-row Jacobians. ReLU inputs stay 0.1 away from the kink.
    """
    if of not in REFERENCES:
        raise ValueError(f"of must be one of {sorted(REFERENCES)}, got {of!r}")
    if takes not in ("input", "output"):
        raise ValueError(f"takes must be 'input' or 'output', got {takes!r}")
    if size < 1 or (batch is not None and batch < 1):
        raise ValueError(f"size and batch must be >= 1, got {size} and {batch}")
    function = REFERENCES[of]
    rng = np.random.default_rng(seed)
    z = 1.5 * rng.standard_normal(size if batch is None else (batch, size))
    if of == "relu":
        z = np.sign(z) * (0.1 + np.abs(z))
    claimed = jacobian_fn if takes == "input" else lambda point: jacobian_fn(function(point))
    report = check_jacobian(function, claimed, z, atol, rtol, seed=seed)
    name = getattr(jacobian_fn, "__name__", "jacobian_fn")
    report.title = (f"check-jacobian: {name} vs the Jacobian of {of} at z {z.shape} "
                    f"(given {'z' if takes == 'input' else f'{of}(z)'})")
    return report


def load_function(spec: str) -> Callable:
    """``"path/to/file.py:name"`` or ``"package.module:name"`` -> the named callable."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:FUNCTION (MODULE a .py path or a module), got {spec!r}")
    path = Path(module_name)
    as_file = module_name.endswith(".py") or path.is_file()
    if as_file and not path.is_file():
        raise FileNotFoundError(f"no such file: {module_name}")
    # The file's folder (or the working directory) is importable while it loads, so that
    # it can import its neighbours.
    folder = str(path.resolve().parent if as_file else Path.cwd())
    sys.path.insert(0, folder)
    try:
        if as_file:
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    finally:
        sys.path.remove(folder)
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{module_name} has no function {attribute!r}")
    return function
