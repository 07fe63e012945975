"""Optimizers: ``step(model)`` updates every parameter in place from its gradient.

The update rules (momentum, Nesterov, L2 weight decay added to the gradient, Adam's bias
correction) are PyTorch's, so results can be compared step for step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SGD", "Adam", "Optimizer"]


class Optimizer:
    """Base class: per-parameter state keyed by ``"<layer index>.<name>"``."""

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, "
                             f"got {weight_decay}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"

    def step(self, model) -> None:
        """Update every parameter of ``model`` (a ``Sequential``) in place."""
        for key, param, grad in model.named_parameters():
            state = self.state.get(key)
            if state is None or state["scratch"].shape != param.shape:
                state = self.state[key] = self._new_state(param)
            if self.weight_decay:
                grad = np.add(grad, self.weight_decay * param, out=state["scratch"])
            self._update(param, grad, state)

    def _new_state(self, param: np.ndarray) -> dict[str, np.ndarray]:
        return {"scratch": np.empty_like(param)}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v ← μ v + g`` (``v = g`` on the first step); ``p ← p - lr·v``, or with Nesterov
    ``p ← p - lr·(g + μ v)``.
    """

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum = momentum
        self.nesterov = nesterov

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        if self.momentum:
            velocity = state.get("velocity")
            if velocity is None:
                velocity = state["velocity"] = grad.copy()
            else:
                velocity *= self.momentum
                velocity += grad
            if self.nesterov:
                grad = np.add(grad, self.momentum * velocity, out=state["scratch"])
            else:
                grad = velocity
        param -= np.multiply(grad, self.lr, out=state["scratch"])


class Adam(Optimizer):
    """Adam: ``m ← β1 m + (1-β1) g``, ``v ← β2 v + (1-β2) g²``,
    ``p ← p - lr · m̂ / (√v̂ + eps)`` with bias-corrected ``m̂ = m/(1-β1ᵗ)``, ``v̂ = v/(1-β2ᵗ)``.
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        if not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        self.betas = betas
        self.eps = eps

    def _new_state(self, param: np.ndarray) -> dict[str, np.ndarray]:
        return {"scratch": np.empty_like(param), "m": np.zeros_like(param),
                "v": np.zeros_like(param), "t": np.zeros((), dtype=np.int64)}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        beta1, beta2 = self.betas
        state["t"] += 1
        t = int(state["t"])
        m, v, scratch = state["m"], state["v"], state["scratch"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        np.sqrt(v, out=scratch)
        scratch /= np.sqrt(1 - beta2**t)
        scratch += self.eps
        np.divide(m, scratch, out=scratch)
        scratch *= self.lr / (1 - beta1**t)
        param -= scratch
