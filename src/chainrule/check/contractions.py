"""Numeric parameter derivatives of a layer, contracted with upstream gradients.

Parameters are shared by all rows, so they cannot be stacked like inputs: each entry costs
its own forward calls, unless it is column-aligned (an entry ``[r, j]`` moves only output
column ``j``, as for a Dense layer's weights and bias), which is verified, not assumed.
"""

from __future__ import annotations

import numpy as np

from chainrule.check.numerical import CHUNK_ELEMENTS, steps_for

__all__ = ["parameter_contractions"]


def parameter_contractions(layer: object, x: np.ndarray, name: str, upstream: np.ndarray,
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
