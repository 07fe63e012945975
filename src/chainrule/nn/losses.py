"""Losses: ``forward(output, target) -> float`` and ``backward() -> ∂loss/∂output``.

Classification targets are integer labels ``(B,)`` or probability rows ``(B, C)`` (soft
labels). ``weight``, ``ignore_index`` and ``label_smoothing`` mean what they mean in
PyTorch's ``cross_entropy``/``nll_loss``; every classification loss here reduces them to one
effective target matrix ``T`` and one normaliser ``N`` (see ``_effective_targets``).
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from chainrule.nn.errors import NonFiniteError
from chainrule.nn.functional import log_softmax
from chainrule.nn.kernels import softmax_cross_entropy

__all__ = ["CrossEntropy", "Loss", "MSELoss", "NLLLoss", "SoftmaxCrossEntropy"]


class Loss:
    """Base class: ``loss(output, target)`` calls ``forward``; ``backward`` uses its cache."""

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean' or 'sum', "
                             f"got {reduction!r}")
        self.reduction = reduction
        self._grad: np.ndarray | None = None

    def __call__(self, output: np.ndarray, target: np.ndarray) -> float:
        return self.forward(output, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        """``∂loss/∂output``, same shape as the last ``output``."""
        if self._grad is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        return self._grad

    def _check_output(self, output: np.ndarray) -> np.ndarray:
        output = np.asarray(output)
        if output.ndim != 2:
            raise ValueError(f"{self!r}: expected output of shape (B, C), got {output.shape}")
        if output.shape[0] == 0:
            raise ValueError(f"{self!r}: empty batch (output shape {output.shape})")
        if output.dtype.kind != "f":
            output = output.astype(np.float64)
        return output


class _ClassificationLoss(Loss):
    """Shared target handling for the cross-entropy family."""

    def __init__(
        self,
        reduction: str = "mean",
        weight: np.ndarray | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{type(self).__name__}: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing}")
        if weight is not None:
            weight = np.asarray(weight, dtype=np.float64)
            if weight.ndim != 1 or np.any(weight < 0) or not np.all(np.isfinite(weight)):
                raise ValueError(f"{type(self).__name__}: weight must be a 1-D array of finite "
                                 f"non-negative class weights, got {weight!r}")
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def _labels(self, target: np.ndarray, n_samples: int,
                n_classes: int) -> tuple[np.ndarray, bool]:
        """Validate integer labels ``(B,)``: each in ``[0, C)`` or equal to ``ignore_index``.

        Returns the labels and whether all of them are in ``[0, C)``.
        """
        if len(target) != n_samples:
            raise ValueError(f"{self!r}: {len(target)} labels for a batch of {n_samples}")
        if target.dtype.kind not in "iu":
            integral = np.issubdtype(target.dtype, np.floating) and np.all(
                np.isfinite(target) & (target == np.round(target)))
            if not integral:
                raise ValueError(f"{self!r}: labels must be integers 0..{n_classes - 1}, got "
                                 f"dtype {target.dtype} (first value {target[0]!r})")
            target = target.astype(np.int64)
        # The common case in one reduction: viewed as unsigned, negative labels are huge.
        as_unsigned = target.view(target.dtype.str.replace("i", "u"))
        if np.maximum.reduce(as_unsigned) < n_classes:
            return target, True
        bad = (target != self.ignore_index) & ((target < 0) | (target >= n_classes))
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{self!r}: label {int(target[index])} at index {index} is out of range for "
                f"{n_classes} classes (expected 0..{n_classes - 1} or "
                f"ignore_index={self.ignore_index})")
        return target, False

    def _soft_targets(self, target: np.ndarray, shape: tuple) -> np.ndarray:
        """Validate probability rows ``(B, C)``: finite, non-negative, each summing to 1."""
        if target.shape != shape:
            raise ValueError(f"{self!r}: soft targets must have the output's shape {shape}, "
                             f"got {target.shape}")
        target = target.astype(np.float64, copy=False)
        if not np.all(np.isfinite(target)) or np.any(target < 0):
            raise ValueError(f"{self!r}: soft targets must be finite and non-negative")
        sums = target.sum(axis=1)
        off = np.abs(sums - 1) > max(1e-6, 100 * shape[1] * np.finfo(np.float32).eps)
        if off.any():
            row = int(np.flatnonzero(off)[0])
            raise ValueError(f"{self!r}: soft-target row {row} sums to {sums[row]:.6g}, not 1")
        return target

    def _effective_targets(self, target: np.ndarray, shape: tuple) -> tuple[np.ndarray, float]:
        """``(T, N)`` with ``loss = -Σ_bc T_bc log p_bc / N`` (N = 1 for ``reduction='sum'``).

        Labels y: ``T_bc = w_c ((1-ε) [c = y_b] + ε/C)``, zero rows for ignored samples,
        ``N = Σ_b w_{y_b}`` over kept samples. Soft rows t: ``T_bc = w_c ((1-ε) t_bc + ε/C)``,
        ``N = B``. These are PyTorch's definitions.
        """
        n_samples, n_classes = shape
        target = np.asarray(target)
        weight = np.ones(n_classes) if self.weight is None else self.weight
        if len(weight) != n_classes:
            raise ValueError(f"{self!r}: weight has {len(weight)} entries for {n_classes} classes")
        smoothing = self.label_smoothing
        if target.ndim == 1:
            labels, _ = self._labels(target, n_samples, n_classes)
            kept = labels != self.ignore_index
            effective = np.zeros(shape)
            effective[kept] = smoothing / n_classes
            effective[np.flatnonzero(kept), labels[kept]] += 1 - smoothing
            effective *= weight
            norm = float(weight[labels[kept]].sum())
        elif target.ndim == 2:
            effective = (1 - smoothing) * self._soft_targets(target, shape) + smoothing / n_classes
            effective *= weight
            norm = float(n_samples)
        else:
            raise ValueError(f"{self!r}: target must be labels (B,) or probability rows (B, C), "
                             f"got shape {target.shape}")
        return effective, (norm if self.reduction == "mean" else 1.0)

    def _weighted_log_sum(self, effective: np.ndarray, log_probs: np.ndarray) -> float:
        """``Σ T log p`` where ``T > 0`` (so masked ``log p = -inf`` with ``T = 0`` adds 0)."""
        on_target = effective > 0
        if np.any(np.isneginf(log_probs[on_target])):
            row, col = np.argwhere(on_target & np.isneginf(log_probs))[0]
            raise ValueError(f"{self!r}: target puts weight on class {col} of row {row}, whose "
                             "probability is 0 (masked or underflowed logit): the loss is infinite")
        return float(np.sum(effective[on_target] * log_probs[on_target]))


class SoftmaxCrossEntropy(_ClassificationLoss):
    """Softmax + cross-entropy fused, on LOGITS ``z`` ``(B, C)``: ``E = -Σ T log softmax(z) / N``.

    Fusing is valid because softmax is immediately followed by the cross-entropy: the chain
    ``Jᵀ (-T/a)`` collapses to ``a ΣT - T``, i.e. ``(softmax(z) - t) / B`` for one-hot targets
    and ``reduction="mean"`` — stable, and no C×C Jacobian. ``-inf`` logits mask classes:
    probability 0, no NaN in loss or gradient.

    >>> loss = SoftmaxCrossEntropy()
    >>> round(loss(np.array([[1.75, 1.75]]), np.array([1])), 6)
    0.693147
    >>> loss.backward()
    array([[ 0.5, -0.5]])
    """

    def __init__(self, reduction: str = "mean", weight: np.ndarray | None = None,
                 ignore_index: int = -100, label_smoothing: float = 0.0) -> None:
        super().__init__(reduction, weight, ignore_index, label_smoothing)
        self._warned_probabilities = False

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        logits = self._check_output(output)
        target = np.asarray(target)
        labels = self._plain_labels(target, logits.shape)
        if labels is not None:
            return self._forward_labels(logits, labels)
        logits = self._check_logits(logits)
        log_probs = log_softmax(logits)
        probs = np.exp(log_probs)
        effective, norm = self._effective_targets(target, logits.shape)
        loss = -self._weighted_log_sum(effective, log_probs) / norm if norm else 0.0
        grad = probs * effective.sum(axis=1, keepdims=True) - effective
        self._grad = (grad / norm if norm else np.zeros_like(grad)).astype(logits.dtype)
        return float(loss)

    def _forward_labels(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """The training path, hard labels ``y``: ``E = -Σ_b log p_b,y_b / N`` and
        ``∂E/∂z = (p - onehot(y)) / N``, both from one fused kernel
        (``chainrule.nn.kernels.softmax_cross_entropy``), no C×C Jacobian."""
        norm = len(labels) if self.reduction == "mean" else 1
        fused = softmax_cross_entropy(logits, labels, norm, out=self._spare_grad(logits))
        if fused is None:  # NaN, +inf or a row all -inf
            self._check_logits(logits)  # raises, naming the bad entry
        picked, grad = fused
        self._warn_if_probabilities(logits)
        with np.errstate(over="ignore"):
            loss = -float(np.add.reduce(picked)) / norm
            if math.isinf(loss):
                masked = np.flatnonzero(np.isneginf(picked))
                if len(masked):
                    raise ValueError(f"{self!r}: label {labels[masked[0]]} of row {masked[0]} "
                                     "has probability 0 (masked logit): the loss is infinite")
                # Only the sum overflowed (log-probabilities near -1e308): the mean may not.
                # What overflows even so is returned as inf, as PyTorch does.
                loss = -float(np.add.reduce(picked / norm))
        self._grad = grad
        return loss

    def _spare_grad(self, logits: np.ndarray) -> np.ndarray | None:
        """The last gradient's array, for this forward to overwrite, when nothing but this
        loss refers to it (no caller kept it, nor a view of it), else None. A new array of
        megabytes costs page faults on every batch; this one is warm. Taken away from the
        loss meanwhile: a failed forward leaves no gradient, as it should."""
        grad = self._grad
        # References: the loss's attribute, `grad` and getrefcount's argument.
        if (grad is None or grad.shape != logits.shape or grad.dtype != logits.dtype
                or not grad.flags.c_contiguous or sys.getrefcount(grad) > 3):
            return None
        self._grad = None
        return grad

    def _plain_labels(self, target: np.ndarray, shape: tuple) -> np.ndarray | None:
        """The validated labels when the fast ``p - onehot`` path applies (hard labels, no
        weight, no smoothing, no ignored entry), else None."""
        if target.ndim != 1 or self.weight is not None or self.label_smoothing != 0:
            return None
        labels, in_range = self._labels(target, *shape)
        if not in_range:  # some label is ignore_index, outside [0, C)
            return None
        if 0 <= self.ignore_index < shape[1] and np.any(labels == self.ignore_index):
            return None
        return labels

    def _check_logits(self, logits: np.ndarray) -> np.ndarray:
        if np.isnan(logits).any() or np.isposinf(logits).any():
            row, col = np.argwhere(np.isnan(logits) | np.isposinf(logits))[0]
            raise NonFiniteError(f"{self!r}: logits must not be NaN or +inf; got "
                                 f"{logits[row, col]} at [{row}, {col}]")
        if np.any(np.all(np.isneginf(logits), axis=1)):
            row = int(np.flatnonzero(np.all(np.isneginf(logits), axis=1))[0])
            raise NonFiniteError(f"{self!r}: row {row} of the logits is -inf everywhere "
                                 "(every class masked)")
        self._warn_if_probabilities(logits)
        return logits

    def _warn_if_probabilities(self, logits: np.ndarray) -> None:
        # One entry outside [0, 1] rules probabilities out: real logits cost no pass here.
        if (not self._warned_probabilities and 0 <= logits[0, 0] <= 1
                and _looks_like_probabilities(logits)):
            self._warned_probabilities = True
            warnings.warn(f"{self!r}: the logits look like probabilities (in [0, 1], rows "
                          "summing to 1): softmax applied twice? SoftmaxCrossEntropy takes raw "
                          "logits; use CrossEntropy for probabilities.", stacklevel=4)


class CrossEntropy(_ClassificationLoss):
    """Cross-entropy on PROBABILITIES ``a`` (e.g. a ``Softmax`` output): ``E = -Σ T ln a / N``.

    ``∂E/∂a = -T / a / N``. Where ``a = 0``: entries with ``T = 0`` contribute exactly 0 to
    loss and gradient (``0 ln 0 = 0``); entries with ``T > 0`` use ``a`` floored at the
    dtype's smallest normal number (``np.finfo(dtype).tiny``), giving a large but finite loss
    (≈708 in float64, ≈87 in float32) and gradient instead of inf or NaN.
    """

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        probs = self._check_output(output)
        if np.isnan(probs).any():
            raise NonFiniteError(f"{self!r}: probabilities contain NaN")
        if probs.min() < 0 or probs.max() > 1:
            raise ValueError(f"{self!r}: expects probabilities in [0, 1], got values in "
                             f"[{probs.min():.4g}, {probs.max():.4g}]; "
                             "for logits use SoftmaxCrossEntropy")
        effective, norm = self._effective_targets(target, probs.shape)
        floored = np.maximum(probs, np.finfo(probs.dtype).tiny)
        if not norm:
            self._grad = np.zeros_like(probs)
            return 0.0
        # 0 - x rather than -x: where T = 0 the gradient is 0, not -0 (printed as "-0.").
        self._grad = (0.0 - effective / floored / norm).astype(probs.dtype)
        return float(-np.sum(effective * np.log(floored)) / norm)


class NLLLoss(_ClassificationLoss):
    """Negative log-likelihood on LOG-probabilities ``y`` (a ``LogSoftmax`` output).

    ``E = -Σ T y / N``, ``∂E/∂y = -T / N``; ``y = -inf`` (masked) is allowed where ``T = 0``.
    """

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        log_probs = self._check_output(output)
        if np.isnan(log_probs).any():
            raise NonFiniteError(f"{self!r}: log-probabilities contain NaN")
        if np.any(log_probs > 1e-6):
            raise ValueError(f"{self!r}: expects log-probabilities (<= 0), got max "
                             f"{log_probs.max():.4g}")
        effective, norm = self._effective_targets(target, log_probs.shape)
        if not norm:
            self._grad = np.zeros_like(log_probs)
            return 0.0
        self._grad = (0.0 - effective / norm).astype(log_probs.dtype)  # 0, not -0, where T = 0
        return -self._weighted_log_sum(effective, log_probs) / norm


class MSELoss(Loss):
    """Mean squared error over all elements (PyTorch's): ``E = Σ (y - t)² / (B·n)``.

    ``∂E/∂y = 2 (y - t) / (B·n)``; integer labels ``(B,)`` are one-hot encoded to ``(B, n)``.
    """

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        output = self._check_output(output)
        target = np.asarray(target)
        if target.ndim == 1 and target.shape[0] == output.shape[0] and output.shape[1] > 1:
            labels = target.astype(np.int64)
            if np.any(labels != target) or labels.min() < 0 or labels.max() >= output.shape[1]:
                raise ValueError(f"{self!r}: labels must be integers 0..{output.shape[1] - 1}")
            target = np.eye(output.shape[1], dtype=output.dtype)[labels]
        if target.shape != output.shape:
            raise ValueError(f"{self!r}: target shape {target.shape} does not match output "
                             f"shape {output.shape}")
        if not np.isfinite(output).all():
            row, col = np.argwhere(~np.isfinite(output))[0]
            raise NonFiniteError(f"{self!r}: output[{row}, {col}] is {output[row, col]}")
        if not np.isfinite(target).all():
            row, col = np.argwhere(~np.isfinite(target))[0]
            raise ValueError(f"{self!r}: target[{row}, {col}] is {target[row, col]}; targets "
                             "must be finite")
        with np.errstate(over="ignore"):
            diff = output - target
            norm = diff.size if self.reduction == "mean" else 1
            loss = float(np.sum(diff * diff) / norm)
        if not math.isfinite(loss):
            raise NonFiniteError(f"{self!r}: the squared error overflows {diff.dtype} (largest "
                                 f"|output - target| {np.abs(diff).max():.3g})")
        self._grad = 2 * diff / norm
        return loss


def _looks_like_probabilities(values: np.ndarray) -> bool:
    """All in [0, 1] with rows summing to 1: a softmax output, not logits."""
    first_row = values[0]  # real logits fail here already: no full pass over the batch
    if values.shape[1] < 2 or first_row.min() < 0 or first_row.max() > 1:
        return False
    if values.min() < 0 or values.max() > 1:
        return False
    return bool(np.allclose(values.sum(axis=1), 1, atol=1e-3))
