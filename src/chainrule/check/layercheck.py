"""Checking one layer: its ``backward`` against central differences of its own ``forward``.

Works for any object following the layer protocol of :mod:`chainrule.nn.layers`. The input
gradient comes from per-row Jacobians with every row perturbed at once; parameters are
differenced an entry at a time, or a row at a time when an entry ``[r, j]`` moves only
output column ``j`` (verified, see :func:`_column_aligned_contractions`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from chainrule.check.diagnosis import diagnose_gradient, diagnose_jacobian
from chainrule.check.numerical import CHUNK_ELEMENTS, as_float64, rowwise_jacobian, steps_for
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Report, Row

__all__ = ["check_layer", "claimed_jacobian", "layer_rows", "probe", "random_direction",
           "to_float64"]


def random_direction(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """A random normal direction of ``shape`` scaled to root-mean-square 1."""
    direction = rng.standard_normal(shape)
    return direction / max(float(np.sqrt(np.mean(direction * direction))), 1e-300)


def to_float64(layer: object) -> object:
    """Give ``layer`` (a copy: checks never touch the user's) float64 parameters."""
    for name, value in layer.params.items():
        if value.dtype != np.float64:
            layer.params[name] = value.astype(np.float64)
            layer.grads[name] = np.zeros_like(layer.params[name])
    return layer


def _refuse_constant_upstream(grad_out: np.ndarray) -> None:
    if grad_out.shape[1] > 1 and np.allclose(grad_out, grad_out[:, :1], rtol=0, atol=0):
        raise ValueError(
            "grad_out is constant along the classes (like all-ones, or backpropagating "
            "y.sum()): it lies in the null space of the softmax Jacobian (its rows sum to "
            "0), so ANY softmax backward whose Jacobian rows sum to zero would pass. Use "
            "grad_out=None for a random upstream gradient")


def _parameter_contractions(layer: object, x: np.ndarray, name: str, upstream: np.ndarray,
                            entries: np.ndarray, eps: float | None) -> np.ndarray:
    """``Σ_bi upstream[k, b, i] ∂y_bi/∂θ_p`` for each ``p`` in ``entries``: shape ``(K, P)``.

    Central differences of ``layer.forward(x)``. Parameters are shared by all rows, so they
    cannot be stacked like inputs: each costs its own forward calls, unless it is
    column-aligned (see :func:`_column_aligned_contractions`).
    """
    param = layer.params[name]
    flat = param.reshape(-1)
    if not np.shares_memory(flat, param):
        raise ValueError(f"parameter {name!r} is not contiguous; cannot perturb it in place")
    width = upstream.shape[-1]
    if param.ndim >= 1 and param.shape[-1] == width > 1:
        result = _column_aligned_contractions(layer, x, param.reshape(-1, width), upstream,
                                              entries, eps)
        if result is not None:
            return result
    steps = steps_for(flat[entries], eps)
    vectors = upstream.reshape(len(upstream), -1)
    result = np.empty((len(vectors), len(entries)))
    chunk = max(1, CHUNK_ELEMENTS // (4 * vectors.shape[1]))
    buffer = np.empty((min(chunk, len(entries)), vectors.shape[1]))
    for begin in range(0, len(entries), chunk):
        block = entries[begin:begin + chunk]
        block_steps = steps[begin:begin + len(block)].tolist()
        for k, (entry, step) in enumerate(zip(block.tolist(), block_steps, strict=True)):
            old = flat[entry]
            plus, minus = old + step, old - step
            flat[entry] = plus
            buffer[k] = layer.forward(x).reshape(-1)
            flat[entry] = minus
            buffer[k] -= layer.forward(x).reshape(-1)
            flat[entry] = old
            buffer[k] /= plus - minus
        result[:, begin:begin + len(block)] = vectors @ buffer[:len(block)].T
    return result


_AGREEMENT = 1e-8  # relative: numeric noise of the estimates is ~1e-10


def _column_aligned_contractions(layer: object, x: np.ndarray, rows: np.ndarray,
                                 upstream: np.ndarray, entries: np.ndarray,
                                 eps: float | None) -> np.ndarray | None:
    """Per-entry contractions when entry ``[r, j]`` moves only output column ``j``, else None.

    ``rows`` is the parameter viewed as ``(R, m)`` with ``m`` the output width (as for the
    weights and bias of a Dense layer, or a per-feature scale). If entry ``[r, j]`` affects
    output column ``j`` only, a whole row ``r`` can be perturbed at once and column ``j`` of
    the change is entry ``[r, j]``'s derivative: 4 forward calls per row instead of 2 per
    entry. The hypothesis is tested, not assumed: each row is differenced with two step
    patterns ``h·w`` and ``h·w'`` whose ratios ``w_j / w_k`` all differ, so any leak of an
    entry into another column makes the two estimates disagree; on disagreement beyond
    1e-8 (relative) this returns None and the caller falls back to one entry at a time.
    """
    width = rows.shape[1]
    patterns = (np.ones(width), 1.0 + np.arange(width) / width)
    needed = np.unique(entries // width)
    derivatives = np.empty((len(needed), len(x), width))  # [row, b, j] = ∂y_bj/∂θ[r, j]
    for position, r in enumerate(needed.tolist()):
        saved = rows[r].copy()
        steps = steps_for(saved, eps)
        estimates = []
        for pattern in patterns:
            plus, minus = saved + steps * pattern, saved - steps * pattern
            rows[r] = plus
            change = np.array(layer.forward(x), dtype=np.float64)
            rows[r] = minus
            change -= layer.forward(x)
            estimates.append(change / (plus - minus))
        rows[r] = saved
        scale = max(float(np.max(np.abs(estimates[0]))), np.finfo(np.float64).tiny)
        if np.max(np.abs(estimates[0] - estimates[1])) > _AGREEMENT * scale:
            return None
        derivatives[position] = estimates[0]
    where = np.searchsorted(needed, entries // width)
    columns = entries % width
    # result[k, p] = Σ_b upstream[k, b, j_p] · derivatives[row_p, b, j_p]
    return np.einsum("kbp,pb->kp", upstream[:, :, columns],
                     derivatives[where, :, columns])


def claimed_jacobian(layer: object, x: np.ndarray, width: int) -> np.ndarray:
    """The per-row Jacobian ``(B, m, n)`` that ``backward`` implies: row i = backward(e_i)."""
    layer.forward(x)
    rows = []
    for i in range(width):
        basis = np.zeros((len(x), width))
        basis[:, i] = 1.0
        rows.append(np.array(layer.backward(basis), dtype=np.float64))
    return np.stack(rows, axis=1)


def probe(scalar: Callable[[float], float], slope: float) -> tuple[Callable[[float], float],
                                                                  float]:
    """A row's ``probe`` for the step-size sweep: ``φ(t)`` and its claimed slope at 0."""
    return scalar, float(slope)


def layer_rows(layer: object, x: np.ndarray, grad_out: np.ndarray, label: str,
               index: int | None, extra_upstream: np.ndarray | None, sample: int | None,
               rng: np.random.Generator, atol: float, rtol: float,
               eps: float | None) -> tuple[list[Row], np.ndarray, dict]:
    """Rows of one layer checked in isolation with upstream ``grad_out``.

    Returns the rows, the numeric per-row Jacobian ``(B, m, n)`` and, when
    ``extra_upstream`` is given, for each parameter ``(entries, positions, numeric
    contraction with extra_upstream)``, e.g. the numeric ``∂L/∂θ`` of a whole network.
    """
    y = as_float64(f"{label} output", layer.forward(x))
    grad_in = as_float64(f"{label} backward", layer.backward(grad_out))
    if grad_in.shape != x.shape:
        raise ValueError(f"{label}: backward returned shape {grad_in.shape}, expected the "
                         f"input's {x.shape}")
    grads = {name: as_float64(f"{label} grads[{name!r}]", layer.grads[name])
             for name in layer.params}
    jacobian = rowwise_jacobian(layer.forward, x, eps)
    direction = random_direction(rng, x.shape)
    rows = [Row(f"{label} input gradient", grad_in,
                np.einsum("bi,bij->bj", grad_out, jacobian), atol, rtol, index,
                probe=probe(lambda t: float(np.sum(grad_out * layer.forward(x + t * direction))),
                            np.sum(grad_in * direction)))]
    if not rows[0].passed:
        claimed = claimed_jacobian(layer, x, y.shape[1])
        rows[0].diagnosis = diagnose_jacobian(claimed, jacobian, x, y)
    extra = {}
    upstream = grad_out[None] if extra_upstream is None else np.stack([grad_out, extra_upstream])
    for name, param in layer.params.items():
        if sample is None or sample >= param.size:
            entries = np.arange(param.size)
        else:
            entries = np.sort(rng.choice(param.size, size=sample, replace=False))
        numeric = _parameter_contractions(layer, x, name, upstream, entries, eps)
        positions = None if len(entries) == param.size else np.stack(
            np.unravel_index(entries, param.shape), axis=1)
        claimed = grads[name].reshape(-1)[entries]
        shaped = _shaper(param.shape, positions is None)
        param_direction = random_direction(rng, param.shape)
        row = Row(f"{label} ∂/∂{name}", shaped(claimed), shaped(numeric[0]), atol, rtol, index,
                  positions, probe=probe(_parameter_scalar(layer, x, name, grad_out,
                                                           param_direction),
                                         np.sum(grads[name] * param_direction)))
        if not row.passed:
            row.diagnosis = diagnose_gradient(row.analytic, row.numeric)
        rows.append(row)
        if extra_upstream is not None:
            extra[name] = (entries, positions, shaped(numeric[1]))
    return rows, jacobian, extra


def _shaper(shape: tuple, full: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Reshape flat values to the parameter's shape when every entry was checked."""
    return (lambda values: values.reshape(shape)) if full else (lambda values: values)


def _parameter_scalar(layer: object, x: np.ndarray, name: str, grad_out: np.ndarray,
                      direction: np.ndarray) -> Callable[[float], float]:
    """``φ(t) = Σ grad_out ⊙ forward(x)`` with ``params[name]`` moved by ``t·direction``."""
    def scalar(t: float) -> float:
        param = layer.params[name]
        saved = param.copy()
        param += t * direction
        try:
            return float(np.sum(grad_out * layer.forward(x)))
        finally:
            param[...] = saved
    return scalar


def _upstream(grad_out: np.ndarray | None, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if grad_out is None:
        return rng.standard_normal(shape)
    grad_out = as_float64("grad_out", grad_out)
    if grad_out.shape != shape:
        raise ValueError(f"grad_out has shape {grad_out.shape}; the layer's output is {shape}")
    _refuse_constant_upstream(grad_out)
    return grad_out


def check_layer(layer: object, x: np.ndarray, grad_out: np.ndarray | None = None,
                atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, eps: float | None = None,
                sample: int | None = None, seed: int = 0) -> Report:
    """Check ``layer.backward`` (input and every parameter gradient) against its ``forward``.

    Works for any object following the layer protocol (see :mod:`chainrule.nn.layers`). With
    upstream ``g`` (random, seeded, unless ``grad_out`` is given) the numeric input gradient
    is ``g_b · J_b`` with per-row Jacobians ``J`` from central differences of ``forward``,
    and the numeric ``∂/∂θ_p = Σ g ⊙ ∂forward(x)/∂θ_p``. ``sample=K`` checks K random
    entries per parameter. The layer is copied (float64), never modified.

    >>> from chainrule.nn.layers import Softmax
    >>> check_layer(Softmax(), np.array([[1.75, 1.75]])).passed
    True
    """
    layer = to_float64(copy.deepcopy(layer))
    x = as_float64("x", x)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"x must be a non-empty batch (B, features), got shape {x.shape}")
    rng = np.random.default_rng(seed)
    grad_out = _upstream(grad_out, np.shape(layer.forward(x)), rng)
    label = type(layer).__name__
    rows, _, _ = layer_rows(layer, x, grad_out, label, None, None, sample, rng, atol, rtol, eps)
    failed = [row for row in rows if not row.passed]
    return Report(f"check_layer: {layer!r} at x {x.shape}", rows,
                  cause=failed[0].name if failed else None)
