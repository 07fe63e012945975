"""Checks of a user's derivative of a function: a Jacobian, or the gradient of a scalar.

Numeric derivatives (:mod:`chainrule.check.numerical`) are central differences
``(f(x + h) - f(x - h)) / 2h`` in float64 with ``h = ∛ε · max(1, |x|)`` (ε the float64
machine epsilon) unless ``eps`` is given. Analytic and numeric values are compared with the
relative error of :mod:`chainrule.check.report`: ``|a - n| / max(|a|, |n|, atol / rtol) <= rtol``,
defaults ``rtol = 1e-5``, ``atol = 1e-8``. Failures are named from the catalogue of
:mod:`chainrule.check.diagnosis`.

>>> import numpy as np
>>> from chainrule.nn.functional import softmax, softmax_jacobian
>>> z = np.array([1.75, 1.75])
>>> check_jacobian(softmax, lambda z: softmax_jacobian(softmax(z)), z).passed
True
>>> check_jacobian(softmax, softmax_jacobian, z).diagnosis[0].identifier  # at z, not at a
'evaluated_at_input'
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chainrule.check.calls import call_user
from chainrule.check.diagnosis import diagnose_gradient, diagnose_jacobian
from chainrule.check.layercheck import random_direction
from chainrule.check.numerical import (
    as_float64,
    numerical_gradient,
    numerical_jacobian,
    rowwise_jacobian,
)
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Report, Row

__all__ = ["check_gradient", "check_jacobian"]


def _user(function: Callable, what: str) -> Callable:
    """``function`` with an exception inside it reported as the user's (UserCodeError)."""
    name = getattr(function, "__name__", what)
    return lambda *args: call_user(function, *args, name=name)


def check_jacobian(f: Callable[[np.ndarray], np.ndarray],
                   jacobian_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                   atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                   eps: float | None = None, seed: int = 0, elementwise: bool = False) -> Report:
    """Check a claimed Jacobian ``jacobian_fn(x)`` against central differences of ``f``.

    ``x`` ``(n,)``: ``f(x)`` ``(m,)`` and the claim ``(m, n)``. ``x`` ``(B, n)``: ``f`` is
    applied row-wise, ``f(x)`` is ``(B, m)`` and the claim holds per-row Jacobians
    ``(B, m, n)``. ``elementwise=True``: the claim is an element-wise derivative of ``x``'s
    shape, compared with the Jacobian's diagonal; if ``f`` has cross terms (softmax), they
    are reported missing (``diagonal_only``). On failure the report's ``diagnosis`` names
    the matching classic mistakes. An exception in ``f`` or ``jacobian_fn`` raises
    :class:`~chainrule.check.calls.UserCodeError`.

    >>> from chainrule.nn.functional import softmax
    >>> def softmax_prime(a):  # only the diagonal: the cross terms are missing
    ...     return np.diag(a * (1 - a))
    >>> report = check_jacobian(softmax, lambda z: softmax_prime(softmax(z)), np.array([1.0, 2.0]))
    >>> [d.identifier for d in report.diagnosis]
    ['diagonal_only']
    """
    x = as_float64("x", x)
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"x must be a vector (n,) or a batch of rows (B, n), got {x.shape}")
    title = f"check_jacobian: {getattr(f, '__name__', 'f')} at x {x.shape}"
    f, jacobian_fn = _user(f, "f"), _user(jacobian_fn, "jacobian_fn")
    y = as_float64("f(x)", f(x))
    expected = (y.size, x.size) if x.ndim == 1 else (*y.shape, x.shape[1])
    if x.ndim == 2 and (y.ndim != 2 or len(y) != len(x)):
        raise ValueError(f"for a batch x {x.shape}, f must be row-wise and return (B, m); "
                         f"got f(x) of shape {y.shape}")
    claimed = as_float64("jacobian_fn(x)", jacobian_fn(x))
    if x.ndim == 1:
        numeric = numerical_jacobian(f, x, eps).reshape(expected)
    else:
        numeric = rowwise_jacobian(f, x, eps)
    if elementwise:
        return _check_elementwise(title, claimed, numeric, x, y, atol, rtol)
    if claimed.shape != expected:
        kind = "(m, n)" if x.ndim == 1 else "per-row Jacobians (B, m, n)"
        hint = (" (an element-wise derivative? pass elementwise=True)"
                if claimed.shape == x.shape else "")
        raise ValueError(f"jacobian_fn(x) has shape {claimed.shape}; expected {kind} = "
                         f"{expected} for x {x.shape} and f(x) {y.shape}{hint}")
    rng = np.random.default_rng(seed)
    upstream, direction = rng.standard_normal(y.shape), random_direction(rng, x.shape)
    # slope of φ(t) = Σ upstream ⊙ f(x + t·direction): Σ_rows upstreamᵀ J direction
    slope = float(np.sum(upstream.reshape(*expected[:-1], 1) * claimed
                         * direction.reshape(*expected[:-2], 1, -1)))
    row = Row("Jacobian", claimed, numeric, atol, rtol,
              probe=(lambda t: float(np.sum(upstream * f(x + t * direction))), slope))
    if not row.passed:
        row.diagnosis = diagnose_jacobian(claimed, numeric, x, y)
    return Report(title, [row], cause=None if row.passed else row.name)


def _check_elementwise(title: str, claimed: np.ndarray, numeric: np.ndarray, x: np.ndarray,
                       y: np.ndarray, atol: float, rtol: float) -> Report:
    """An element-wise derivative ``(n,)``/``(B, n)`` against the numeric Jacobian's diagonal,
    and the Jacobian's cross terms (off-diagonal) against the zeros it implies."""
    if claimed.shape != x.shape or y.shape != x.shape:
        raise ValueError(f"an element-wise derivative has the input's shape {x.shape} (and so "
                         f"has f(x), here {y.shape}); got {claimed.shape}")
    diagonal = np.einsum("...ii->...i", numeric)
    implied = np.zeros_like(numeric)
    np.einsum("...ii->...i", implied)[...] = claimed
    cross = numeric.copy()
    np.einsum("...ii->...i", cross)[...] = 0
    rows = [Row("derivative vs the Jacobian's diagonal", claimed, diagonal, atol, rtol)]
    cross_row = Row("cross terms (off-diagonal of the Jacobian)", np.zeros_like(cross), cross,
                    atol, rtol)
    if not cross_row.passed:
        rows.append(cross_row)
    failed = [row for row in rows if not row.passed]
    if failed:
        diagnosis = diagnose_jacobian(implied, numeric, x, y)
        for row in failed:
            row.diagnosis = diagnosis
    return Report(f"{title}, element-wise derivative", rows,
                  cause=failed[0].name if failed else None)


def check_gradient(f: Callable[[np.ndarray], float], grad_fn: Callable[[np.ndarray], np.ndarray],
                   x: np.ndarray, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                   eps: float | None = None, seed: int = 0) -> Report:
    """Check a claimed gradient ``grad_fn(x)`` of a scalar ``f`` against central differences.

    For ``x`` a batch ``(B, ...)`` a gradient ``B`` times too large is diagnosed as
    ``missing_batch_mean`` (summed where the loss averages), rows that do not affect ``f``
    as ``rows_ignored``.

    >>> check_gradient(lambda v: float(np.mean(v ** 2)), lambda v: 2 * v,
    ...                np.ones((4, 2))).diagnosis[0].identifier
    'scaled'
    """
    x = as_float64("x", x)
    title = f"check_gradient: {getattr(f, '__name__', 'f')} at x {x.shape}"
    f, grad_fn = _user(f, "f"), _user(grad_fn, "grad_fn")
    value = np.asarray(f(x))
    if value.size != 1:
        raise ValueError(f"f must return a scalar, got shape {value.shape}")
    claimed = as_float64("grad_fn(x)", grad_fn(x))
    if claimed.shape != x.shape:
        raise ValueError(f"grad_fn(x) has shape {claimed.shape}; expected x's shape {x.shape}")
    numeric = numerical_gradient(lambda point: float(f(point)), x, eps)
    direction = random_direction(np.random.default_rng(seed), x.shape)
    row = Row("gradient", claimed, numeric, atol, rtol,
              probe=(lambda t: float(f(x + t * direction)), float(np.sum(claimed * direction))))
    if not row.passed:
        batch = x.shape[0] if x.ndim >= 2 else None
        row.diagnosis = diagnose_gradient(claimed, numeric, batch)
    return Report(title, [row], cause=None if row.passed else row.name)
