"""Your own loss, read as written, and its gradient checked against central differences.

:func:`as_loss` maps a loss in the usual conventions onto chainrule's loss protocol
(``forward(output, y) -> L``, ``backward() -> ∂L/∂output``); :func:`check_loss` checks one,
and :func:`~chainrule.check.network.gradcheck` takes one in place of chainrule's. Read are:

- a class whose ``forward`` (or ``__call__``, ``loss``, ``calculate``) takes the predictions
  and the targets, in either order (told apart by the parameter names: ``y_true``,
  ``target``, ``labels``, ``t``, ...), and returns ``L``, or the per-sample losses ``(B,)``
  whose mean is ``L`` (as the book's ``Loss.calculate`` takes it); and whose ``backward`` (or
  ``backprop``, ``gradient``, ``derivative``, ...) takes nothing, the targets, or the
  predictions and the targets, and returns ``∂L/∂predictions`` or stores it
  (``self.dinputs``, ``self.dx``, ...);
- softmax and cross-entropy in one: a forward that takes logits and stores the probabilities
  (``self.output``, ``self.y``, ...) and a backward that takes them back,
  ``backward(self.output, y_true)``, as the book's training loop calls it (``∂L/∂logits``);
- a function returning the loss and its gradient, ``loss, dx = softmax_loss(x, y)``;
- any loss function with its gradient function: ``gradient=mse_prime``.

The user's object is copied once and only the copy is run.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable

import numpy as np

from chainrule.check.adapters import (
    GRAD_INPUT_NAMES,
    OUTPUT_NAMES,
    ConventionError,
    find_method,
    required_positional,
    stored_attribute,
)
from chainrule.check.calls import call_user
from chainrule.check.diagnosis import diagnose_gradient, named
from chainrule.check.layercheck import probe, random_direction
from chainrule.check.numerical import (
    as_float64,
    numerical_gradient_at,
    sampled_entries,
    steps_for,
)
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Diagnosis, Report, Row
from chainrule.check.wrapped import copy_of
from chainrule.nn.losses import Loss

__all__ = ["TARGET_NAMES", "UserLoss", "as_loss", "check_loss", "diagnose_loss",
           "targets_first"]

LOSS_METHODS = ("forward", "__call__", "loss", "calculate", "compute_loss", "compute")
GRADIENT_METHODS = ("backward", "backwards", "backprop", "backward_pass", "gradient",
                    "derivative", "prime", "loss_prime", "loss_gradient", "loss_derivative",
                    "grad")
TARGET_NAMES = frozenset({"y", "y_true", "ytrue", "y_train", "y_actual", "actual", "target",
                          "targets", "label", "labels", "t", "truth", "ground_truth", "gt",
                          "expected", "desired"})
# A lone backward argument by these names is the upstream gradient ∂L/∂L = 1.
UPSTREAM_NAMES = frozenset({"dout", "grad", "grad_output", "upstream", "dloss", "dl"})
# The probabilities a fused softmax + cross-entropy stores for its backward, beside OUTPUT_NAMES.
STORED_OUTPUT_NAMES = (*OUTPUT_NAMES, "probs", "probabilities", "p", "softmax", "y_pred")


def _targets_first(function: Callable, label: str) -> bool:
    """Whether ``function`` takes ``(targets, predictions)``; it must take two arguments."""
    names = [name.lower() for name in required_positional(function)]
    if len(names) != 2:
        raise ConventionError(
            f"{label} takes {len(names)} arguments {names}; chainrule calls a loss with the "
            "predictions and the targets. Map it: cr.check_loss(lambda output, y: ..., output, "
            "y, gradient=lambda output, y: ...)")
    return targets_first(names)


def targets_first(names: list[str]) -> bool:
    """Whether two lower-case parameter names are ``(targets, predictions)``: the first is a
    target's name (``y_true``, ``t``, ...) and the second is not."""
    return names[0] in TARGET_NAMES and names[1] not in TARGET_NAMES


def _prediction_name(function: Callable, targets_first: bool) -> str:
    names = required_positional(function)
    return names[1 if targets_first else 0] if len(names) == 2 else "output"


class UserLoss:
    """chainrule's loss protocol over a user's loss (see the module docstring).

    ``compute(predictions, targets)`` (in the user's order) gives ``L``, ``(B,)`` per-sample
    losses (``L`` their mean) or ``(L, ∂L/∂predictions)``; ``gradient`` (None when
    ``compute`` returns the gradient) is called as its signature asks. ``notes`` say how the
    loss was read.
    """

    def __init__(self, obj: object | None, compute: Callable, gradient: Callable | None,
                 label: str) -> None:
        self.obj, self.compute, self.gradient, self.label = obj, compute, gradient, label
        self.compute_name = f"{label}.{compute.__name__}" if obj is not None else label
        self.targets_first = _targets_first(compute, self.compute_name)
        self.prediction_name = _prediction_name(compute, self.targets_first)
        self.notes: list[str] = []
        self._output = self._y = self._returned = None
        self._before_forward: dict = {}  # the object's attributes before the last forward

    def _ordered(self, predictions: object, targets: object) -> tuple:
        return (targets, predictions) if self.targets_first else (predictions, targets)

    def forward(self, output: np.ndarray, y: np.ndarray) -> float:
        """``L`` at ``output`` (float64, copied: the user's code may write into it)."""
        self._output, self._y = np.array(output, dtype=np.float64), y
        self._before_forward = dict(getattr(self.obj, "__dict__", {}))
        result = call_user(self.compute, *self._ordered(self._output.copy(), np.copy(y)),
                           name=self.compute_name)
        self._returned = None
        if isinstance(result, tuple | list) and len(result) == 2 and np.ndim(result[1]) > 0:
            result, self._returned = result
        value = np.asarray(result, dtype=np.float64)
        if value.ndim and value.shape in ((len(output),), (len(output), 1)):
            note = (f"L is the mean of {self.compute_name}'s per-sample losses "
                    f"{value.shape}")
            if note not in self.notes:
                self.notes.append(note)
            value = value.mean()
        if value.size != 1:
            raise ConventionError(
                f"{self.compute_name} returned shape {value.shape}; a loss returns a number, "
                f"or one loss per sample ({len(output)},)")
        return float(value.reshape(()))

    def _probabilities_stored(self) -> np.ndarray | None:
        """What the last forward stored that has the predictions' shape but not their values:
        a fused softmax + cross-entropy's probabilities, which its backward takes back."""
        if self.obj is None:
            return None
        name = stored_attribute(self.obj, STORED_OUTPUT_NAMES, self._before_forward)
        value = getattr(self.obj, name, None) if name is not None else None
        if (isinstance(value, np.ndarray) and value.shape == self._output.shape
                and not np.array_equal(value, self._output)):
            return np.array(value, dtype=np.float64)
        return None

    def backward(self) -> np.ndarray:
        """``∂L/∂output`` at the last forward, as the user's code gives it (float64)."""
        if self._returned is not None:
            return as_float64(f"{self.compute_name} gradient", self._returned)
        if self.gradient is None:
            raise ConventionError(
                f"{self.compute_name} returns only the loss and chainrule found no gradient "
                f"method ({', '.join(GRADIENT_METHODS)}); pass the function that gives "
                "∂L/∂predictions: cr.check_loss(loss, output, y, gradient=...), or "
                "--gradient NAME from the shell")
        name = (f"{self.label}.{self.gradient.__name__}" if self.obj is not None
                else getattr(self.gradient, "__name__", "gradient"))
        stored_output = self._probabilities_stored()
        fed = (self._output if stored_output is None else stored_output).copy()
        arguments = self._arguments(fed)
        if stored_output is not None and any(argument is fed for argument in arguments):
            note = (f"{name} was given what {self.compute_name} stored (the probabilities, "
                    f"not the {self.prediction_name} it took), as a training loop passes it; "
                    f"the gradient is ∂L/∂{self.prediction_name}")
            if note not in self.notes:
                self.notes.append(note)
        before = dict(getattr(self.obj, "__dict__", {}))
        result = call_user(self.gradient, *arguments, name=name)
        if isinstance(result, tuple | list) and result and isinstance(result[0], np.ndarray):
            result = result[0]
        if result is None and self.obj is not None:
            stored = stored_attribute(self.obj, GRAD_INPUT_NAMES, before)
            if stored is None:
                raise ConventionError(
                    f"{name}() returned None and stored no gradient (self.dinputs, self.dx, "
                    f"...); found array attributes {sorted(_arrays_of(self.obj))}")
            result = getattr(self.obj, stored)
        return as_float64(f"{name} result", result)

    def _arguments(self, fed: np.ndarray) -> tuple:
        names = [name.lower() for name in required_positional(self.gradient)]
        if not names:
            return ()
        if len(names) == 1:
            return ((np.copy(self._y),) if names[0] in TARGET_NAMES else
                    (np.float64(1.0),) if names[0] in UPSTREAM_NAMES else (fed,))
        if len(names) == 2:
            return ((np.copy(self._y), fed) if targets_first(names)
                    else (fed, np.copy(self._y)))
        raise ConventionError(
            f"{self.label}.{self.gradient.__name__} takes {len(names)} arguments {names}; "
            "chainrule calls it with nothing, the targets, or the predictions and the targets. "
            "Map it: cr.check_loss(lambda output, y: ..., output, y, gradient=lambda output, "
            "y: ...)")


def _arrays_of(obj: object) -> dict[str, np.ndarray]:
    return {name: value for name, value in getattr(obj, "__dict__", {}).items()
            if isinstance(value, np.ndarray)}


def as_loss(loss: object, gradient: Callable | None = None) -> Loss | UserLoss:
    """chainrule's loss as is; a user's loss (object or function) as a :class:`UserLoss`
    over a copy. ``gradient``: the function giving ``∂L/∂predictions``, for a loss function
    that returns only the loss. Raises :class:`ConventionError` when it cannot tell how."""
    if isinstance(loss, type):
        raise TypeError(f"loss is the class {loss.__name__}; pass an instance: "
                        f"{loss.__name__}({'...' if required_positional(loss) else ''})")
    if isinstance(loss, Loss) and gradient is None:
        return loss
    if isinstance(loss, str | bytes | int | float | np.ndarray | list | tuple) or loss is None:
        raise TypeError(f"loss must be a loss object or function, got {type(loss).__name__} "
                        f"{loss!r:.60}: e.g. cr.SoftmaxCrossEntropy() for logits, or your own "
                        "loss class instance")
    label = getattr(loss, "__name__", type(loss).__name__)
    if gradient is not None or inspect.isroutine(loss) or isinstance(loss, functools.partial):
        if not callable(loss) or (gradient is not None and not callable(gradient)):
            raise TypeError("loss and gradient must be functions: gradient(predictions, "
                            "targets) gives ∂L/∂predictions")
        return UserLoss(None, loss, gradient, label)
    copied = copy_of(loss)
    compute = find_method(copied, LOSS_METHODS)
    if compute is None:
        methods = sorted(name for name in dir(loss) if not name.startswith("_")
                         and callable(getattr(loss, name, None)))
        raise ConventionError(
            f"cannot tell how to check the loss {label}: no method computes it "
            f"({', '.join(LOSS_METHODS)}); found methods {methods}. Map it: cr.check_loss("
            "lambda output, y: ..., output, y, gradient=lambda output, y: ...)")
    backward = find_method(copied, GRADIENT_METHODS)
    return UserLoss(copied, getattr(copied, compute),
                    getattr(copied, backward) if backward is not None else None, label)


def check_loss(loss: object, output: np.ndarray, y: np.ndarray, *,
               gradient: Callable | None = None, atol: float = DEFAULT_ATOL,
               rtol: float = DEFAULT_RTOL, eps: float | None = None, sample: int | None = None,
               seed: int = 0) -> Report:
    """Check a loss's gradient ``∂L/∂output`` against central differences of ``L``
    (``sample=K``: at K random entries, for a large output).

    ``loss``: chainrule's, or your own in any convention of this module's docstring (a class,
    softmax and cross-entropy in one, ``loss, dx = f(x, y)``, or ``f`` with
    ``gradient=f_prime``). ``output``: ``(B, C)`` predictions (probabilities, logits for a
    fused softmax + cross-entropy, values); ``y``: the targets as your loss takes them.

    >>> class MSE:
    ...     def forward(self, y_pred, y_true):
    ...         self.diff = y_pred - y_true
    ...         return np.mean(self.diff ** 2)
    ...     def backward(self):
    ...         return 2 * self.diff / self.diff.size
    >>> rng = np.random.default_rng(0)
    >>> bool(check_loss(MSE(), rng.normal(size=(4, 2)), rng.normal(size=(4, 2))))
    True
    """
    output = as_float64("output", output)
    if output.ndim != 2 or output.size == 0:
        one = "; for one sample pass output[None] (a batch of 1)" if output.ndim == 1 else ""
        raise ValueError(f"output must be a non-empty batch (B, outputs), got shape "
                         f"{output.shape}{one}")
    y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError(f"y must hold one target per row of output ({len(output)} rows), "
                         f"got {y!r}")
    if len(y) != len(output):
        raise ValueError(f"y has {len(y)} rows but output has {len(output)}")
    user = as_loss(copy.deepcopy(loss) if isinstance(loss, Loss) else loss, gradient)
    label = getattr(user, "label", type(user).__name__)
    wrt = getattr(user, "prediction_name", "output")
    value = user.forward(output, y)
    if not np.isfinite(value):
        raise ValueError(f"{label} gives L = {value} at this output: check it where the loss "
                         "is finite (probabilities strictly inside (0, 1))")
    claimed = as_float64(f"{label} gradient", user.backward())
    notes = list(getattr(user, "notes", []))
    if claimed.shape != output.shape:
        if claimed.size != output.size:
            row = Row(f"{label} ∂L/∂{wrt}", np.zeros(output.shape), np.zeros(output.shape),
                      atol, rtol, problem=f"the gradient has shape {claimed.shape}, not the "
                                          f"{wrt}'s {output.shape}")
            return Report(f"check_loss: {label}, batch {len(output)} (float64)", [row],
                          notes=notes)
        claimed = claimed.reshape(output.shape)

    def loss_at(point: np.ndarray) -> float:
        return user.forward(point, y)

    rng = np.random.default_rng(seed)
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be >= 1, got {sample}")
    entries = sampled_entries(output.size, sample, rng)
    known = numerical_gradient_at(loss_at, output, entries, eps)
    numeric = known
    if entries is not None:
        numeric = np.full(output.shape, np.nan)  # only the sampled entries are known
        numeric.reshape(-1)[entries] = known
    if not np.isfinite(known).all():
        flat = int(np.flatnonzero(~np.isfinite(known))[0])
        entry = tuple(int(i) for i in np.unravel_index(
            flat if entries is None else entries[flat], output.shape))
        step = steps_for(output, eps)[entry]
        raise ValueError(
            f"{label} gives a non-finite L within one finite-difference step ({step:.3g}) of "
            f"output{list(entry)} = {output[entry]:.6g}: check it at outputs farther from where "
            "the loss is undefined (e.g. probabilities away from 0), or pass an eps far below "
            "their distance from it")
    direction = random_direction(rng, output.shape)
    picked = (lambda values: values) if entries is None else (
        lambda values: values.reshape(-1)[entries])
    row = Row(f"{label} ∂L/∂{wrt}", picked(claimed), picked(numeric), atol, rtol,
              positions=entries, probe=probe(lambda t: loss_at(output + t * direction),
                                             float(np.sum(claimed * direction))))
    if not row.passed:
        row.diagnosis = diagnose_loss(claimed, numeric, output, y, entries)
    return Report(f"check_loss: {label}, batch {len(output)} (float64)", [row], notes=notes)


def diagnose_loss(claimed: np.ndarray, numeric: np.ndarray, output: np.ndarray,
                  y: np.ndarray, entries: np.ndarray | None = None) -> list[Diagnosis]:
    """The mistakes a loss's wrong ``∂L/∂output`` shows: those of any gradient (a factor of
    B, the sign, ...), else ``shortcut_in_loss``, a claim of ``(A - T)`` or ``(A - T) / B``
    (softmax and cross-entropy together) from a loss that takes the probabilities ``A``.
    ``entries``: the flat entries ``numeric`` is known at (all when None)."""
    def picked(values: np.ndarray) -> np.ndarray:
        return values if entries is None else np.asarray(values).reshape(-1)[entries]
    found = diagnose_gradient(picked(claimed), picked(numeric), len(output))
    if found:
        return found
    y = np.asarray(y)
    targets = (np.eye(output.shape[1])[y] if y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
               and y.size and 0 <= y.min() and y.max() < output.shape[1] else y)
    if np.shape(targets) != output.shape:
        return []
    shortcut = picked(output - targets)
    for scale in (1.0, 1.0 / len(output)):
        if np.allclose(picked(claimed), scale * shortcut, rtol=1e-6, atol=1e-12):
            return [named("shortcut_in_loss")]
    return []
