"""A user's own derivative code, loaded from ``FILE.py:NAME`` and checked.

What ``chainrule check-jacobian``, ``check-layer`` and ``check-loss`` run: :func:`load_object`
imports the user's file (``NAME`` may be ``Class.method``), :func:`check_jacobian_of` compares
their Jacobian with that of ``softmax``, ``log_softmax``, ``sigmoid``, ``tanh`` or ``relu``
(:data:`REFERENCES`), :func:`check_layer_of` builds their layer class and checks it, and
:func:`check_loss_of` their loss.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chainrule.check.calls import UserCodeError, call_user
from chainrule.check.functions import check_jacobian
from chainrule.check.layercheck import check_layer
from chainrule.check.losscheck import check_loss
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Report
from chainrule.nn.functional import log_softmax, sigmoid, softmax

__all__ = ["REFERENCES", "check_jacobian_of", "check_layer_of", "check_loss_of", "load_function",
           "load_object"]


# Reference functions for check-jacobian, all row-wise along the last axis.
REFERENCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
}


def _points(shape: int | tuple, seed: int) -> np.ndarray:
    """Random points ~1.5·N(0, 1), kept 0.1 away from 0 (the ReLU kink)."""
    z = 1.5 * np.random.default_rng(seed).standard_normal(shape)
    return np.sign(z) * (0.1 + np.abs(z))


def check_jacobian_of(jacobian_fn: Callable[[np.ndarray], np.ndarray], of: str, size: int = 4,
                      batch: int | None = None, takes: str = "input", seed: int = 0,
                      atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                      elementwise: bool = False) -> Report:
    """Check a user's Jacobian of a reference function (``of``: a key of ``REFERENCES``).

    ``jacobian_fn`` receives random pre-activations ``z`` (``takes="input"``) or the
    activations ``f(z)`` (``takes="output"``): a vector ``(size,)``, or a batch
    ``(batch, size)`` returning per-row Jacobians (``elementwise=True``: an element-wise
    derivative of ``z``'s shape). Inputs stay 0.1 away from 0, the ReLU kink. When the
    verdict is ``evaluated_at_input`` and the function passes given ``f(z)``, a note says so.
    """
    if of not in REFERENCES:
        raise ValueError(f"of must be one of {sorted(REFERENCES)}, got {of!r}")
    if takes not in ("input", "output"):
        raise ValueError(f"takes must be 'input' or 'output', got {takes!r}")
    if size < 1 or (batch is not None and batch < 1):
        raise ValueError(f"size and batch must be >= 1, got {size} and {batch}")
    function = REFERENCES[of]
    z = _points(size if batch is None else (batch, size), seed)
    name = getattr(jacobian_fn, "__name__", "jacobian_fn")

    def given_output(point: np.ndarray) -> np.ndarray:
        return call_user(jacobian_fn, function(point), name=name)

    claimed = jacobian_fn if takes == "input" else given_output
    report = check_jacobian(function, claimed, z, atol, rtol, seed=seed, elementwise=elementwise)
    report.title = (f"check-jacobian: {name} vs the Jacobian of {of} at z {z.shape} "
                    f"(given {'z' if takes == 'input' else f'{of}(z)'})")
    if takes == "input" and any(item.identifier == "evaluated_at_input"
                                for item in report.diagnosis):
        if check_jacobian(function, given_output, z, atol, rtol, seed=seed,
                          elementwise=elementwise).passed:
            report.notes.append(f"{name} is right when given the output {of}(z): rerun with "
                                f"--takes output, or call it on {of}(z) in your code")
    return report


def check_layer_of(layer_class: type, n_in: int, arguments: dict | None = None,
                   batch: int | None = None, layout: str = "rows", per_sample: bool = False,
                   seed: int = 0) -> Report:
    """Build ``layer_class(**arguments)`` and check it at random inputs of width ``n_in``.

    ``batch`` rows (default: one different from ``n_in``); ``layout="columns"`` passes
    ``(n_in, B)``. Inputs stay 0.1 away from 0, the ReLU kink.
    """
    _at_least_one(("--in", n_in), ("--batch", batch))
    name = getattr(layer_class, "__name__", str(layer_class))
    layer = _build(layer_class, arguments)
    rows = batch if batch is not None else (5 if n_in != 5 else 6)
    x = _points((rows, n_in), seed)
    report = check_layer(layer, x.T if layout == "columns" else x, layout=layout,
                         per_sample=per_sample, seed=seed)
    report.title = (f"check-layer: {name}({_arguments(arguments)}) at x "
                    f"{x.T.shape if layout == 'columns' else x.shape}"
                    f"{' (columns)' if layout == 'columns' else ''}")
    return report


def _at_least_one(*options: tuple[str, int | None]) -> None:
    """A ValueError naming the first option given below 1 (None: not given)."""
    for option, value in options:
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")


def _build(cls: Callable, arguments: dict | None) -> object:
    """``cls(**arguments)``; arguments it cannot take are a ValueError naming ``--args``."""
    name = getattr(cls, "__name__", str(cls))
    arguments = arguments or {}
    try:
        signature = inspect.signature(cls)
    except ValueError:  # no signature to check: the call will say what is wrong
        signature = None
    try:
        if signature is not None:
            signature.bind(**arguments)
    except TypeError as error:
        example = ", ".join(f'"{key}": ...' for key, parameter in signature.parameters.items()
                            if parameter.default is parameter.empty
                            and parameter.kind is not parameter.VAR_POSITIONAL
                            and parameter.kind is not parameter.VAR_KEYWORD)
        raise ValueError(f"cannot build {name}({_arguments(arguments)}): {error}; give its "
                         f"arguments as --args '{{{example}}}'") from None
    return call_user(functools.partial(cls, **arguments), name=f"{name}()")


OUTPUTS = ("probabilities", "logits", "values")
TARGETS = ("labels", "onehot", "values")


def check_loss_of(loss: object, classes: int, arguments: dict | None = None,
                  batch: int | None = None, output: str = "probabilities",
                  targets: str = "labels", gradient: Callable | None = None,
                  seed: int = 0) -> Report:
    """Check a user's loss, a class (built from ``arguments``) or a function, at a random
    ``(batch, classes)`` output: ``output`` is ``"probabilities"`` (softmax rows),
    ``"logits"`` or ``"values"`` (both ~1.5·N(0, 1)); ``targets`` ``"labels"`` (integers
    below ``classes``), ``"onehot"`` or ``"values"`` (of the output's shape)."""
    if output not in OUTPUTS or targets not in TARGETS:
        raise ValueError(f"output must be one of {OUTPUTS} and targets one of {TARGETS}, got "
                         f"{output!r} and {targets!r}")
    _at_least_one(("--classes", classes), ("--batch", batch))
    name = getattr(loss, "__name__", type(loss).__name__)
    if isinstance(loss, type):
        loss = _build(loss, arguments)
    elif arguments:
        raise ValueError(f"--args builds a class, and {name} is a function")
    rows = batch if batch is not None else (5 if classes != 5 else 6)
    logits = _points((rows, classes), seed)
    labels = np.random.default_rng([seed, 1]).integers(0, classes, rows)
    at = softmax(logits) if output == "probabilities" else logits
    y = {"labels": labels, "onehot": np.eye(classes)[labels],
         "values": _points((rows, classes), seed + 1)}[targets]
    try:
        report = check_loss(loss, at, y, gradient=gradient, seed=seed)
    except UserCodeError as error:
        if targets != "labels":
            raise
        raise UserCodeError(f"{error} (the targets were class labels {y.shape}; for a loss on "
                            "values pass --targets values, or --targets onehot)",
                            error.location, error.function, error.shapes) from error.__cause__
    built = f"({_arguments(arguments)})" if arguments else ""
    report.title = (f"check-loss: {name}{built} at {output} {at.shape}, targets {targets} "
                    f"{y.shape}")
    return report


def _arguments(arguments: dict | None) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in (arguments or {}).items())


def _import(module_name: str) -> object:
    """Import ``module_name`` (a ``.py`` path or a module); an exception in it is the user's."""
    path = Path(module_name)
    as_file = module_name.endswith(".py") or path.is_file()
    if as_file and not path.is_file():
        raise FileNotFoundError(f"no such file: {module_name}")
    # The file's folder (or the working directory) is importable while it loads, so that
    # it can import its neighbours.
    folder = str(path.resolve().parent if as_file else Path.cwd())
    sys.path.insert(0, folder)
    try:
        if not as_file:
            return importlib.import_module(module_name)
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        call_user(lambda: module_spec.loader.exec_module(module),
                  name=f"importing {module_name}")
        return module
    finally:
        sys.path.remove(folder)


def _describe(value: object) -> str:
    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    return f"a {kind}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def _chain(spec: str) -> list[object]:
    """The module and each object along ``NAME`` of ``"MODULE:NAME"`` (``Class.method``)."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:FUNCTION, MODULE:Class.method or MODULE:CLASS "
                         f"(MODULE a .py path or a module), got {spec!r}")
    chain = [_import(module_name)]
    where = module_name
    for part in attribute.split("."):
        if not hasattr(chain[-1], part):
            kind = "function" if len(chain) == 1 and "." not in attribute else "attribute"
            raise ValueError(f"{where} has no {kind} {part!r}")
        chain.append(getattr(chain[-1], part))
        where = f"{where}{':' if len(chain) == 2 else '.'}{part}"
    return chain


def load_object(spec: str) -> object:
    """``"path/to/file.py:name"`` (``name`` may be ``Class.attribute``) -> that object."""
    return _chain(spec)[-1]


def load_function(spec: str) -> Callable:
    """``"file.py:name"`` or ``"file.py:Class.method"`` -> the named callable.

    For ``Class.method`` of a regular (not static) method, the class is built with no
    arguments and its bound method returned.
    """
    chain = _chain(spec)
    function, owner = chain[-1], chain[-2]
    method = spec.rpartition(":")[2].rpartition(".")[2]
    if (len(chain) > 2 and isinstance(owner, type)
            and not isinstance(owner.__dict__.get(method), staticmethod | classmethod)):
        function = getattr(call_user(owner, name=f"{owner.__name__}()"), method)
    if not callable(function):
        raise ValueError(f"{spec} is {_describe(function)}, not a function: name a function "
                         "(or Class.method) that takes z and returns the Jacobian")
    return function
