"""``SparseInputDense``: a first ``Dense`` layer that takes a SciPy sparse matrix as input.

Only the products touch the input: ``x @ W`` and ``xᵀ g`` are sparse-times-dense, so the input
is never densified (a 1% dense ``(N, 10⁶)`` bag of words stays 1% of its dense size).
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.nn.errors import NonFiniteError
from chainrule.nn.layers import Dense

__all__ = ["SparseInputDense", "is_sparse"]


def is_sparse(x: object) -> bool:
    """Whether ``x`` is a SciPy sparse matrix or array (duck-typed: no SciPy import)."""
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


class SparseInputDense(Dense):
    """``y = x @ W + b`` for sparse ``x`` ``(B, n_in)`` (dense ``x`` works too).

    Backward: ``∂L/∂W = xᵀ g`` (sparse times dense), ``∂L/∂b = Σ_batch g``,
    ``∂L/∂x = g Wᵀ`` (dense, as any input gradient).
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not is_sparse(x):
            return super().forward(x)
        n_in = self.params["W"].shape[0]
        if x.ndim != 2 or x.shape[1] != n_in or x.shape[0] == 0:
            raise ValueError(f"{self!r}: expected input of shape (B, {n_in}), got {x.shape}")
        x = x.astype(self.params["W"].dtype, copy=False)
        stored = x.data
        if not math.isfinite(np.vdot(stored, stored)) and not np.all(np.isfinite(stored)):
            raise NonFiniteError(f"{self!r}: the sparse input has non-finite stored values")
        self.x = x
        y = np.asarray(x @ self.params["W"])
        y += self.params["b"]
        return y

    def _backward_params(self, grad_out: np.ndarray) -> np.ndarray:
        if not is_sparse(self.x):
            return super()._backward_params(grad_out)
        grad_out = self._check_grad_out(grad_out, (self.x.shape[0], self.params["W"].shape[1]))
        self.grads["W"][...] = self.x.T @ grad_out
        np.add.reduce(grad_out, axis=0, out=self.grads["b"])
        return grad_out
