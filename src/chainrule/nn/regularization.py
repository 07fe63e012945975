"""L2 regularisation of weight matrices: the penalty ``½ Σ_i ‖W_i‖²`` and its gradient ``W_i``."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["add_l2_gradient", "l2_penalty"]


def l2_penalty(weights: Iterable[np.ndarray]) -> float:
    """``½ Σ_i ‖W_i‖²`` (squared Frobenius norms, halved), so ``∂/∂W_i = W_i``.

    >>> l2_penalty([np.array([[3.0, 4.0]]), np.array([1.0])])
    13.0
    """
    return 0.5 * sum(float(np.vdot(weight, weight)) for weight in weights)


def add_l2_gradient(grads: Iterable[np.ndarray], weights: Iterable[np.ndarray],
                    strength: float) -> None:
    """``grad_i += strength · W_i`` in place: the gradient of ``strength · l2_penalty``."""
    if strength:
        for grad, weight in zip(grads, weights, strict=True):
            grad += strength * weight
