"""Pure array math: softmax and friends, their Jacobians and vector-Jacobian products.

Everything here is batched over leading axes with classes on the last axis (or ``axis``),
works in float32 and float64, and never mutates its inputs.
"""

from __future__ import annotations

import numpy as np

from chainrule.nn import kernels

__all__ = [
    "log_softmax",
    "logsumexp",
    "sigmoid",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
]


def _shift(z: np.ndarray, axis: int) -> np.ndarray:
    """The max along ``axis`` (kept), with non-finite maxima replaced by 0.

    Subtracting it makes ``exp`` overflow-free; a row whose max is ``-inf`` (every entry
    masked) or ``+inf`` keeps shift 0 so that no ``inf - inf = nan`` is created here.
    """
    shift = np.max(z, axis=axis, keepdims=True)
    return np.where(np.isfinite(shift), shift, 0).astype(z.dtype, copy=False)


def logsumexp(z: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``log Σ_j exp(z_j)`` along ``axis``, computed as ``m + log Σ exp(z - m)``, m = max z.

    Finite for |z| up to the dtype's range; ``-inf`` entries (masked logits) contribute 0.

    >>> float(logsumexp(np.array([1000.0, 1000.0])))  # naive exp overflows
    1000.6931471805599
    """
    z = np.asarray(z)
    shift = _shift(z, axis)
    out = _log_sum_exp_shifted(z - shift, axis) + shift
    return out if keepdims else np.squeeze(out, axis=axis)


def _log_sum_exp_shifted(shifted: np.ndarray, axis: int) -> np.ndarray:
    """``log Σ exp(shifted)`` (kept axis); an all ``-inf`` row gives ``-inf``, not a warning."""
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log softmax(z) = z - logsumexp(z)``: stable for large |z|; masked ``-inf`` stays."""
    z = np.asarray(z)
    # (z - m) - log Σ exp(z - m): subtracting the small log-sum last keeps float32 precision.
    shifted = z - _shift(z, axis)
    return shifted - _log_sum_exp_shifted(shifted, axis)


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``a_i = exp(z_i - m) / Σ_j exp(z_j - m)`` with m = max z (same result, no overflow).

    >>> softmax(np.array([1.75, 1.75]))
    array([0.5, 0.5])
    """
    z = np.asarray(z)
    exps = np.exp(z - _shift(z, axis))
    exps /= np.sum(exps, axis=axis, keepdims=True)
    return exps


def softmax_jacobian(a: np.ndarray) -> np.ndarray:
    """Jacobian of softmax from its OUTPUT ``a``: ``J[..., i, j] = ∂a_i/∂z_j = a_i (δ_ij - a_j)``.

    Shapes: ``a`` ``(..., C)`` -> ``(..., C, C)``. J is symmetric, and its rows and columns
    sum to 0. It must be evaluated at the probabilities ``a = softmax(z)``, never at the
    logits ``z``. For training use :func:`softmax_vjp`, which never builds J.

    >>> softmax_jacobian(np.array([0.5, 0.5]))
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """
    a = np.asarray(a)
    jac = -a[..., :, None] * a[..., None, :]
    diagonal = np.einsum("...ii->...i", jac)  # a writable view of the diagonal
    diagonal += a
    return jac


def softmax_vjp(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``Jᵀ g`` for softmax output ``a`` and upstream gradient ``g``, both ``(..., C)``.

    ``(Jᵀ g)_j = a_j (g_j - Σ_i g_i a_i)``: O(C) per row, the C×C Jacobian is never built.

    >>> softmax_vjp(np.array([0.5, 0.5]), np.array([0.0, -2.0]))
    array([ 0.5, -0.5])
    """
    return kernels.softmax_vjp(a, g)  # one fused pass per row (NumPy: a BLAS dot, two ufuncs)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``σ(z) = 1 / (1 + exp(-z))``, within a few ulps relative for every z: for z below
    about -709 (-88 in float32) ``exp(-z)`` overflows to inf and σ to its limit 0.
    (``(1 + tanh(z/2)) / 2`` cancels: it loses the digits of a small σ, and is 0 from z = -38.)"""
    z = np.asarray(z)
    out = np.empty(z.shape, dtype=np.result_type(z.dtype, np.float16))  # ints -> float64
    np.negative(z, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    np.divide(1, out, out=out)  # NumPy's float32 reciprocal is slower than 1 / x here
    return out[()] if out.ndim == 0 else out
