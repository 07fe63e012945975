"""Gradient checking that points at the wrong layer and entry, and names the mistake.

Numeric derivatives (:mod:`chainrule.numerical`) are central differences
``(f(x + h) - f(x - h)) / 2h`` in float64 with ``h = ∛ε · max(1, |x|)`` (ε the float64
machine epsilon) unless ``eps`` is given. Analytic and numeric values are compared with the
relative error of :mod:`chainrule.report`: ``|a - n| / max(|a|, |n|, atol / rtol) <= rtol``,
defaults ``rtol = 1e-5``, ``atol = 1e-8``. Failures are named from the catalogue of
:mod:`chainrule.diagnosis`; single layers are checked by :mod:`chainrule.layercheck`.

>>> import numpy as np
>>> from chainrule.functional import softmax, softmax_jacobian
>>> z = np.array([1.75, 1.75])
>>> check_jacobian(softmax, lambda z: softmax_jacobian(softmax(z)), z).passed
True
>>> check_jacobian(softmax, softmax_jacobian, z).diagnosis[0].identifier  # at z, not at a
'evaluated_at_input'
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chainrule import datasets, layers
from chainrule.diagnosis import diagnose_gradient, diagnose_jacobian
from chainrule.functional import log_softmax, sigmoid, softmax
from chainrule.layercheck import (
    check_layer,
    claimed_jacobian,
    layer_rows,
    probe,
    random_direction,
    to_float64,
)
from chainrule.losses import Loss, SoftmaxCrossEntropy
from chainrule.network import Sequential, mlp
from chainrule.numerical import (
    STEP,
    as_float64,
    numerical_gradient,
    numerical_jacobian,
    rowwise_jacobian,
)
from chainrule.preprocessing import Scaler
from chainrule.report import DEFAULT_ATOL, DEFAULT_RTOL, Report, Row
from chainrule.training import encode_labels

__all__ = [
    "REFERENCES",
    "Report",
    "check_gradient",
    "check_jacobian",
    "check_jacobian_of",
    "check_layer",
    "check_network",
    "gradcheck",
    "load_function",
    "numerical_gradient",
    "numerical_jacobian",
]

_BUILT_IN_LAYERS = layers.__name__  # their layers are copied shallowly, see _Float64Copy
_CACHED_MOVES = 1 << 16  # directions up to this many entries are drawn once per shape


def check_jacobian(f: Callable[[np.ndarray], np.ndarray],
                   jacobian_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                   atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                   eps: float | None = None, seed: int = 0) -> Report:
    """Check a claimed Jacobian ``jacobian_fn(x)`` against central differences of ``f``.

    ``x`` ``(n,)``: ``f(x)`` ``(m,)`` and the claim ``(m, n)``. ``x`` ``(B, n)``: ``f`` is
    applied row-wise, ``f(x)`` is ``(B, m)`` and the claim holds per-row Jacobians
    ``(B, m, n)``. On failure the report's ``diagnosis`` names the matching classic mistakes.

    >>> from chainrule.functional import softmax
    >>> def softmax_prime(a):  # only the diagonal: the cross terms are missing
    ...     return np.diag(a * (1 - a))
    >>> report = check_jacobian(softmax, lambda z: softmax_prime(softmax(z)), np.array([1.0, 2.0]))
    >>> [d.identifier for d in report.diagnosis]
    ['diagonal_only']
    """
    x = as_float64("x", x)
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"x must be a vector (n,) or a batch of rows (B, n), got {x.shape}")
    with np.errstate(all="ignore"):  # a non-finite f(x) gets the clearer error below
        y = as_float64("f(x)", f(x))
    expected = (y.size, x.size) if x.ndim == 1 else (*y.shape, x.shape[1])
    if x.ndim == 2 and (y.ndim != 2 or len(y) != len(x)):
        raise ValueError(f"for a batch x {x.shape}, f must be row-wise and return (B, m); "
                         f"got f(x) of shape {y.shape}")
    claimed = as_float64("jacobian_fn(x)", jacobian_fn(x))
    if claimed.shape != expected:
        kind = "(m, n)" if x.ndim == 1 else "per-row Jacobians (B, m, n)"
        raise ValueError(f"jacobian_fn(x) has shape {claimed.shape}; expected {kind} = "
                         f"{expected} for x {x.shape} and f(x) {y.shape}")
    if x.ndim == 1:
        numeric = numerical_jacobian(f, x, eps).reshape(expected)
    else:
        numeric = rowwise_jacobian(f, x, eps)
    rng = np.random.default_rng(seed)
    upstream, direction = rng.standard_normal(y.shape), random_direction(rng, x.shape)
    # slope of φ(t) = Σ upstream ⊙ f(x + t·direction): Σ_rows upstreamᵀ J direction
    slope = float(np.sum(upstream.reshape(*expected[:-1], 1) * claimed
                         * direction.reshape(*expected[:-2], 1, -1)))
    row = Row("Jacobian", claimed, numeric, atol, rtol,
              probe=(lambda t: float(np.sum(upstream * f(x + t * direction))), slope))
    if not row.passed:
        row.diagnosis = diagnose_jacobian(claimed, numeric, x, y)
    return Report(f"check_jacobian: {getattr(f, '__name__', 'f')} at x {x.shape}", [row],
                  cause=None if row.passed else row.name)


def check_gradient(f: Callable[[np.ndarray], float], grad_fn: Callable[[np.ndarray], np.ndarray],
                   x: np.ndarray, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                   eps: float | None = None, seed: int = 0) -> Report:
    """Check a claimed gradient ``grad_fn(x)`` of a scalar ``f`` against central differences.

    For ``x`` a batch ``(B, ...)`` a gradient ``B`` times too large is diagnosed as
    ``missing_batch_mean`` (summed where the loss averages).

    >>> check_gradient(lambda v: float(np.mean(v ** 2)), lambda v: 2 * v,
    ...                np.ones((4, 2))).diagnosis[0].identifier
    'scaled'
    """
    x = as_float64("x", x)
    value = np.asarray(f(x))
    if value.size != 1:
        raise ValueError(f"f must return a scalar, got shape {value.shape}")
    claimed = as_float64("grad_fn(x)", grad_fn(x))
    if claimed.shape != x.shape:
        raise ValueError(f"grad_fn(x) has shape {claimed.shape}; expected x's shape {x.shape}")
    numeric = numerical_gradient(lambda point: float(f(point)), x, eps)
    direction = random_direction(np.random.default_rng(seed), x.shape)
    row = Row("gradient", claimed, numeric, atol, rtol,
              probe=(lambda t: float(f(x + t * direction)), float(np.sum(claimed * direction))))
    if not row.passed:
        batch = x.shape[0] if x.ndim >= 2 else None
        row.diagnosis = diagnose_gradient(claimed, numeric, batch)
    return Report(f"check_gradient: {getattr(f, '__name__', 'f')} at x {x.shape}", [row],
                  cause=None if row.passed else row.name)


def _random_moves(seed: int, directions: int, size: int) -> np.ndarray:
    """``(directions, size)`` entries uniform in ``[-1, 1)`` from ``default_rng(seed)``.

    Small ones (the common case) are drawn once per ``(seed, directions, size)`` and shared
    read-only: seeding a generator and drawing cost a tenth of the whole fast check.
    """
    if directions * size <= _CACHED_MOVES:
        return _cached_moves(seed, directions, size)
    return _draw_moves(seed, directions, size)


def _draw_moves(seed: int, directions: int, size: int) -> np.ndarray:
    moves = np.random.default_rng(seed).random((directions, size))
    moves *= 2.0
    moves -= 1.0
    return moves


@functools.lru_cache(maxsize=16)
def _cached_moves(seed: int, directions: int, size: int) -> np.ndarray:
    moves = _draw_moves(seed, directions, size)
    moves.flags.writeable = False
    return moves


class _Float64Copy:
    """A float64 copy of a model whose parameters live in one flat vector; the user's model
    is never touched.

    ``point`` holds every parameter, then the entries of ``extra`` (the fast check moves the
    input with the parameters); ``gradient`` is laid out alike. Layers of
    :mod:`chainrule.layers` hold only parameters, gradients and the arrays of their last
    forward (rebound, never written into): they are copied shallowly, with parameters and
    gradients that ARE views of ``point`` and ``gradient`` (10x cheaper than ``deepcopy``,
    and nothing to copy per evaluation). Any other layer, a subclass included, is
    deep-copied and keeps its own arrays: ``sync`` copies ``point`` into them,
    ``gather_gradient`` their gradients out.
    """

    def __init__(self, model: Sequential, extra: np.ndarray | None = None) -> None:
        self.model = object.__new__(type(model))
        self.model.__dict__.update(vars(model))
        self.model.layers = []
        pieces = [value.reshape(-1) for layer in model.layers for value in layer.params.values()]
        self.n_params = sum(piece.size for piece in pieces)
        if extra is not None:
            pieces.append(extra.reshape(-1))
        self.point = np.concatenate(pieces or [np.empty(0)], dtype=np.float64)
        self.gradient = np.zeros(self.point.size)
        self._own: list[tuple[slice, object, str]] = []  # deep-copied layers' parameters
        begin = 0
        for layer in model.layers:
            built_in = type(layer).__module__ == _BUILT_IN_LAYERS
            if built_in:
                twin = object.__new__(type(layer))
                twin.__dict__.update(vars(layer))
                twin.params, twin.grads = {}, {}
            else:
                twin = to_float64(copy.deepcopy(layer))
            for name, value in layer.params.items():
                where = slice(begin, begin + value.size)
                if built_in:
                    twin.params[name] = self.point[where].reshape(value.shape)
                    twin.grads[name] = self.gradient[where].reshape(value.shape)
                else:
                    self._own.append((where, twin, name))
                begin = where.stop
            self.model.layers.append(twin)

    def sync(self) -> None:
        """Copy ``point`` into the parameters of the deep-copied layers."""
        for where, layer, name in self._own:
            layer.params[name][...] = self.point[where].reshape(layer.params[name].shape)

    def gather_gradient(self) -> np.ndarray:
        """``gradient`` after a backward, the deep-copied layers' gradients copied in."""
        for where, layer, name in self._own:
            self.gradient[where] = np.reshape(layer.grads[name], -1)
        return self.gradient


def _directional_row(copied: _Float64Copy, loss: Loss, X: np.ndarray, y: np.ndarray,
                     directions: int, seed: int, atol: float, rtol: float,
                     eps: float | None) -> Row:
    """``dL/dt`` along random directions ``v`` of (every parameter, the input), claimed vs numeric.

    The numeric slope along ``v`` is the central difference of the losses at ``θ ± h·v``.
    The two passes of the first direction also run the backward: the mean ``ḡ`` of their
    gradients equals ``∇L(θ)`` up to ``O(h²)`` (~1e-11), like the central difference itself,
    so no pass at ``θ`` is needed, and the claimed slope along every ``v`` is ``ḡ · v``.
    The input moves too (``copied`` holds it after the parameters), so a wrong
    input gradient of layer 0 (which touches no parameter) still shows. The parameters are
    restored afterwards.
    """
    model, point, n_params = copied.model, copied.point, copied.n_params
    saved = point.copy()
    moves = _random_moves(seed, directions, point.size)
    step = eps if eps is not None else STEP * max(1.0, float(np.maximum.reduce(np.abs(saved))))
    moved_X = point[n_params:].reshape(X.shape)
    grad_X = copied.gradient[n_params:].reshape(X.shape)
    gradient_sum = np.zeros(point.size)  # 2ḡ

    def loss_along(move: np.ndarray, t: float, add_gradient: bool = False) -> float:
        """The loss at ``θ + t·move`` (every entry of ``point`` rewritten: nothing to undo
        between calls); ``add_gradient``: its gradient added to ``2ḡ``."""
        np.multiply(move, t, out=point)
        np.add(point, saved, out=point)
        copied.sync()
        value = float(loss.forward(model.forward(moved_X), y))
        if add_gradient:
            grad_input = model.backward(loss.backward())
            if getattr(grad_input, "shape", None) != X.shape:
                raise ValueError(f"the network's backward returned shape {np.shape(grad_input)},"
                                 f" expected the input's {X.shape}")
            grad_X[...] = grad_input
            np.add(gradient_sum, copied.gather_gradient(), out=gradient_sum)
        return value

    def restore() -> None:
        np.copyto(point, saved)
        copied.sync()

    numeric = np.empty(directions)
    try:
        for index, move in enumerate(moves):
            up = loss_along(move, step, add_gradient=index == 0)
            down = loss_along(move, -step, add_gradient=index == 0)
            numeric[index] = (up - down) / (2 * step)
    finally:
        restore()
    claimed = moves @ gradient_sum
    claimed *= 0.5

    def along_first(t: float) -> float:
        try:
            return loss_along(moves[0], t)
        finally:
            restore()

    return Row(f"directional dL/dt ({directions} random direction{'s' * (directions > 1)})",
               claimed, numeric, atol, rtol, probe=probe(along_first, claimed[0]))


def gradcheck(model: Sequential, loss: Loss, X: np.ndarray, y: np.ndarray,
              atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, eps: float | None = None,
              sample: int | None = None, fast: bool = False, directions: int = 1,
              seed: int = 0) -> Report:
    """Check every gradient of a ``Sequential`` and trace a failure to the layer that causes it.

    Rows: each layer checked in isolation at the activations it actually sees (input
    gradient and parameters, random upstream gradient), the loss's ``∂L/∂output``, and every
    parameter gradient of ``model.backward(loss.backward())`` against the numeric gradient
    of the loss, ``∂L/∂θ = Σ (∂L/∂y_k)_num ⊙ ∂y_k/∂θ`` with ``(∂L/∂y_k)_num`` chained from
    numeric layer Jacobians (no backward involved). A wrong layer corrupts every gradient
    below it; ``failing_layer`` is the one failing in isolation (the last one if several:
    the first the backward pass reaches). ``sample=K``: K random entries per parameter.
    ``fast=True``: the slope along ``directions`` random directions of (all parameters, the
    input) first, like ``torch.autograd.gradcheck(fast_mode=True)``'s random projection; the
    full check runs only if that fails. A projection can miss an error that moves the total
    slope by less than ``rtol`` (e.g. 0.1% in one weight matrix with small gradients).
    The model is copied (float64), never modified.
    """
    X = as_float64("X", X)
    if X.ndim != 2 or X.size == 0:
        raise ValueError(f"X must be a non-empty batch (B, features), got shape {X.shape}")
    copied = _Float64Copy(model, extra=X if fast else None)
    model = copied.model
    if directions < 1:
        raise ValueError(f"directions must be >= 1, got {directions}")
    loss_name = type(loss).__name__
    title = (f"gradcheck: {len(model.layers)} layers, {loss_name}, batch {len(X)} (float64)")
    notes = []
    if fast:
        row = _directional_row(copied, loss, X, y, directions, seed, atol, rtol, eps)
        if row.passed:
            return Report(title + ", fast: random directional slopes", [row])
        notes.append(f"fast check failed (max rel err {row.max_rel_error:.2e}); the full "
                     "per-entry check below localises it")
    rng = np.random.default_rng(seed)
    activations = [X]
    for index, layer in enumerate(model.layers):
        activations.append(as_float64(f"layer {index} output", layer.forward(activations[-1])))
    loss.forward(activations[-1], y)
    loss_grad = as_float64(f"{loss_name}.backward()", loss.backward())
    model.backward(loss_grad.copy())
    network_grads = {key: grad.copy() for key, _, grad in model.named_parameters()}
    outputs = activations[-1]
    direction = random_direction(rng, outputs.shape)
    loss_row = Row(f"loss {loss_name} ∂L/∂output", loss_grad,
                   numerical_gradient(lambda out: float(loss.forward(out, y)), outputs, eps),
                   atol, rtol, probe=probe(
                       lambda t: float(loss.forward(outputs + t * direction, y)),
                       np.sum(loss_grad * direction)))
    if not loss_row.passed:
        loss_row.diagnosis = diagnose_gradient(loss_grad, loss_row.numeric, len(X))
    upstream = loss_row.numeric  # numeric ∂L/∂(output of the layer being checked)
    per_layer: list[list[Row]] = []
    for index in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[index]
        label = f"layer {index} ({type(layer).__name__})"
        grad_out = rng.standard_normal(activations[index + 1].shape)
        rows, jacobian, extra = layer_rows(layer, activations[index], grad_out, label, index,
                                            upstream, sample, rng, atol, rtol, eps)
        for name, (entries, positions, numeric) in extra.items():
            claimed = network_grads[f"{index}.{name}"]
            claimed = claimed if positions is None else claimed.reshape(-1)[entries]
            direction = random_direction(rng, layer.params[name].shape)
            row = Row(f"network ∂L/∂{index}.{name}", claimed, numeric, atol, rtol, index,
                      positions, probe=probe(
                          _loss_along(model, loss, X, y, layer.params[name], direction),
                          np.sum(network_grads[f"{index}.{name}"] * direction)))
            if not row.passed:
                row.diagnosis = diagnose_gradient(claimed, numeric, len(X))
            rows.append(row)
        if rows[0].diagnosis:
            _note_jacobian(notes, label, layer, activations[index], jacobian)
        per_layer.insert(0, rows)
        upstream = np.einsum("bi,bij->bj", upstream, jacobian)
    rows = [row for layer_rows in per_layer for row in layer_rows] + [loss_row]
    return _traced_report(title, rows, per_layer, loss_row, notes)


def _loss_along(model: Sequential, loss: Loss, X: np.ndarray, y: np.ndarray, param: np.ndarray,
                direction: np.ndarray) -> Callable[[float], float]:
    """``φ(t) = loss(model(X), y)`` with ``param`` moved by ``t·direction``."""
    def scalar(t: float) -> float:
        saved = param.copy()
        np.add(saved, t * direction, out=param)
        try:
            return float(loss.forward(model.forward(X), y))
        finally:
            param[...] = saved
    return scalar


def _note_jacobian(notes: list[str], label: str, layer: object, x: np.ndarray,
                   numeric: np.ndarray) -> None:
    """Point at the worst Jacobian entry that the layer's backward implies."""
    claimed = claimed_jacobian(layer, x, numeric.shape[1])
    worst = np.unravel_index(int(np.argmax(np.abs(claimed - numeric))), numeric.shape)
    notes.append(f"{label} Jacobian ∂y_i/∂x_j implied by backward, worst entry "
                 f"[{', '.join(str(int(i)) for i in worst)}] (row, i, j): claimed "
                 f"{claimed[worst]:.6g}, numeric {numeric[worst]:.6g}")


def _traced_report(title: str, rows: list[Row], per_layer: list[list[Row]], loss_row: Row,
                   notes: list[str]) -> Report:
    """Name the cause: the last layer failing in isolation, else the loss, else the wiring."""
    isolated = [index for index, layer_rows in enumerate(per_layer)
                if any(not row.passed for row in layer_rows
                       if not row.name.startswith("network"))]
    if isolated:
        failing = isolated[-1]
        label = per_layer[failing][0].name.removesuffix(" input gradient")
        if len(isolated) > 1:
            notes.append(f"layers {isolated} each fail in isolation; the backward pass "
                         f"reaches layer {failing} first")
        return Report(title, rows, failing, label, notes)
    if not loss_row.passed:
        return Report(title, rows, None, loss_row.name, notes)
    if any(not row.passed for row in rows):
        notes.append("every layer and the loss pass in isolation: the network's backward "
                     "does not chain them correctly")
        return Report(title, rows, None, "network backward", notes)
    return Report(title, rows, None, None, notes)



# Reference functions for check-jacobian, all row-wise along the last axis.
REFERENCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
}


def check_jacobian_of(jacobian_fn: Callable[[np.ndarray], np.ndarray], of: str, size: int = 4,
                      batch: int | None = None, takes: str = "input", seed: int = 0,
                      atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> Report:
    """Check a user's Jacobian of a reference function (``of``: a key of ``REFERENCES``).

    ``jacobian_fn`` receives random pre-activations ``z`` (``takes="input"``) or the
    activations ``f(z)`` (``takes="output"``): a vector ``(size,)``, or a batch
    ``(batch, size)`` returning per-row Jacobians. ReLU inputs stay 0.1 away from the kink.
    """
    if of not in REFERENCES:
        raise ValueError(f"of must be one of {sorted(REFERENCES)}, got {of!r}")
    if takes not in ("input", "output"):
        raise ValueError(f"takes must be 'input' or 'output', got {takes!r}")
    if size < 1 or (batch is not None and batch < 1):
        raise ValueError(f"size and batch must be >= 1, got {size} and {batch}")
    function = REFERENCES[of]
    rng = np.random.default_rng(seed)
    z = 1.5 * rng.standard_normal(size if batch is None else (batch, size))
    if of == "relu":
        z = np.sign(z) * (0.1 + np.abs(z))
    claimed = jacobian_fn if takes == "input" else lambda point: jacobian_fn(function(point))
    report = check_jacobian(function, claimed, z, atol, rtol, seed=seed)
    name = getattr(jacobian_fn, "__name__", "jacobian_fn")
    report.title = (f"check-jacobian: {name} vs the Jacobian of {of} at z {z.shape} "
                    f"(given {'z' if takes == 'input' else f'{of}(z)'})")
    return report


def load_function(spec: str) -> Callable:
    """``"path/to/file.py:name"`` or ``"package.module:name"`` -> the named callable."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:FUNCTION (MODULE a .py path or a module), got {spec!r}")
    path = Path(module_name)
    as_file = module_name.endswith(".py") or path.is_file()
    if as_file and not path.is_file():
        raise FileNotFoundError(f"no such file: {module_name}")
    # The file's folder (or the working directory) is importable while it loads, so that
    # it can import its neighbours.
    folder = str(path.resolve().parent if as_file else Path.cwd())
    sys.path.insert(0, folder)
    try:
        if as_file:
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    finally:
        sys.path.remove(folder)
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{module_name} has no function {attribute!r}")
    return function


def check_network(data: str = "digits", hidden: tuple[int, ...] = (64,),
                  activation: str = "relu", seed: int = 0, batch_size: int = 16,
                  **options: object) -> Report:
    """``gradcheck`` of the ``mlp`` that ``chainrule train`` builds, on a small batch of ``data``.

    Inputs are standardised; ``batch_size`` rows are drawn with ``seed``; ``options`` go to
    :func:`gradcheck` (``sample``, ``fast``, ``atol``, ``rtol``, ``eps``).
    """
    X, y = datasets.load(data)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_classes = len(np.unique(y))
    labels, _ = encode_labels(y, n_classes)
    rows = np.random.default_rng(seed).choice(len(X), size=min(batch_size, len(X)),
                                              replace=False)
    X_batch = Scaler.fit(X, "standard").transform(X)[rows]
    model = mlp(X.shape[1], hidden, n_classes, activation=activation, seed=seed)
    report = gradcheck(model, SoftmaxCrossEntropy(), X_batch, labels[rows], seed=seed,
                       **options)
    report.title += f" — {data}, hidden {list(hidden)} {activation}"
    return report
