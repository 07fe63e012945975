"""Working out the convention of a user's layer object, so it can be checked as written.

:func:`as_layer` turns any layer object into a :class:`~chainrule.check.wrapped.WrappedLayer`:
it finds the forward and backward methods (``backward``, ``backwards``, ``backprop``,
``back``; taking ``(grad)``, ``(grad, input)`` or ``(grad, learning_rate)``), whether results
are returned or stored (``self.output``; ``self.dinputs``, ``self.dx``, ...), and the
parameters with their gradients (``W``/``dW``, ``weights``/``dweights``, ``grad_W``,
``W_grad``, or ``params``/``grads`` dicts) by running the layer once on a copy. When it
cannot tell, one error lists what it found and the ``wrap_layer`` call that would map it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from chainrule.check.calls import UserCodeError, call_user
from chainrule.check.wrapped import WrappedLayer, copy_of, split_output

__all__ = ["ConventionError", "as_layer", "backward_arguments", "find_method", "float_arrays",
           "is_gradient_of", "required_positional", "stored_attribute"]

FORWARD_NAMES = ("forward", "forwards", "forward_pass", "fprop", "__call__")
BACKWARD_NAMES = ("backward", "backwards", "backprop", "back", "backward_pass", "bprop")
OUTPUT_NAMES = ("output", "outputs", "out", "A", "a", "Y", "y", "activation")
GRAD_INPUT_NAMES = ("dinputs", "dinput", "dx", "dX", "grad_input", "input_gradient",
                    "grad_inputs", "dA_prev", "dA", "dz", "dZ", "delta")
INPUT_NAMES = ("inputs", "input", "x", "X", "z", "Z", "a_prev", "A_prev", "cache")
KNOWN_PARAMETERS = ("W", "b", "w", "weights", "biases", "weight", "bias", "kernel", "gamma",
                    "beta")
CACHE_NAMES = ("cache", "caches", "ctx", "saved")
RATE_NAMES = ("lr", "learning_rate", "rate", "eta", "alpha", "step_size", "learningrate")
GRADIENT_PREFIXES = ("grad_", "grad", "d_", "d", "g_")
GRADIENT_SUFFIXES = ("_grads", "_grad", "_gradient", "_gradients", "grad", "_d")


class ConventionError(ValueError):
    """chainrule cannot tell how to call a user's layer; the message says what it found."""


def required_positional(function: Callable) -> list[str]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    return [name for name, parameter in signature.parameters.items()
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            and parameter.default is parameter.empty]


def backward_arguments(backward: Callable, label: str) -> str:
    """``"grad"``, ``"input"``, ``"rate"`` or ``"cache"``: what ``backward`` takes after the
    gradient (``cache``: what ``forward`` returned after its output, ``out, cache``)."""
    names = required_positional(backward)
    if len(names) <= 1:
        return "grad"
    if len(names) == 2:
        second = names[1].lower()
        return "rate" if second in RATE_NAMES else "cache" if second in CACHE_NAMES else "input"
    raise ConventionError(f"{label}.backward takes {len(names)} arguments {names}; chainrule "
                          "calls backward(grad), backward(grad, input), backward(grad, cache) "
                          "or backward(grad, learning_rate). Map it with wrap_layer(backward=...)")


def _stem(name: str) -> str:
    return name.lower().rstrip("s")


def is_gradient_of(candidate: str, parameter: str) -> bool:
    """Whether ``candidate`` names the gradient of ``parameter`` (``dW``, ``grad_W``, ...)."""
    if candidate == parameter:
        return False
    for prefix in GRADIENT_PREFIXES:
        if candidate.startswith(prefix) and _stem(candidate[len(prefix):]) == _stem(parameter):
            return True
    for suffix in GRADIENT_SUFFIXES:
        if candidate.endswith(suffix) and _stem(candidate[:-len(suffix)]) == _stem(parameter):
            return True
    return False


def float_arrays(obj: object) -> dict[str, np.ndarray]:
    """``obj``'s floating-point array attributes, by name (none without a ``__dict__``)."""
    return {name: value for name, value in getattr(obj, "__dict__", {}).items()
            if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)}


def _methods(obj: object) -> list[str]:
    return sorted(name for name in dir(obj) if not name.startswith("_")
                  and callable(getattr(obj, name, None)))


def _explain(obj: object, reason: str) -> ConventionError:
    """One error: what is missing, what was found, and the ``wrap_layer`` call to write."""
    name, methods = type(obj).__name__, _methods(obj)
    arrays = ", ".join(f"{key} {value.shape}" for key, value in float_arrays(obj).items()) or "none"
    backward = next((method for method in methods if "back" in method.lower()), "backward")
    forward = next((method for method in methods if method != backward and any(
        word in method.lower() for word in ("forward", "prop", "call", "predict", "run"))),
        "forward")
    example = next(iter(float_arrays(obj)), "W")
    return ConventionError(
        f"cannot tell how to check {name}: {reason}. Found methods {methods}, array "
        f"attributes: {arrays}. Map it explicitly: chainrule.wrap_layer(layer, "
        f"forward={forward!r}, backward={backward!r}, params={{'{example}': '{example}'}}, "
        f"grads={{'{example}': 'd{example}'}})")


def find_method(obj: object, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that is a method of ``obj``, or None."""
    for name in names:
        if name == "__call__" and not callable(obj):
            continue
        if callable(getattr(obj, name, None)):
            return name
    return None


def _find_method(obj: object, names: tuple[str, ...], what: str) -> str:
    """The first of ``names`` that is a method of ``obj``; else one error saying what is."""
    found = find_method(obj, names)
    if found is None:
        raise _explain(obj, f"no {what} method ({', '.join(names)})")
    return found


def stored_attribute(obj: object, names: tuple[str, ...], before: dict[str, object]) -> str | None:
    """The first of ``names`` holding an array that the last call set (else any holding one)."""
    held = [name for name in names if isinstance(getattr(obj, name, None), np.ndarray)]
    changed = [name for name in held if before.get(name) is not getattr(obj, name)]
    return (changed or held or [None])[0]


def _parameters(obj: object, excluded: set[str], takes: str) -> tuple[dict, dict]:
    """Parameter and gradient references of ``obj`` after one forward and backward."""
    params_dict, grads_dict = getattr(obj, "params", None), None
    for name in ("grads", "gradients", "grad"):
        if isinstance(getattr(obj, name, None), dict):
            grads_dict = name
            break
    if isinstance(params_dict, dict) and params_dict:
        params = {key: ("item", "params", key) for key, value in params_dict.items()
                  if isinstance(value, np.ndarray)}
        grads = {key: ("item", grads_dict, key) if grads_dict is not None
                 and key in getattr(obj, grads_dict) else None for key in params}
        return params, grads
    names = [name for name, value in vars(obj).items() if name not in excluded and (
        isinstance(value, np.ndarray) or value is None)]
    params, grads = {}, {}
    for name in names:
        if not isinstance(getattr(obj, name), np.ndarray):
            continue
        partners = sorted((other for other in names if is_gradient_of(other, name)),
                          key=lambda other: getattr(obj, other) is None)  # arrays first
        if partners:
            params[name] = ("attr", name)
            grads[name] = ("attr", partners[0])
        elif name in KNOWN_PARAMETERS:
            params[name] = ("attr", name)
            grads[name] = None
    if takes == "rate":
        params = {name: ("attr", name) for name in names if name in KNOWN_PARAMETERS
                  or name in params}
        grads = dict.fromkeys(params)
    return params, grads


def _trial(obj: object, forward: str, backward: str, takes: str,
           x: np.ndarray) -> tuple[str | None, str | None]:
    """Run ``forward(x)`` and ``backward(ones)`` once on ``obj`` (a copy); returns the names
    of the stored output and input gradient (None where they are returned)."""
    label = type(obj).__name__
    before = dict(vars(obj))
    result = call_user(getattr(obj, forward), x, name=f"{label}.{forward}")
    output = None
    if result is None:
        output = stored_attribute(obj, OUTPUT_NAMES, before)
        if output is None:
            raise _explain(obj, f"{forward}() returned None and stored no output "
                                "(self.output, self.out, self.A, ...)")
        result = getattr(obj, output)
    result, cache = split_output(result)
    before = dict(vars(obj))
    grad = np.ones_like(np.asarray(result, dtype=np.float64))
    argument = {"grad": (), "input": (x,), "rate": (0.0,), "cache": (cache,)}[takes]
    grad_input = None
    if call_user(getattr(obj, backward), grad, *argument, name=f"{label}.{backward}") is None:
        grad_input = stored_attribute(obj, GRAD_INPUT_NAMES, before)
        if grad_input is None:
            raise _explain(obj, f"{backward}() returned None and stored no input "
                                "gradient (self.dinputs, self.dinput, self.dx, ...)")
    return output, grad_input


def as_layer(obj: object, x: np.ndarray, layout: str = "rows",
             per_sample: bool = False) -> WrappedLayer:
    """A :class:`WrappedLayer` over ``obj``, its convention found by running a copy once.

    ``x`` is a batch in the user's layout (``(B, n)``; ``(n, B)`` for ``layout="columns"``).
    A :class:`WrappedLayer` (from ``wrap_layer``) is returned as is. Raises
    :class:`ConventionError` when the convention cannot be told, and
    :class:`~chainrule.check.calls.UserCodeError` when the user's code raises.
    """
    if isinstance(obj, WrappedLayer):
        return obj
    label = type(obj).__name__
    forward = _find_method(obj, FORWARD_NAMES, "forward")
    backward = _find_method(obj, BACKWARD_NAMES, "backward")
    takes = backward_arguments(getattr(obj, backward), label)
    rows = x.T if layout == "columns" else x
    # One row first (the shape every convention handles), then the whole batch.
    samples = [rows[0]] if per_sample else [rows[:1], rows]
    for attempt, sample in enumerate(samples):
        trial = copy_of(obj)
        user_x = sample if layout == "rows" else (
            sample.reshape(-1, 1) if per_sample else sample.T)  # one sample: a column (n, 1)
        try:
            output, grad_input = _trial(trial, forward, backward, takes, user_x)
            break
        except UserCodeError:
            if attempt == len(samples) - 1:
                raise
    params, grads = _parameters(trial, {*OUTPUT_NAMES, *GRAD_INPUT_NAMES, *INPUT_NAMES}, takes)
    wrapped = WrappedLayer(obj, getattr(obj, forward), getattr(obj, backward), params, grads,
                           layout=layout, per_sample=per_sample, backward_takes=takes,
                           output=output, grad_input=grad_input, label=label)
    wrapped.unchecked = _constants(obj, trial, params, grads)
    return wrapped


def _constants(obj: object, trial: object, params: dict, grads: dict) -> list[str]:
    """Array attributes set before the first forward and left unchanged by it and by
    backward, with no gradient beside them: perhaps parameters chainrule cannot see."""
    used = {ref[1] for ref in [*params.values(), *grads.values()] if ref and ref[0] == "attr"}
    found = []
    for name, value in float_arrays(obj).items():
        after = getattr(trial, name, None)
        if (name not in used and name not in (*OUTPUT_NAMES, *GRAD_INPUT_NAMES, *INPUT_NAMES)
                and isinstance(after, np.ndarray) and after.shape == value.shape
                and np.array_equal(after, value)):
            found.append(f"{name} {value.shape}")
    return found
