"""A user's layer seen through chainrule's layer protocol: what the checks call.

:class:`WrappedLayer` maps a layer written in any convention (results returned or stored,
``backward(grad)`` or ``backward(grad, input)`` or ``backward(grad, learning_rate)``,
parameters as attributes or dict entries, ``(features, B)`` columns, one sample at a time)
onto ``forward(x) -> y`` / ``backward(g) -> dx`` on ``(B, features)`` rows with ``params`` /
``grads`` dicts. Every call into the user's code goes through
:func:`~chainrule.check.calls.call_user`, so an exception there is reported as theirs.
:func:`wrap_layer` builds one explicitly; :mod:`chainrule.check.adapters` works the mapping out.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable, Mapping

import numpy as np

from chainrule.check.calls import call_user

__all__ = ["WrappedLayer", "copy_of", "split_output", "wrap_layer"]

# A reference to a value of the user's layer: ("attr", name), ("item", dict attribute, key),
# ("array", ndarray) or ("call", zero-argument callable).
Ref = tuple


def copy_of(obj: object, memo: dict | None = None) -> object:
    """A deep copy of a user's object (checks never touch the original); a ValueError naming
    the object when it cannot be copied (it holds a file, a lock, a generator, ...)."""
    try:
        return copy.deepcopy(obj, memo)
    except (TypeError, copy.Error, RecursionError) as error:
        raise ValueError(f"cannot copy {type(obj).__name__} to check it ({error}); chainrule "
                         "checks a copy so that your layer is never changed: keep files, locks "
                         "and generators off the layer, or pass wrap_layer(forward=..., "
                         "backward=..., params=..., grads=...) with plain functions") from None


def split_output(result: object) -> tuple[object, object]:
    """``(out, cache)`` from a forward that returns ``out, cache`` (else ``(result, None)``);
    likewise ``(dx, rest)`` from a backward that returns ``dx, dW, db``."""
    if isinstance(result, tuple | list) and len(result) >= 2 and isinstance(result[0],
                                                                           np.ndarray):
        return result[0], tuple(result[1:]) if len(result) > 2 else result[1]
    return result, None


def _rebind(function: object, old: object, new: object) -> object:
    """A method bound to ``old`` bound to ``new`` instead (after a deep copy); else as is."""
    if isinstance(function, types.MethodType) and function.__self__ is old:
        return types.MethodType(function.__func__, new)
    return function


class WrappedLayer:
    """chainrule's layer protocol over a user's layer ``obj`` (see the module docstring).

    ``backward_takes``: ``"grad"``, ``"input"`` (``backward(grad, x)``), ``"cache"``
    (``backward(grad, cache)`` with the cache of ``out, cache = forward(x)``) or ``"rate"``
    (``backward(grad, learning_rate)``, which updates the parameters itself: called with
    rate 1, the gradient is read from the change, then the parameters are restored). A
    backward returning ``dx, dW, db`` gives the parameter gradients by position.
    ``unstored``: parameters whose gradient the last ``backward`` left unset.
    """

    def __init__(self, obj: object, forward: Callable, backward: Callable,
                 params: Mapping[str, Ref], grads: Mapping[str, Ref | None], *,
                 layout: str = "rows", per_sample: bool = False, backward_takes: str = "grad",
                 output: str | None = None, grad_input: str | None = None,
                 label: str | None = None) -> None:
        if layout not in ("rows", "columns"):
            raise ValueError(f"layout must be 'rows' or 'columns', got {layout!r}")
        self.obj, self.forward_fn, self.backward_fn = obj, forward, backward
        self.param_refs, self.grad_refs = dict(params), dict(grads)
        self.layout, self.per_sample, self.backward_takes = layout, per_sample, backward_takes
        self.output, self.grad_input = output, grad_input
        self.label = label or type(obj).__name__
        self.unstored: set[str] = set()
        self.unchecked: list[str] = []  # array attributes with no gradient found beside them
        self._grads: dict[str, np.ndarray | None] = {}
        self._markers: dict[str, np.ndarray] = {}
        self._x: np.ndarray | None = None
        self._cache: object = None

    def __repr__(self) -> str:
        return self.label

    def __deepcopy__(self, memo: dict) -> WrappedLayer:
        """Copy the user's object; methods bound to it follow it, arrays given directly and
        plain functions (which may close over them) stay shared."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.obj = copy_of(self.obj, memo)
        twin.forward_fn = _rebind(self.forward_fn, self.obj, twin.obj)
        twin.backward_fn = _rebind(self.backward_fn, self.obj, twin.obj)
        twin.grad_refs = {name: ref if ref is None or ref[0] != "call"
                          else ("call", _rebind(ref[1], self.obj, twin.obj))
                          for name, ref in self.grad_refs.items()}
        twin.unstored, twin._grads, twin._markers = set(), {}, {}
        return twin

    # --- values of the user's object ----------------------------------------------------------
    def _get(self, ref: Ref) -> object:
        kind = ref[0]
        if kind == "attr":
            return getattr(self.obj, ref[1], None)
        if kind == "item":
            return getattr(self.obj, ref[1]).get(ref[2])
        if kind == "array":
            return ref[1]
        return call_user(ref[1], name=f"{self.label} gradient getter")

    def _set(self, ref: Ref, value: np.ndarray) -> None:
        if ref[0] == "attr":
            setattr(self.obj, ref[1], value)
        elif ref[0] == "item":
            getattr(self.obj, ref[1])[ref[2]] = value

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The live parameter arrays (checks perturb them in place)."""
        return {name: self._get(ref) for name, ref in self.param_refs.items()}

    @property
    def grads(self) -> dict[str, np.ndarray | None]:
        """The gradients the last ``backward`` stored (None where it stored none)."""
        return dict(self._grads)

    def to_float64(self) -> WrappedLayer:
        """Give the parameters float64 dtype and C order, so that checks can perturb them
        entry by entry (call on a copy; arrays given to ``wrap_layer`` stay as given)."""
        for ref in self.param_refs.values():
            value = self._get(ref)
            if isinstance(value, np.ndarray) and (value.dtype != np.float64
                                                  or not value.flags.c_contiguous):
                self._set(ref, np.ascontiguousarray(value, dtype=np.float64))
        return self

    # --- the protocol -------------------------------------------------------------------------
    def _to_user(self, rows: np.ndarray) -> np.ndarray:
        return rows.T if self.layout == "columns" else rows

    def _from_user(self, value: object) -> np.ndarray:
        value = np.asarray(value)
        return value.T if self.layout == "columns" and value.ndim == 2 else value

    def _forward_user(self, x: np.ndarray) -> object:
        result = call_user(self.forward_fn, x, name=f"{self.label}.forward")
        if result is None and self.output is not None:
            result = getattr(self.obj, self.output, None)
        if result is None:
            raise ValueError(f"{self.label}.forward returned None and stored no output "
                             f"(self.{self.output or 'output'})")
        result, self._cache = split_output(result)
        return result

    def sample(self, row: np.ndarray) -> np.ndarray:
        """One sample as the code takes it: ``(n,)``, or a column ``(n, 1)``."""
        return row.reshape(-1, 1) if self.layout == "columns" else row

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(B, n)`` rows -> ``(B, m)`` rows."""
        self._x = x
        if self.per_sample:
            return np.stack([np.asarray(self._forward_user(self.sample(row)),
                                        dtype=np.float64).reshape(-1) for row in x])
        return self._from_user(self._forward_user(self._to_user(x)))

    def _backward_user(self, grad: np.ndarray, x: np.ndarray) -> object:
        for name, ref in self.grad_refs.items():
            if ref is not None and ref[0] in ("attr", "item"):
                old = self._get(ref)
                if isinstance(old, np.ndarray):  # a fresh zero array: unchanged = not stored
                    self._set(ref, np.zeros_like(old, dtype=np.float64))
                    self._markers[name] = self._get(ref)
        argument = {"grad": (), "input": (x,), "rate": (1.0,),
                    "cache": (self._cache,)}[self.backward_takes]
        before = self.params if self.backward_takes == "rate" else {}
        saved = {name: np.array(value, dtype=np.float64) for name, value in before.items()}
        result = call_user(self.backward_fn, grad, *argument, name=f"{self.label}.backward")
        if result is None and self.grad_input is not None:
            result = getattr(self.obj, self.grad_input, None)
        if result is None:
            raise ValueError(f"{self.label}.backward returned None and stored no input "
                             f"gradient (self.{self.grad_input or 'dinputs'})")
        result, returned = split_output(result)  # dx, or dx, dW, db: the rest by position
        returned = returned if isinstance(returned, tuple) else (returned,)
        if len(returned) != len(self.param_refs):
            returned = (None,) * len(self.param_refs)
        grads = {}
        for name, ref in self.param_refs.items():
            if self.backward_takes == "rate":  # θ ← θ - 1·∂L/∂θ, undone
                grads[name] = saved[name] - np.asarray(self._get(ref), dtype=np.float64)
                self._set(ref, before[name])
                before[name][...] = saved[name]
                continue
            grad_ref = self.grad_refs.get(name)
            value = None if grad_ref is None else self._get(grad_ref)
            marker = self._markers.get(name)
            if value is None or (marker is not None and value is marker and not np.any(marker)):
                value = returned[list(self.param_refs).index(name)]
            grads[name] = None if value is None else np.array(value, dtype=np.float64)
        return result, grads

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``(B, m)`` rows -> ``(B, n)`` rows; fills ``grads`` (None where not stored)."""
        self._markers = {}
        if not self.per_sample:
            result, grads = self._backward_user(self._to_user(grad_out), self._to_user(self._x))
            self._store(grads)
            return self._from_user(result)
        results, total = [], {}
        for row, grad in zip(self._x, grad_out, strict=True):  # forward again: its cache
            self._forward_user(self.sample(row))
            result, grads = self._backward_user(self.sample(grad), self.sample(row))
            result = np.asarray(result, dtype=np.float64)
            results.append(result.reshape(-1) if result.ndim == 2 and 1 in result.shape
                           else result)
            for name, value in grads.items():  # parameter gradients add up over the samples
                total[name] = None if value is None or total.get(name, 0) is None else (
                    total.get(name, 0) + value)
        self._store(total)
        return np.stack(results)

    def _store(self, grads: dict[str, np.ndarray | None]) -> None:
        self._grads = grads
        self.unstored = {name for name, value in grads.items() if value is None}


def _reference(obj: object, value: object, what: str) -> Ref:
    if isinstance(value, str):
        if obj is None:
            raise ValueError(f"wrap_layer: {what} {value!r} is an attribute name, which needs "
                             "the layer object as the first argument")
        return ("attr", value)
    if isinstance(value, np.ndarray):
        return ("array", value)
    if callable(value) and what.startswith("grads"):
        return ("call", value)
    raise TypeError(f"wrap_layer: {what} must be an attribute name or an array"
                    f"{' or a zero-argument callable' if what.startswith('grads') else ''}, "
                    f"got {type(value).__name__}")


def _method(obj: object, value: Callable | str, what: str) -> Callable:
    if isinstance(value, str):
        method = getattr(obj, value, None)
        if not callable(method):
            raise ValueError(f"wrap_layer: {type(obj).__name__} has no method {value!r} "
                             f"for {what}")
        return method
    if not callable(value):
        raise TypeError(f"wrap_layer: {what} must be a callable or a method name, got "
                        f"{type(value).__name__}")
    return value


def wrap_layer(obj: object = None, *, forward: Callable | str, backward: Callable | str,
               params: Mapping[str, str | np.ndarray] | None = None,
               grads: Mapping[str, str | Callable[[], np.ndarray]] | None = None,
               layout: str = "rows", per_sample: bool = False) -> WrappedLayer:
    """Map a layer written in any convention onto what ``check_layer`` and ``gradcheck`` call.

    ``forward(x)`` returns the output (or stores ``self.output``); ``backward(grad)``, or
    ``backward(grad, x)``, returns the input gradient (or stores ``self.dinputs``).
    ``params``: parameter name -> attribute name of ``obj`` or the array itself (perturbed
    in place and restored); ``grads``: name -> attribute name or a zero-argument callable
    returning the gradient after ``backward``. ``layout="columns"``: the code takes
    ``(features, B)``.

    >>> import numpy as np
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> stored = {}
    >>> def forward(x):
    ...     stored["x"] = x
    ...     return x @ W
    >>> def backward(g):
    ...     stored["dW"] = stored["x"].T @ g
    ...     return g @ W.T
    >>> layer = wrap_layer(forward=forward, backward=backward, params={"W": W},
    ...                    grads={"W": lambda: stored["dW"]})
    >>> from chainrule.check.layercheck import check_layer
    >>> bool(check_layer(layer, np.array([[0.5, -1.0], [2.0, 1.5]])))
    True
    """
    from chainrule.check.adapters import backward_arguments

    forward_fn = _method(obj, forward, "forward")
    backward_fn = _method(obj, backward, "backward")
    params, grads = dict(params or {}), dict(grads or {})
    missing = set(params) ^ set(grads)
    if missing:
        raise ValueError(f"wrap_layer: params and grads must name the same parameters; "
                         f"only in one of them: {sorted(missing)}")
    return WrappedLayer(
        obj, forward_fn, backward_fn,
        {name: _reference(obj, value, f"params[{name!r}]") for name, value in params.items()},
        {name: _reference(obj, value, f"grads[{name!r}]") for name, value in grads.items()},
        layout=layout, per_sample=per_sample,
        backward_takes=backward_arguments(backward_fn, type(obj).__name__ if obj is not None
                                          else "backward"),
        output="output" if obj is not None else None,
        grad_input="dinputs" if obj is not None else None,
        label=type(obj).__name__ if obj is not None else getattr(forward_fn, "__qualname__",
                                                                 "layer"))
