"""A whole network of your own, one object that computes its loss and its parameter gradients,
checked as written: every gradient against central differences of the loss.

Read are:

- ``loss, grads = model.loss(X, y)``, ``grads`` a dict of the parameters' gradients and the
  parameters in ``model.params`` (the classic assignments' ``TwoLayerNet``) or attributes of
  the same names;
- ``model.forward(X)``, a loss method on its output and the targets (``loss``,
  ``compute_loss``, ``cost``, ... in either order, told by the names) or on ``(X, y)``, and
  ``model.backward(...)`` (or ``backprop``, ``gradients``, ...) taking any of ``X``, ``y``
  and the output by name, or nothing, that returns a dict of gradients or stores each beside
  its parameter (``dW1`` for ``W1``, ``grad_W1``, ...); one that also takes a learning rate
  and updates the weights itself is called with rate 1 and read from the update. Parameters
  are the arrays set before the first forward that forward leaves as they are: cached
  activations (``z1``, ``a1``) and their ``dz1`` are not.

The model is copied (its parameters in float64) and only the copy is run.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import numpy as np

from chainrule.check.adapters import (
    RATE_NAMES,
    ConventionError,
    find_method,
    float_arrays,
    is_gradient_of,
    required_positional,
)
from chainrule.check.calls import call_user
from chainrule.check.diagnosis import diagnose_gradient
from chainrule.check.layercheck import in_parameter_shape, probe, random_direction
from chainrule.check.losscheck import TARGET_NAMES, targets_first
from chainrule.check.numerical import as_float64, numerical_gradient_at, sampled_entries
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Report, Row
from chainrule.check.wrapped import copy_of
from chainrule.nn.network import Sequential

__all__ = ["check_model"]

FORWARD_METHODS = ("forward", "forward_pass", "feedforward", "feed_forward", "forward_propagation")
LOSS_METHODS = ("loss", "compute_loss", "cost", "compute_cost", "loss_function", "criterion",
                "cross_entropy", "calculate_loss")
BACKWARD_METHODS = ("backward", "backprop", "backpropagation", "backward_pass",
                    "backward_propagation", "gradients", "compute_gradients", "gradient")
INPUT_NAMES = frozenset({"x", "inputs", "input", "data", "features", "x_batch", "x_train"})
PARAMETER_LIKE = re.compile(r"(w|b|weights?|bias(es)?|kernel|gamma|beta)_?\d*$", re.IGNORECASE)
OUTPUT_NAMES = frozenset({"output", "outputs", "out", "y_pred", "ypred", "y_hat", "yhat",
                          "pred", "preds", "predictions", "probs", "scores", "logits", "a",
                          "a2", "activation"})


def _positional(function: Callable) -> list[str]:
    """The names of ``function``'s positional parameters, defaulted ones too (``loss(X,
    y=None)``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    return [parameter.name for parameter in parameters
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)]


class _Model:
    """The loss ``L(X, y)`` and the gradients of a user's model (a copy), as it computes them."""

    def __init__(self, model: object, X: np.ndarray, y: np.ndarray) -> None:
        self.label = type(model).__name__
        self.model, self.X, self.y = copy_of(model), X, y
        self.params_dict = isinstance(getattr(self.model, "params", None), dict)
        store = self._parameter_store()
        for name, value in store.items():  # checked in float64
            if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
                store[name] = value.astype(np.float64)
        loss_name = find_method(self.model, LOSS_METHODS)
        if loss_name is None:
            raise self._unreadable("no loss method")
        self.loss_fn = getattr(self.model, loss_name)
        self.forward_name = find_method(self.model, FORWARD_METHODS)
        self.backward_name = find_method(self.model, BACKWARD_METHODS)
        self.loss_takes = self._loss_arguments()
        self.returns_grads = self.updates_itself = False

    def _parameter_store(self) -> dict:
        return self.model.params if self.params_dict else getattr(self.model, "__dict__", {})

    def _unreadable(self, reason: str) -> ConventionError:
        methods = sorted(name for name in dir(self.model) if not name.startswith("_")
                         and callable(getattr(self.model, name, None)))
        return ConventionError(
            f"cannot tell how to check {self.label}: {reason}. chainrule reads `loss, grads = "
            f"model.loss(X, y)`, or model.forward(X) with a loss method ({', '.join(LOSS_METHODS)}"
            f") and model.backward storing or returning the gradients. Found methods {methods}")

    def _loss_arguments(self) -> str:
        """``"X, y"``, ``"output, y"`` or ``"y, output"``: what the loss method takes."""
        names = [name.lower() for name in _positional(self.loss_fn)]
        if len(names) < 2 or len(required_positional(self.loss_fn)) > 2:
            raise self._unreadable(f"{self.loss_fn.__name__} takes {len(names)} arguments "
                                   f"{names}, not two (X and y, or the output and y)")
        if names[0] in INPUT_NAMES:
            return "X, y"
        return "y, output" if targets_first(names) else "output, y"

    def loss(self) -> float:
        """``L`` at the model's current parameters; leaves its caches for backward."""
        if self.loss_takes == "X, y":
            result = call_user(self.loss_fn, self.X.copy(), np.copy(self.y),
                               name=f"{self.label}.{self.loss_fn.__name__}")
            if isinstance(result, tuple | list) and len(result) == 2 and isinstance(
                    result[1], dict):
                self.returns_grads, (result, self.returned) = True, result
        else:
            if self.forward_name is None:
                raise self._unreadable(f"{self.loss_fn.__name__} takes the output, and there "
                                       "is no forward method")
            output = call_user(getattr(self.model, self.forward_name), self.X.copy(),
                               name=f"{self.label}.{self.forward_name}")
            if output is None:
                output = getattr(self.model, "output", None)
            self.output = as_float64(f"{self.label}.{self.forward_name} output", output)
            pair = (self.output.copy(), np.copy(self.y))
            result = call_user(self.loss_fn, *(pair if self.loss_takes == "output, y"
                                               else pair[::-1]),
                               name=f"{self.label}.{self.loss_fn.__name__}")
        value = np.asarray(result, dtype=np.float64)
        if value.size != 1:
            raise ConventionError(f"{self.label}.{self.loss_fn.__name__} returned shape "
                                  f"{value.shape}; the loss is one number")
        return float(value.reshape(()))

    def gradients(self, before: dict[str, np.ndarray]) -> dict[str, object]:
        """The gradients after :meth:`loss`, by parameter name (``before``: the model's arrays
        before its first forward, to tell parameters from cached activations)."""
        if self.returns_grads:
            return dict(self.returned)
        if self.backward_name is None:
            raise self._unreadable("its loss returns no gradients and there is no backward "
                                   f"method ({', '.join(BACKWARD_METHODS)})")
        backward = getattr(self.model, self.backward_name)
        # rate: for a backward that updates the weights itself, W -= 1 · dW
        values = {"x": self.X.copy(), "y": np.copy(self.y),
                  "output": getattr(self, "output", None), "rate": 1.0}
        arguments, kinds = [], []
        for name in (name.lower() for name in required_positional(backward)):
            kind = ("x" if name in INPUT_NAMES else "y" if name in TARGET_NAMES
                    else "output" if name in OUTPUT_NAMES else "rate" if name in RATE_NAMES
                    else None)
            if kind is None or values[kind] is None:
                raise self._unreadable(f"{self.backward_name} takes {name!r}; chainrule passes "
                                       "X, y, the output or a learning rate by those names")
            arguments.append(values[kind])
            kinds.append(kind)
        parameters = [name for name, value in before.items()
                      if isinstance(getattr(self.model, name, None), np.ndarray)
                      and np.array_equal(getattr(self.model, name), value)]
        kept = {name: getattr(self.model, name).copy() for name in parameters}
        result = call_user(backward, *arguments, name=f"{self.label}.{self.backward_name}")
        if isinstance(result, dict):
            return result
        if "rate" in kinds:
            return self._updates(kept)
        found = {}
        for name in parameters:
            partners = [other for other in vars(self.model)
                        if is_gradient_of(other, name) and other not in before]
            if partners:
                found[name] = getattr(self.model, partners[0])
        if not found:
            raise self._unreadable(f"{self.backward_name} returned no dict of gradients and "
                                   "stored none beside a parameter (dW1 for W1, ...)")
        return found

    def _updates(self, kept: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The gradients a backward that took learning rate 1 applied, ``W_before - W_after``,
        by parameter (those it changed, and those named like one: a W or b it forgot to
        update has gradient 0); each parameter is then put back."""
        self.updates_itself = True
        gradients = {}
        for name, value in kept.items():
            after = np.asarray(getattr(self.model, name), dtype=np.float64)
            if not np.array_equal(after, value) or PARAMETER_LIKE.match(name):
                gradients[name] = value - after
            setattr(self.model, name, value.copy())  # it may have rebound it: W = W - lr * dW
        return gradients

    def parameter(self, name: str) -> np.ndarray:
        return self._parameter_store()[name]


def check_model(model: object, X: np.ndarray, y: np.ndarray, *, atol: float = DEFAULT_ATOL,
                rtol: float = DEFAULT_RTOL, eps: float | None = None, sample: int | None = None,
                seed: int = 0) -> Report:
    """Check every parameter gradient of a model of your own that computes its loss and its
    gradients (see the module docstring) against central differences of the loss.

    ``X``: ``(B, features)`` as your model takes it; ``y``: the targets as it takes them.
    ``sample=K``: K random entries per parameter. One row per parameter, named as yours.
    """
    X = as_float64("X", X)
    y = np.asarray(y)
    if isinstance(model, type):
        raise TypeError(f"model is the class {model.__name__}; pass an instance: "
                        f"{model.__name__}(...)")
    if isinstance(model, Sequential):
        raise TypeError("model is a chainrule Sequential, which has no loss of its own: check "
                        "it with cr.gradcheck(model, loss, X, y)")
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be >= 1, got {sample}")
    checked = _Model(model, X, y)
    before = {name: value.copy() for name, value in float_arrays(checked.model).items()}
    value = checked.loss()
    if not np.isfinite(value):
        raise ValueError(f"{checked.label} gives L = {value} at these parameters and X")
    grads = checked.gradients(before)
    rng = np.random.default_rng(seed)
    rows = []
    store = checked._parameter_store()
    for name, claimed in grads.items():
        if name not in store or not isinstance(store[name], np.ndarray):
            rows.append(Row(f"∂L/∂{name}", np.zeros(1), np.zeros(1), atol, rtol,
                            problem=f"the gradients name {name!r}, which is no parameter of "
                                    f"{checked.label}"))
            continue
        point = store[name]
        entries = sampled_entries(point.size, sample, rng)
        stored, problem = ((None, f"the gradient of {name} is None") if claimed is None
                           else in_parameter_shape(as_float64(f"gradient of {name}", claimed),
                                                   point.shape, name))
        full = np.zeros(point.shape) if problem else stored
        loss_at = _loss_with(checked, name)
        numeric = numerical_gradient_at(loss_at, point, entries, eps)
        analytic = full.reshape(-1)[entries] if entries is not None else full
        direction = random_direction(rng, point.shape)
        row = Row(f"∂L/∂{name}", analytic, numeric, atol, rtol, positions=entries,
                  problem=problem or None,
                  probe=probe(_along(loss_at, point.copy(), direction),
                              float(np.sum(full * direction))))
        if not row.passed and not problem:
            row.diagnosis = diagnose_gradient(analytic, numeric, len(X), name)
        rows.append(row)
    failed = sorted((row for row in rows if not row.passed),
                    key=lambda row: not row.diagnosis)  # a named mistake first
    how = ("loss, grads = loss(X, y)" if checked.returns_grads
           else f"{checked.backward_name} after {checked.loss_fn.__name__}" + (
               ", gradients read from its update at learning rate 1"
               if checked.updates_itself else ""))
    return Report(f"check_model: {checked.label}, batch {len(X)} (float64), {how}", rows,
                  cause=failed[0].name if failed else None)


def _loss_with(checked: _Model, name: str) -> Callable[[np.ndarray], float]:
    """``L`` with parameter ``name`` set to the given values, then put back."""
    point = checked.parameter(name)
    original = point.copy()

    def loss_at(values: np.ndarray) -> float:
        point[...] = values
        try:
            return checked.loss()
        finally:
            point[...] = original
    return loss_at


def _along(loss_at: Callable[[np.ndarray], float], start: np.ndarray,
           direction: np.ndarray) -> Callable[[float], float]:
    """``φ(t) = loss_at(start + t · direction)``."""
    return lambda t: loss_at(start + t * direction)
