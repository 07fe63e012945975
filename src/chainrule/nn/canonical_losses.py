"""Losses paired with their canonical output function, weighted per sample.

These are the losses of scikit-learn's MLPs. Each takes the last ``Dense`` layer's raw output
``z`` ``(B, K)``, targets ``Y`` ``(B, K)`` and optional sample weights ``w`` ``(B,)``:

    E = Σ_b w_b L(z_b, Y_b) / Σ_b w_b        (no weights: the mean over the rows)

where ``L`` sums over the ``K`` outputs. Each loss comes with its output function ``h``
(softmax, sigmoid, identity, exp) such that ``∂L/∂z = h(z) - Y``: that holds for these pairs
(a loss and its canonical link) and only for them, so ``backward`` is
``w ⊙ (h(z) - Y) / Σ w`` with no Jacobian of ``h``. ``output(z)`` is ``h(z)``, the prediction.
"""

from __future__ import annotations

import numpy as np

from chainrule.nn.functional import log_softmax, sigmoid
from chainrule.nn.losses import Loss

__all__ = ["CanonicalLoss", "HalfPoissonDeviance", "HalfSquaredError", "SigmoidLogLoss",
           "SoftmaxLogLoss"]


class CanonicalLoss(Loss):
    """Base class: subclasses give ``output(z) = h(z)`` and ``_row_losses(z, Y, h(z))``."""

    def __call__(self, output: np.ndarray, target: np.ndarray,
                 sample_weight: np.ndarray | None = None) -> float:
        return self.forward(output, target, sample_weight)

    def forward(self, output: np.ndarray, target: np.ndarray,
                sample_weight: np.ndarray | None = None) -> float:
        """``E`` for raw outputs ``z`` ``(B, K)``, targets ``(B, K)``, weights ``(B,)``."""
        z = self._check_output(output)
        target = np.asarray(target)
        if target.shape != z.shape:
            raise ValueError(f"{self!r}: target must have the output's shape {z.shape}, "
                             f"got {target.shape}")
        target = target.astype(z.dtype, copy=False)
        prediction = self.output(z)
        row_losses = self._row_losses(z, target, prediction)
        grad = np.subtract(prediction, target, out=prediction)
        if sample_weight is None:
            norm = len(z) if self.reduction == "mean" else 1
            self._grad = grad if norm == 1 else np.divide(grad, norm, out=grad)
            return float(np.add.reduce(row_losses)) / norm
        weights = self._check_weights(sample_weight, len(z))
        total = float(np.add.reduce(weights)) if self.reduction == "mean" else 1.0
        if total == 0:
            # Every row weighs 0: nothing to learn from this batch, and nothing to divide by.
            self._grad = np.zeros_like(grad)
            return 0.0
        scale = (weights / total).astype(z.dtype, copy=False)
        grad *= scale[:, None]
        self._grad = grad
        return float(scale @ row_losses.astype(z.dtype, copy=False))

    def output(self, z: np.ndarray) -> np.ndarray:
        """The prediction ``h(z)``, same shape as ``z``."""
        raise NotImplementedError

    def _row_losses(self, z: np.ndarray, target: np.ndarray,
                    prediction: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_weights(self, sample_weight: np.ndarray, n_rows: int) -> np.ndarray:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != (n_rows,):
            raise ValueError(f"{self!r}: sample_weight must have shape ({n_rows},), "
                             f"got {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(f"{self!r}: sample_weight must be finite and non-negative")
        return weights


class SoftmaxLogLoss(CanonicalLoss):
    """``L = -Σ_k Y_k log softmax(z)_k`` on one-hot (or probability) rows ``Y``;
    ``h = softmax``. Stable: computed from ``log_softmax``.

    >>> loss = SoftmaxLogLoss()
    >>> round(loss(np.array([[1.75, 1.75]]), np.array([[0.0, 1.0]])), 6)
    0.693147
    >>> loss.backward()
    array([[ 0.5, -0.5]])
    """

    def forward(self, output: np.ndarray, target: np.ndarray,
                sample_weight: np.ndarray | None = None) -> float:
        self._log_probs = None
        return super().forward(output, target, sample_weight)

    def output(self, z: np.ndarray) -> np.ndarray:
        self._log_probs = log_softmax(z, axis=1)
        return np.exp(self._log_probs)

    def _row_losses(self, z: np.ndarray, target: np.ndarray,
                    prediction: np.ndarray) -> np.ndarray:
        # Y log p with Y = 0 contributes 0 even where p underflowed to 0 (log p = -inf there
        # only for infinite logits; finite logits keep log p finite).
        return -np.einsum("bk,bk->b", target, self._log_probs)


class SigmoidLogLoss(CanonicalLoss):
    """Binary cross-entropy on logits, per output: ``L = Σ_k softplus(z_k) - Y_k z_k``
    (= ``-Y log σ(z) - (1-Y) log(1-σ(z))``); ``h = σ``. ``softplus(z) = max(z, 0) +
    log1p(exp(-|z|))``: no overflow for any z.

    >>> loss = SigmoidLogLoss()
    >>> round(loss(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]])), 6)  # 2 log 2
    1.386294
    >>> loss.backward()
    array([[-0.5,  0.5]])
    """

    def output(self, z: np.ndarray) -> np.ndarray:
        return sigmoid(z)

    def _row_losses(self, z: np.ndarray, target: np.ndarray,
                    prediction: np.ndarray) -> np.ndarray:
        # max(z, 0) - Y z first: for 0/1 targets it is exactly 0 or |z|, so nothing cancels
        # against the small log1p term (a confident correct output keeps its tiny loss).
        per_output = np.maximum(z, 0) - target * z
        per_output += np.log1p(np.exp(-np.abs(z)))
        return np.add.reduce(per_output, axis=1)


class HalfSquaredError(CanonicalLoss):
    """``L = ½ Σ_k (z_k - Y_k)²``; ``h`` = identity.

    >>> loss = HalfSquaredError()
    >>> loss(np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 1.0]]))
    1.5
    >>> loss.backward()
    array([[ 0.5,  1. ],
           [ 0. , -0.5]])
    """

    def output(self, z: np.ndarray) -> np.ndarray:
        return z.copy()

    def _row_losses(self, z: np.ndarray, target: np.ndarray,
                    prediction: np.ndarray) -> np.ndarray:
        residual = z - target
        return 0.5 * np.einsum("bk,bk->b", residual, residual)


class HalfPoissonDeviance(CanonicalLoss):
    """``L = Σ_k Y_k log(Y_k / μ_k) - Y_k + μ_k`` with ``μ = exp(z)`` (log link); ``h = exp``.

    Targets must be ``>= 0``; ``Y log Y`` is 0 at ``Y = 0``.

    >>> loss = HalfPoissonDeviance()
    >>> loss(np.array([[0.0]]), np.array([[1.0]]))  # μ = Y = 1: a perfect fit
    0.0
    """

    def output(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z)

    def _row_losses(self, z: np.ndarray, target: np.ndarray,
                    prediction: np.ndarray) -> np.ndarray:
        if np.any(target < 0):
            raise ValueError(f"{self!r}: targets must be >= 0 for the Poisson deviance")
        positive = np.where(target > 0, target, 1)
        per_output = target * (np.log(positive) - z) - target + prediction
        return np.add.reduce(per_output, axis=1)
