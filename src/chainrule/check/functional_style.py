"""Checking derivatives written as functions: ``out, cache = f(x, w, b)`` with
``dx, dw, db = f_backward(dout, cache)``, the style of the classic course assignments.

Every floating-point input's gradient is compared with central differences of
``φ = Σ dout ⊙ f(inputs)`` and named after the function's parameter (``dx``, ``dw``,
``db``). A single input whose output has its shape (an activation) is also diagnosed from the
per-row Jacobian its backward implies, like a layer's input gradient.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np

from chainrule.check.calls import call_user
from chainrule.check.diagnosis import diagnose_gradient, diagnose_jacobian, named
from chainrule.check.layercheck import random_direction
from chainrule.check.numerical import as_float64, numerical_gradient, rowwise_jacobian
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Diagnosis, Report, Row

__all__ = ["check_functions", "input_rows", "inputs_report", "parameter_names"]


def parameter_names(function: Callable, count: int, skip: int = 0) -> list[str]:
    """The names of ``function``'s first ``count`` positional parameters (after ``skip``),
    ``input0``, ``input1``, ... where it has none."""
    try:
        parameters = list(inspect.signature(function).parameters.values())[skip:]
    except (TypeError, ValueError):
        parameters = []
    names = [parameter.name for parameter in parameters
             if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"input{i}" for i in range(count)]


def _differentiable(value: np.ndarray) -> bool:
    return np.issubdtype(value.dtype, np.floating)


def _diagnose_activation(forward: Callable, vjp: Callable, x: np.ndarray, y: np.ndarray,
                         upstream: np.ndarray, claimed: np.ndarray) -> list[Diagnosis]:
    """Diagnose a one-input, shape-keeping function from the Jacobian its backward implies."""
    if np.allclose(claimed, y - upstream, rtol=1e-6, atol=1e-9):
        return [named("fused_shortcut", "backward(g) returned output - g")]
    try:
        numeric = rowwise_jacobian(forward, x)
    except ValueError:  # it mixes rows: no per-row Jacobian
        return []
    rows = []
    for i in range(y.shape[1]):
        basis = np.zeros_like(y)
        basis[:, i] = 1.0
        rows.append(np.asarray(vjp(basis)[0], dtype=np.float64))
    return diagnose_jacobian(np.stack(rows, axis=1), numeric, x, y, len(x))


def input_rows(forward: Callable[..., np.ndarray], vjp: Callable[[np.ndarray], Sequence],
               inputs: list[np.ndarray], names: list[str], upstream: np.ndarray,
               atol: float, rtol: float, eps: float | None,
               rng: np.random.Generator) -> list[Row]:
    """One row per floating-point input: ``vjp(upstream)``'s gradient vs central differences.

    ``forward(*inputs)`` returns the output array; ``vjp(g)`` the gradients of the
    floating-point inputs, in order.
    """
    positions = [i for i, value in enumerate(inputs) if _differentiable(value)]
    claimed = list(vjp(upstream))
    if len(claimed) != len(positions):
        listed = ", ".join(names[i] for i in positions)
        raise ValueError(f"backward returned {len(claimed)} gradient"
                         f"{'s' * (len(claimed) != 1)}; expected one per floating-point input, "
                         f"in order: {listed}")
    output = np.asarray(forward(*inputs), dtype=np.float64)
    batch = len(inputs[0]) if inputs[0].ndim >= 2 else None
    rows = []
    for position, gradient in zip(positions, claimed, strict=True):
        value = inputs[position]

        def phi(moved: np.ndarray, position: int = position) -> float:
            arguments = list(inputs)
            arguments[position] = moved
            return float(np.sum(upstream * forward(*arguments)))

        numeric = numerical_gradient(phi, value, eps)
        name = f"d{names[position]}"
        problem = None
        gradient = None if gradient is None else as_float64(f"{name}", gradient)
        if gradient is None:
            problem = f"backward returned None for {name}"
        elif gradient.shape != value.shape and gradient.size == value.size:
            gradient = gradient.reshape(value.shape)  # e.g. db (1, n) for b (n,)
        elif gradient.shape != value.shape:
            problem = (f"{name} has shape {gradient.shape}; {names[position]} has "
                       f"{value.shape}")
        analytic = np.zeros_like(numeric) if problem else gradient
        direction = random_direction(rng, value.shape)
        row = Row(name, analytic, numeric, atol, rtol, problem=problem,
                  probe=(lambda t, d=direction, p=phi, v=value: p(v + t * d),
                         float(np.sum(analytic * direction))))
        if problem is None and not row.passed:
            single = len(positions) == 1 and value.ndim == 2 and output.shape == value.shape
            row.diagnosis = (_diagnose_activation(
                lambda moved, p=position: forward(*[moved if i == p else item
                                                    for i, item in enumerate(inputs)]),
                vjp, value, output, upstream, gradient) if single else []) or (
                diagnose_gradient(gradient, numeric, batch, names[position]))
        rows.append(row)
    return rows


def check_functions(forward_fn: Callable, backward_fn: Callable, *inputs: np.ndarray,
                    grad_out: np.ndarray | None = None, atol: float = DEFAULT_ATOL,
                    rtol: float = DEFAULT_RTOL, eps: float | None = None,
                    seed: int = 0) -> Report:
    """Check a backward function against its forward function, input by input.

    ``forward_fn(*inputs)`` returns ``out`` or ``(out, cache)``; ``backward_fn(dout, cache)``
    (or ``backward_fn(dout, *inputs)`` when there is no cache) returns the gradient of every
    floating-point input, in order (one array or a tuple). Rows are named after
    ``forward_fn``'s parameters: ``dx``, ``dw``, ``db``. ``dout`` is random (seeded) unless
    ``grad_out`` is given. An exception in the user's code raises
    :class:`~chainrule.check.calls.UserCodeError`.

    >>> def affine_forward(x, w, b):
    ...     return x @ w + b, (x, w)
    >>> def affine_backward(dout, cache):
    ...     x, w = cache
    ...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
    >>> rng = np.random.default_rng(0)
    >>> report = check_functions(affine_forward, affine_backward, rng.normal(size=(3, 4)),
    ...                          rng.normal(size=(4, 2)), np.zeros(2))
    >>> [row.name for row in report.rows], bool(report)
    (['dx', 'dw', 'db'], True)
    """
    if not inputs:
        raise ValueError("check_functions needs the inputs to call forward_fn with")
    inputs = [np.array(value, dtype=np.float64) if _differentiable(np.asarray(value))
              else np.asarray(value) for value in inputs]
    names = parameter_names(forward_fn, len(inputs))
    forward_name = getattr(forward_fn, "__name__", "forward_fn")
    backward_name = getattr(backward_fn, "__name__", "backward_fn")
    first = call_user(forward_fn, *inputs, name=forward_name)
    has_cache = isinstance(first, tuple) and len(first) == 2
    out = as_float64(f"{forward_name} output", first[0] if has_cache else first)
    cache = first[1] if has_cache else None

    def forward(*arguments: np.ndarray) -> np.ndarray:
        result = call_user(forward_fn, *arguments, name=forward_name)
        return np.asarray(result[0] if has_cache else result, dtype=np.float64)

    def vjp(upstream: np.ndarray) -> Sequence:
        if has_cache:
            result = call_user(backward_fn, upstream, cache, name=backward_name)
        else:
            result = call_user(backward_fn, upstream, *inputs, name=backward_name)
        return tuple(result) if isinstance(result, tuple | list) else (result,)

    rng = np.random.default_rng([seed, 2])
    upstream = rng.standard_normal(out.shape) if grad_out is None else as_float64(
        "grad_out", grad_out)
    return inputs_report(f"check_functions: {forward_name} / {backward_name}", forward_name,
                         forward, vjp, inputs, names, out.shape, upstream, atol, rtol, eps, rng)


def inputs_report(title: str, label: str, forward: Callable[..., np.ndarray],
                  vjp: Callable[[np.ndarray], Sequence], inputs: list[np.ndarray],
                  names: list[str], output_shape: tuple, upstream: np.ndarray, atol: float,
                  rtol: float, eps: float | None, rng: np.random.Generator) -> Report:
    """The :func:`input_rows` of ``upstream`` (checked against ``label``'s output shape) as a
    report titled ``"{title} at {the inputs' shapes}"``."""
    if upstream.shape != output_shape:
        raise ValueError(f"grad_out has shape {upstream.shape}; {label}'s output is "
                         f"{output_shape}")
    rows = input_rows(forward, vjp, inputs, names, upstream, atol, rtol, eps, rng)
    failed = [row for row in rows if not row.passed]
    shapes = ", ".join(str(value.shape) for value in inputs)
    return Report(f"{title} at {shapes}", rows, cause=failed[0].name if failed else None)
