"""``fit``'s training step for the common MLP, with the layer-by-layer Python path folded.

A chain ``Dense (ReLU Dense)*`` trained by ``SoftmaxCrossEntropy`` on class labels spends much
of a step outside its matrix products: each layer's input checks, a fresh array for every
output, separate bias and ReLU passes, the loss re-validating the labels. ``FusedStep`` does
the same arithmetic in buffers it reuses: forward, one GEMM per ``Dense`` and its bias and
ReLU in one pass (``kernels.bias_relu``); backward, the GEMMs and ReLU's mask with the bias
gradient of the ``Dense`` below it in one pass (``kernels.relu_backward_bias_grad``). It
leaves what the plain path leaves: every ``grads`` array, the layers' caches (``Dense.x``,
``ReLU.y``) and the loss's gradient.

It is a speed shortcut, so it only runs where it is the plain path: the exact classes (no
subclass, no method replaced on an instance or on the class), the model's dtype, no parameter
sharing memory with another, labels validated by ``fit``, a loss without weights, smoothing or
an ignored class. A batch whose logits or loss are not finite is handed back (``forward``
returns None) for ``fit`` to rerun layer by layer, which reports it as it always does.
``tests/test_fused.py`` checks it equal to the plain path: to the bit with the NumPy kernels;
with numba, to rounding (the loss kernel then runs compiled on logits the plain path leaves to
NumPy).
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.nn import kernels
from chainrule.nn.layers import Dense, ReLU
from chainrule.nn.losses import SoftmaxCrossEntropy
from chainrule.nn.network import Sequential
from chainrule.nn.optimizers import SGD, Adam, Optimizer

__all__ = ["FusedStep"]

# The methods of the plain path, as chainrule defines them: replaced on an instance or on the
# class (a user's patch, a debugging wrapper), the plain path is no longer this step's.
_LAYER_METHODS = ("forward", "backward", "_backward_params", "_check_input", "_check_grad_out",
                  "_check_finite", "_check_dense_input", "_function")
_AS_WRITTEN = {cls: {name: getattr(cls, name, None) for name in names} for cls, names in (
    (Sequential, ("forward", "backward")),
    (Dense, _LAYER_METHODS),
    (ReLU, _LAYER_METHODS),
    (SoftmaxCrossEntropy, ("forward", "backward", "_forward_labels", "_plain_labels",
                           "_labels", "_check_output")),
    (SGD, ("step", "step_parameter", "uses_flat_path", "updater", "_updater", "_new_state")),
    (Adam, ("step", "step_parameter", "uses_flat_path", "updater", "_updater", "_new_state")),
)}


def _as_written(obj: object, cls: type) -> bool:
    """``obj`` is exactly a ``cls``, whose plain-path methods are chainrule's own."""
    methods = _AS_WRITTEN[cls]
    return (type(obj) is cls and not methods.keys() & vars(obj).keys()
            and all(getattr(cls, name, None) is method for name, method in methods.items()))


class FusedStep:
    """Forward and backward of ``model`` under ``loss`` for one batch, as ``fit`` runs them.

    Build it with ``FusedStep.for_training`` (None where the shortcut does not apply).
    """

    def __init__(self, model: Sequential, loss: SoftmaxCrossEntropy,
                 optimizer: Optimizer) -> None:
        self.model, self.loss = model, loss
        # Large models: each layer's parameters are updated as soon as backward is done with
        # them, while their gradients are still in cache (the same per-parameter update
        # ``optimizer.step`` makes, in another order). Small ones: ``fit`` calls ``step``
        # (one flat vector).
        self.optimizer = None if optimizer.uses_flat_path(model) else optimizer
        self.dense: list[Dense] = model.layers[0::2]
        self.relus: list[ReLU] = model.layers[1::2]
        self._keys = [(f"{index}.W", f"{index}.b") for index in range(0, len(model.layers), 2)]
        self._updaters: list[list | None] = [None] * len(self.dense)
        self.dtype = model.dtype
        self.large = kernels.is_large(model.n_params)  # compiled kernels throughout
        self._outputs: list[np.ndarray] = []  # per Dense, (capacity, n_out)
        # per Dense but the first: its input gradient, and that after ReLU's mask (capacity, n_in)
        self._input_grads: list[tuple[np.ndarray, np.ndarray]] = []
        self._rows = 0

    @classmethod
    def for_training(cls, model: Sequential, loss: object, optimizer: object,
                     y: np.ndarray) -> FusedStep | None:
        """The fused step for ``fit(model, loss, optimizer, ...)`` on class indices ``y``,
        or None."""
        layers = model.layers if _as_written(model, Sequential) else []
        if (not layers or len(layers) % 2 == 0
                or not all(_as_written(layer, ReLU if index % 2 else Dense)
                           for index, layer in enumerate(layers))):
            return None
        params = list(model.parameters())
        if ({param.dtype for param in params} != {np.dtype(model.dtype)}
                or model.dtype not in (np.float32, np.float64)
                or any(np.may_share_memory(first, second)  # tied weights: updated in order
                       for index, first in enumerate(params) for second in params[index + 1:])):
            return None
        n_classes = layers[-1].params["W"].shape[1]
        if (not _as_written(loss, SoftmaxCrossEntropy) or loss.weight is not None
                or loss.label_smoothing != 0 or 0 <= loss.ignore_index < n_classes
                or loss.reduction not in ("mean", "sum") or y.ndim != 1):
            return None
        if not (_as_written(optimizer, SGD) or _as_written(optimizer, Adam)):
            return None
        return cls(model, loss, optimizer)

    def forward(self, x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float] | None:
        """``(logits, batch loss)`` for prepared inputs ``x`` ``(B, n_in)`` and class indices
        ``labels`` ``(B,)``; None (nothing left half done that matters) when the plain path
        must take this batch. The logits live in a buffer the next call overwrites."""
        if x.dtype != self.dtype:
            return None
        rows = len(x)
        if rows > self._rows:
            self._allocate(rows)
        hidden = x
        for index, dense in enumerate(self.dense):
            dense.x = hidden
            output = np.matmul(hidden, dense.params["W"], out=self._outputs[index][:rows])
            if index < len(self.relus):
                kernels.bias_relu(output, dense.params["b"], self.large)
                self.relus[index].y = output
            else:
                output += dense.params["b"]
            hidden = output
        logits = hidden
        if not math.isfinite(np.add.reduce(logits, axis=None)):  # NaN, ±inf (or a huge sum)
            return None
        norm = rows if self.loss.reduction == "mean" else 1
        fused = kernels.softmax_cross_entropy(logits, labels, norm, self.large,
                                              self.loss._spare_grad(logits))
        if fused is None:
            return None
        picked, grad = fused
        self.loss._warn_if_probabilities(logits)
        batch_loss = -float(np.add.reduce(picked)) / norm
        if not math.isfinite(batch_loss):
            return None
        self.loss._grad = grad
        return logits, batch_loss

    def backward(self) -> bool:
        """Fill every ``Dense``'s ``grads`` from the last ``forward``'s loss gradient (no
        gradient for the network's input: ``fit`` does not need it). Returns whether the
        parameters were updated too (large models), else ``fit`` calls ``optimizer.step``."""
        grad = self.loss._grad
        rows = len(grad)
        last = len(self.dense) - 1
        np.add.reduce(grad, axis=0, out=self.dense[last].grads["b"])
        for index in range(last, -1, -1):
            dense = self.dense[index]
            np.matmul(dense.x.T, grad, out=dense.grads["W"])
            if index == 0:
                self._update(index)
                break
            # Into a second buffer, not in place: a compiled loop over aliased arrays is not
            # vectorised, and its branch per entry mispredicts on every new batch.
            below, masked = (buffer[:rows] for buffer in self._input_grads[index - 1])
            np.matmul(grad, dense.params["W"].T, out=below)
            kernels.relu_backward_bias_grad(below, self.relus[index - 1].y, masked,
                                            self.dense[index - 1].grads["b"], self.large)
            self._update(index)  # W's last use was the line above
            grad = masked
        return self.optimizer is not None

    def _update(self, index: int) -> None:
        """``optimizer.step_parameter`` on the ``index``-th ``Dense``'s ``W`` and ``b``, by
        updaters made on the first step and kept for the run (the arrays stay the same)."""
        if self.optimizer is None:
            return
        updaters = self._updaters[index]
        if updaters is None:
            dense = self.dense[index]
            updaters = self._updaters[index] = [
                self.optimizer.updater(key, dense.params[name], dense.grads[name], self.large)
                for key, name in zip(self._keys[index], ("W", "b"), strict=True)]
        for update in updaters:
            update()

    def _allocate(self, rows: int) -> None:
        widths = [dense.params["W"].shape[1] for dense in self.dense]
        self._outputs = [np.empty((rows, width), self.dtype) for width in widths]
        self._input_grads = [(np.empty((rows, width), self.dtype),
                              np.empty((rows, width), self.dtype)) for width in widths[:-1]]
        self._rows = rows
