"""Checking a ``torch.autograd.Function``'s ``backward`` against its own ``forward``.

What ``torch.autograd.gradcheck`` does, in float64 whatever the inputs' dtype, plus which
input, which entry and which classic mistake. PyTorch is imported here only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chainrule.check.calls import call_user
from chainrule.check.functional_style import inputs_report, parameter_names
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Report

__all__ = ["check_autograd_function"]


def _as_array(value: object) -> np.ndarray:
    """A NumPy copy of an array or tensor (detached, on the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    return value.astype(np.float64) if np.issubdtype(value.dtype, np.floating) else value


def check_autograd_function(fn_class: type, *inputs: object,
                            grad_out: np.ndarray | None = None, atol: float = DEFAULT_ATOL,
                            rtol: float = DEFAULT_RTOL, eps: float | None = None,
                            seed: int = 0) -> Report:
    """Check ``fn_class.backward`` (a ``torch.autograd.Function``) against its ``forward``.

    ``inputs``: NumPy arrays or tensors, checked in float64. Each floating-point input's
    gradient ``backward`` gives for a random upstream gradient (seeded, or ``grad_out``) is
    compared with central differences of ``forward``; rows are named after ``forward``'s
    parameters (``dx``, ``dweight``, ``dbias``), else by position. Needs PyTorch.
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError("check_autograd_function needs PyTorch (pip install torch); "
                          "chainrule's other checks do not") from error
    if not (isinstance(fn_class, type) and issubclass(fn_class, torch.autograd.Function)):
        raise TypeError(f"expected a torch.autograd.Function subclass, got {fn_class!r}")
    arrays = [_as_array(value) for value in inputs]
    names = parameter_names(fn_class.forward, len(arrays), skip=1)  # skip ctx
    label = fn_class.__name__

    def tensors(values: Sequence[np.ndarray], grad: bool) -> list:
        return [torch.tensor(value, requires_grad=grad and np.issubdtype(value.dtype,
                                                                         np.floating))
                for value in values]

    def forward(*values: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = call_user(fn_class.apply, *tensors(values, False), name=f"{label}.forward")
        return _as_array(out)

    def vjp(upstream: np.ndarray) -> list:
        leaves = tensors(arrays, True)
        out = call_user(fn_class.apply, *leaves, name=f"{label}.forward")
        differentiable = [leaf for leaf in leaves if leaf.requires_grad]
        grads = call_user(lambda: torch.autograd.grad(out, differentiable,
                                                      torch.from_numpy(upstream),
                                                      allow_unused=True),
                          name=f"{label}.backward")
        return [None if grad is None else _as_array(grad) for grad in grads]

    output = forward(*arrays)
    rng = np.random.default_rng([seed, 3])
    upstream = rng.standard_normal(output.shape) if grad_out is None else _as_array(grad_out)
    return inputs_report(f"check_autograd_function: {label}", label, forward, vjp, arrays,
                         names, output.shape, upstream, atol, rtol, eps, rng)
