"""Optimizers: ``step(model)`` updates every parameter in place from its gradient.

The update rules (momentum, Nesterov, L2 weight decay added to the gradient, Adam's bias
correction) are PyTorch's, so results can be compared step for step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chainrule.nn import kernels

__all__ = ["SGD", "Adam", "Optimizer"]


class Optimizer:
    """Base class: per-parameter state keyed by ``"<layer index>.<name>"``.

    A subclass gives ``_new_state(param)`` (its state arrays, shaped like ``param``),
    ``_updater(param, grad, state, large)``: a function making ``p ← p - Δ`` in place, by its
    fused kernel in ``chainrule.nn.kernels``, and ``_direction(grad, state)``: ``Δ`` alone, into
    ``state["update"]``, for the flat-vector path.
    """

    # Up to this many parameters in all (of one dtype), the rule runs once on all of them as
    # one flat vector instead of once per parameter: its dozen ufunc calls per parameter are
    # most of a small network's step. ``state`` then holds views of the flat arrays. (Larger
    # models take the per-parameter kernels: compiled, each is one pass, no dozen calls.)
    _FLAT_LIMIT = 1 << 16

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        if not weight_decay >= 0:  # NaN too
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, "
                             f"got {weight_decay}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self._flat: dict | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"

    def __getstate__(self) -> dict:
        # The flat arrays and the per-parameter views of them in ``state`` would come back
        # from a copy or pickle as independent arrays (and Adam's step count as one array
        # shared by every key): a copy gets independent per-parameter state, from which
        # ``_new_flat_state`` rebuilds the views on its next step.
        return {**self.__dict__, "_flat": None, "state": self._unshared_state()}

    def _unshared_state(self) -> dict[str, dict[str, np.ndarray]]:
        """``state`` with every array copied: no views of the flat arrays, nothing shared."""
        return {key: {name: value.copy() for name, value in entry.items()}
                for key, entry in self.state.items()}

    def step(self, model) -> None:
        """Update every parameter of ``model`` (a ``Sequential``) in place."""
        entries = [(key, param, grad) for (key, param), (_, grad)
                   in zip(model.named_parameters(), model.named_grads(), strict=True)]
        if self._flat_path_for([param for _, param, _ in entries]):
            self._step_flat(entries, [(key, param.shape, param.dtype)
                                      for key, param, _ in entries])
            return
        for key, param, grad in entries:
            self.step_parameter(key, param, grad)

    def uses_flat_path(self, model) -> bool:
        """Whether ``step(model)`` updates all parameters as one flat vector (small models)."""
        return self._flat_path_for(list(model.parameters()))

    def _flat_path_for(self, params: list[np.ndarray]) -> bool:
        return (bool(params) and len({param.dtype for param in params}) == 1
                and sum(param.size for param in params) <= self._FLAT_LIMIT)

    def step_parameter(self, key: str, param: np.ndarray, grad: np.ndarray) -> None:
        """Update one parameter in place from its gradient: ``step``'s per-parameter path,
        where ``key`` names its state (``"<layer index>.<name>"``)."""
        self.updater(key, param, grad)()

    def updater(self, key: str, param: np.ndarray, grad: np.ndarray,
                large: bool = False) -> Callable[[], None]:
        """``step_parameter(key, param, grad)`` as a function of nothing, its state and kernel
        looked up once: for a loop that updates the same arrays many times and changes
        neither them nor the settings meanwhile (``fit``'s fused step). ``large``: the model
        is large enough for the compiled kernels whatever this parameter's size."""
        if self._flat is not None:  # the flat path ran before: its views become the state
            self.state, self._flat = self._unshared_state(), None
        state = self.state.get(key)
        if (state is None or state["update"].shape != param.shape
                or state["update"].dtype != param.dtype):
            state = self.state[key] = self._new_state(param)
        return self._updater(param, grad, state, large)

    def _step_flat(self, entries: list, layout: list) -> None:
        """``step`` on the concatenation of all parameters (see ``_FLAT_LIMIT``)."""
        if self._flat is None or self._flat["layout"] != layout:
            self._flat = self._new_flat_state(layout)
        flat = self._flat
        grad = np.concatenate([grad.reshape(-1) for _, _, grad in entries], out=flat["grad"])
        if self.weight_decay:
            decay = np.concatenate([param.reshape(-1) for _, param, _ in entries],
                                   out=flat["state"]["scratch"])
            decay *= self.weight_decay
            grad += decay
        self._direction(grad, flat["state"])
        for (_, param, _), update in zip(entries, flat["updates"], strict=True):
            param -= update

    def _new_flat_state(self, layout: list) -> dict:
        """Flat state arrays for ``layout``, and ``self.state`` as per-parameter views of them.

        Per-parameter state already held for a key, of the same shape and dtype (a copied or
        unpickled optimizer's, or the per-parameter path's), is carried into the views.
        """
        sizes = [int(np.prod(shape)) for _, shape, _ in layout]
        flat_state = self._new_state(np.empty(sum(sizes), dtype=layout[0][2]))
        ends = np.cumsum(sizes)
        previous, self.state = self.state, {}
        for (key, shape, _), end, size in zip(layout, ends, sizes, strict=True):
            views = {name: value[end - size:end].reshape(shape) if value.ndim else value
                     for name, value in flat_state.items()}
            old = previous.get(key, {})
            if all(name in old and old[name].shape == view.shape
                   and old[name].dtype == view.dtype for name, view in views.items()):
                for name, view in views.items():
                    view[...] = old[name]
            self.state[key] = views
        return {"layout": layout, "state": flat_state,
                "grad": np.empty_like(flat_state["update"]),
                "updates": [self.state[key]["update"] for key, _, _ in layout]}

    def _new_state(self, param: np.ndarray) -> dict[str, np.ndarray]:
        """``scratch`` holds the weight-decayed gradient, ``update`` the step ``Δ``."""
        return {"scratch": np.empty_like(param), "update": np.empty_like(param)}

    def _updater(self, param: np.ndarray, grad: np.ndarray, state: dict,
                 large: bool) -> Callable[[], None]:
        """``p ← p - Δ`` for one parameter, weight decay included (a fused kernel), bound."""
        raise NotImplementedError

    def _direction(self, grad: np.ndarray, state: dict) -> np.ndarray:
        """The step ``Δ`` for an already weight-decayed ``grad``, into ``state["update"]``."""
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

    def _new_state(self, param: np.ndarray) -> dict[str, np.ndarray]:
        # v starts at 0, so the first step's μ·0 + g is exactly g.
        return {**super()._new_state(param), "velocity": np.zeros_like(param)}

    def _updater(self, param: np.ndarray, grad: np.ndarray, state: dict,
                 large: bool) -> Callable[[], None]:
        return kernels.sgd_updater(param, grad, state, self.lr, self.momentum, self.nesterov,
                                   self.weight_decay, large)

    def _direction(self, grad: np.ndarray, state: dict) -> np.ndarray:
        return kernels.sgd_direction(grad, state, self.lr, self.momentum, self.nesterov)


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
        return {**super()._new_state(param), "m": np.zeros_like(param),
                "v": np.zeros_like(param), "t": np.zeros((), dtype=np.int64)}

    def _updater(self, param: np.ndarray, grad: np.ndarray, state: dict,
                 large: bool) -> Callable[[], None]:
        return kernels.adam_updater(param, grad, state, self.lr, self.betas, self.eps,
                                    self.weight_decay, large)

    def _direction(self, grad: np.ndarray, state: dict) -> np.ndarray:
        return kernels.adam_direction(grad, state, self.lr, self.betas, self.eps)
