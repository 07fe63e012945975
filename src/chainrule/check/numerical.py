"""Numerical differentiation: central differences in float64, vectorised over rows.

``∂f/∂x_i ≈ (f(x + h e_i) - f(x - h e_i)) / 2h`` with ``h = ∛ε · max(1, |x_i|)`` (ε the
float64 machine epsilon, so truncation ``O(h²)`` and round-off ``O(ε/h)`` balance) unless
``eps`` is given; the denominator is the exactly representable ``(x + h) - (x - h)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["MixesRowsError", "numerical_gradient", "numerical_gradient_at", "numerical_jacobian",
           "rowwise_jacobian", "same_output", "sampled_entries"]

STEP = float(np.cbrt(np.finfo(np.float64).eps))  # optimal central-difference step ≈ 6e-6
CHUNK_ELEMENTS = 1 << 22  # at most ~32 MB of float64 per stacked call


def steps_for(x: np.ndarray, eps: float | None) -> np.ndarray:
    """Per-entry step: ``∛ε · max(1, |x|)`` when ``eps`` is None, else ``eps`` everywhere."""
    if eps is None:
        return STEP * np.maximum(1.0, np.abs(x))
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return np.full(x.shape, float(eps))


def as_float64(name: str, value: np.ndarray) -> np.ndarray:
    """A float64 copy of ``value``; a ValueError naming ``name`` and the entry if not finite."""
    value = np.array(value, dtype=np.float64)
    # Σ x² (one BLAS dot) finds NaN/inf cheaply; huge finite entries overflowing it only cost
    # the exact search, which then finds nothing.
    if not math.isfinite(np.vdot(value, value)) and not np.isfinite(value).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        raise ValueError(f"{name} has non-finite values: {value[index]} at {list(index)}")
    return value


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float | None = None,
                       batched: bool = False) -> np.ndarray:
    """Central-difference gradient of a scalar ``f`` at ``x``: same shape as ``x``.

    ``∂f/∂x_i ≈ (f(x + h e_i) - f(x - h e_i)) / 2h``. With ``batched=True`` ``f`` takes a
    stack ``(K, *x.shape)`` and returns ``K`` values, and the perturbed copies go through in
    chunks instead of one call per entry.

    >>> numerical_gradient(lambda v: float(v @ v), np.array([1.0, 2.0])).round(6)
    array([2., 4.])
    """
    x = as_float64("x", x)
    if batched:
        return numerical_jacobian(lambda stack: np.asarray(f(stack)).reshape(len(stack), 1),
                                  x[None], eps, batched=True)[0, 0, 0]
    return numerical_jacobian(lambda point: np.asarray(f(point), dtype=np.float64), x, eps)


def sampled_entries(size: int, sample: int | None,
                    rng: np.random.Generator) -> np.ndarray | None:
    """``sample`` random flat entries of an array of ``size``, sorted; None for all of them
    (no sample asked, or one as large)."""
    if sample is None or sample >= size:
        return None
    return np.sort(rng.choice(size, sample, replace=False))


def numerical_gradient_at(f: Callable[[np.ndarray], float], x: np.ndarray,
                          entries: np.ndarray | None, eps: float | None = None) -> np.ndarray:
    """Central-difference gradient of a scalar ``f`` at ``x`` in its flat ``entries`` only,
    ``(K,)``, each moved with the others held (``x``'s shape, all of them, when None)."""
    if entries is None:
        return numerical_gradient(f, x, eps)
    x = np.array(x, dtype=np.float64)

    def moved(values: np.ndarray) -> float:
        point = x.copy()
        point.reshape(-1)[entries] = values
        return f(point)

    return numerical_gradient(moved, x.reshape(-1)[entries], eps)


def numerical_jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                       eps: float | None = None, batched: bool = False) -> np.ndarray:
    """Central-difference Jacobian ``J[out, in] = ∂f(x)[out]/∂x[in]``: ``f(x).shape + x.shape``.

    ``batched=True`` declares that ``f`` works row by row along the leading axis (``f(X)[k]``
    depends on ``X[k]`` only, like every layer and a softmax along the last axis): feature
    ``j`` is then perturbed in every row at once and all perturbed copies go through ``f``
    stacked in a few calls; for ``x`` of shape ``(n,)`` ``f`` must accept ``(K, n)`` stacks.

    >>> numerical_jacobian(lambda v: v ** 2, np.array([1.0, 3.0])).round(6)
    array([[2., 0.],
           [0., 6.]])
    """
    x = as_float64("x", x)
    if batched:
        rows = x[None] if x.ndim == 1 else x
        out_shape = np.shape(f(rows[:1]))[1:]

        def flat_f(flat: np.ndarray) -> np.ndarray:
            return np.asarray(f(flat.reshape(-1, *rows.shape[1:]))).reshape(len(flat), -1)

        per_row = rowwise_jacobian(flat_f, rows.reshape(len(rows), -1), eps)  # (B, m, n)
        if x.ndim == 1:
            return per_row[0].reshape(*out_shape, *x.shape)
        full = np.zeros((len(rows), per_row.shape[1], len(rows), per_row.shape[2]))
        full[np.arange(len(rows)), :, np.arange(len(rows)), :] = per_row
        return full.reshape(len(rows), *out_shape, *x.shape)
    steps = steps_for(x, eps)
    flat_x = x.reshape(-1)
    centre = np.asarray(f(x), dtype=np.float64)
    jacobian = np.empty((centre.size, x.size))
    for i in range(x.size):
        plus, minus = flat_x.copy(), flat_x.copy()
        plus[i] += steps.flat[i]
        minus[i] -= steps.flat[i]
        up = np.asarray(f(plus.reshape(x.shape)), dtype=np.float64)
        down = np.asarray(f(minus.reshape(x.shape)), dtype=np.float64)
        jacobian[:, i] = (up - down).reshape(-1) / (plus[i] - minus[i])
    return jacobian.reshape(*centre.shape, *x.shape)


def rowwise_jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                     eps: float | None = None, name: str = "f") -> np.ndarray:
    """Per-row Jacobians ``(B, m, n)`` of a row-wise ``f: (B, n) -> (B, m)`` at ``x``.

    Feature ``j`` of every row is moved by ``±h`` at once; the ``2n`` perturbed copies of
    the batch (plus the unperturbed one; with one moved row alone, this verifies that ``f``
    really treats rows independently) are stacked into calls of at most ~4M elements.
    ``f`` must give the same output twice for the same input (no random mask); ``name``
    is how errors call it.
    """
    x = as_float64("x", x)
    batch, width = x.shape
    steps = steps_for(x, eps)
    centre = as_float64(f"{name}(x)", f(x))
    if centre.ndim != 2 or len(centre) != batch:
        raise ValueError(f"a row-wise {name} must map (B, n) to (B, m); got {x.shape} -> "
                         f"{centre.shape}")
    jacobian = np.empty((batch, centre.shape[1], width))
    per_column = 2 * batch * max(width, centre.shape[1])
    chunk = max(1, CHUNK_ELEMENTS // per_column)
    for begin in range(0, width, chunk):
        columns = np.arange(begin, min(begin + chunk, width))
        stack = np.repeat(x[None, None], 2, axis=0).repeat(len(columns), axis=1)
        stack[0, np.arange(len(columns)), :, columns] += steps[:, columns].T
        stack[1, np.arange(len(columns)), :, columns] -= steps[:, columns].T
        denominator = (stack[0, np.arange(len(columns)), :, columns]
                       - stack[1, np.arange(len(columns)), :, columns])  # (c, B), exact steps
        flat = stack.reshape(-1, width)
        if begin == 0:
            flat = np.concatenate([x, flat])
        out = np.asarray(f(flat), dtype=np.float64)
        if begin == 0:
            # One moved row alone: a stack of ±h copies keeps the batch mean of each column,
            # so x's rows could come out the same in it even from batch statistics.
            moved_row = np.asarray(f(flat[batch:batch + 1]), dtype=np.float64)
            if not (same_output(centre, out[:batch])
                    and same_output(out[batch:batch + 1], moved_row)):
                raise _not_rowwise(name, random=not same_output(
                    centre, np.asarray(f(x), dtype=np.float64)))
            out = out[batch:]
        out = out.reshape(2, len(columns), batch, -1)
        jacobian[:, :, columns] = ((out[0] - out[1]) / denominator[..., None]).transpose(1, 2, 0)
    return jacobian


def same_output(first: np.ndarray, second: np.ndarray) -> bool:
    """Equal up to the rounding of a different batching of the same rows (a row ``(m,)``
    for a batch of one ``(1, m)`` included)."""
    scale = 1e-12 * max(1.0, float(np.abs(first).max(initial=0.0)))
    try:
        return bool(np.allclose(first, second, rtol=1e-12, atol=scale))
    except ValueError:  # shapes that do not broadcast
        return False


class MixesRowsError(ValueError):
    """``f`` is deterministic but does not treat the rows of a batch independently (batch
    statistics): it has no per-row Jacobian."""


def _not_rowwise(name: str, random: bool) -> ValueError:
    """Why the rows of the batch did not come out the same stacked with others, or alone."""
    if random:
        return ValueError(f"{name} gives a different output each time for the same input "
                          "(random, like a dropout mask), so no derivative can be measured: "
                          "check it with the randomness fixed (the same mask every call, a "
                          "seed set inside it, or its evaluation mode)")
    return MixesRowsError(f"{name} gives different results for the same rows when other rows "
                          "are stacked with them: it mixes rows of the batch (e.g. batch "
                          "statistics), so it cannot be checked row by row")
