"""The whole-network gradient check, which points at the wrong layer and entry.

:func:`gradcheck` checks every parameter gradient of a ``Sequential`` (or of a list of layers,
the user's own among them, in any convention ``check_layer`` reads) against numeric
derivatives of the loss (:mod:`chainrule.check.numerical`), and each layer in isolation
(:mod:`chainrule.check.layercheck`) so that a failure is traced to the layer that causes it;
``fast=True`` first compares the slope along one random direction.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np

from chainrule.check.adapters import ConventionError, as_layer, required_positional
from chainrule.check.diagnosis import diagnose_gradient
from chainrule.check.kinks import kinked_rows, straddling_rows
from chainrule.check.layercheck import (
    claimed_jacobian,
    in_parameter_shape,
    layer_rows,
    probe,
    random_direction,
    to_float64,
)
from chainrule.check.losscheck import TARGET_NAMES, UserLoss, as_loss, diagnose_loss
from chainrule.check.numerical import STEP, MixesRowsError, as_float64, numerical_gradient
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Report, Row
from chainrule.check.wrapped import WrappedLayer
from chainrule.nn import layers
from chainrule.nn.losses import Loss
from chainrule.nn.network import Sequential

__all__ = ["gradcheck"]

_BUILT_IN_LAYERS = layers.__name__  # their layers are copied shallowly, see _Float64Copy
_CACHED_MOVES = 1 << 16  # directions up to this many entries are drawn once per shape


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
    :mod:`chainrule.nn.layers` hold only parameters, gradients and the arrays of their last
    forward (rebound, never written into): they are copied shallowly, with parameters and
    gradients that ARE views of ``point`` and ``gradient`` (10x cheaper than ``deepcopy``,
    and nothing to copy per evaluation). Any other layer, a subclass included, and a built-in
    layer with a method replaced on the instance (``layer.backward = MethodType(f, layer)``,
    which a shallow copy would leave bound to the original) is deep-copied and keeps its
    own arrays: ``sync`` copies ``point`` into them, ``gather_gradient`` their gradients out.
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
            built_in = (type(layer).__module__ == _BUILT_IN_LAYERS
                        and not any(callable(value) for value in vars(layer).values()))
            if built_in:
                twin = object.__new__(type(layer))
                twin.__dict__.update(vars(layer))
                twin.params, twin.grads = {}, {}
            elif isinstance(layer, WrappedLayer):  # its params are the user's attributes
                twin = copy.deepcopy(layer).to_float64()
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
            stored = layer.grads[name]  # None: not stored, which the full check names
            self.gradient[where] = 0.0 if stored is None else np.reshape(stored, -1)
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


def gradcheck(model: Sequential | Sequence[object], loss: Loss, X: np.ndarray, y: np.ndarray,
              atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, eps: float | None = None,
              sample: int | None = None, fast: bool = False, directions: int = 1,
              seed: int = 0, *, layout: str = "rows", per_sample: bool = False) -> Report:
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

    ``model`` may also be a list of layers: chainrule's, or your own written in any
    convention ``check_layer`` reads (``self.output``/``self.dinputs``, ``dW``/``db``, ...),
    each adapted at the activations it sees on ``X``. ``loss``, on the last layer's output:
    chainrule's (``SoftmaxCrossEntropy`` for logits), or your own in any convention
    :func:`~chainrule.check.losscheck.check_loss` reads, run on a copy.
    ``layout="columns"``: your layers take ``(features, B)``, and so does ``X``;
    ``per_sample=True``: they take one sample at a time (a column ``(features, 1)`` with
    ``layout="columns"``). The report is in rows.
    """
    X = as_float64("X", X)
    if X.ndim != 2 or X.size == 0:
        expected = "(features, B)" if layout == "columns" else "(B, features)"
        raise ValueError(f"X must be a non-empty batch {expected}, got shape {X.shape}")
    if layout == "columns":
        if isinstance(model, Sequential):
            raise ValueError("layout='columns' is for a list of your own layers; a Sequential "
                             "takes rows (B, features)")
        X = X.T
    copied = _Float64Copy(_network(model, X, layout, per_sample), extra=X if fast else None)
    model = copied.model
    if directions < 1:
        raise ValueError(f"directions must be >= 1, got {directions}")
    loss = as_loss(loss)
    loss_name = loss.label if isinstance(loss, UserLoss) else type(loss).__name__
    title = (f"gradcheck: {len(model.layers)} layers, {loss_name}, batch {len(X)} (float64)")
    notes = []
    if fast:
        row = _directional_row(copied, loss, X, y, directions, seed, atol, rtol, eps)
        if row.passed:
            return Report(title + ", fast: random directional slopes", [row])
        notes.append(f"fast check failed (max rel err {row.max_rel_error:.2e}); the full "
                     "per-entry check below localises it")
    rng = np.random.default_rng(seed)
    activations = _forward_all(model, X)
    straddling = straddling_rows(model.layers, activations, eps)
    kinked, kinked_layers = kinked_rows(model.layers, activations, eps)
    if (straddling | kinked).any() and not (straddling | kinked).all():
        if straddling.any():
            notes.append(f"{int(straddling.sum())} of {len(straddling)} samples left out: a "
                         "ReLU input within one finite-difference step of the kink at 0, where "
                         "central differences are no derivative")
        if (kinked & ~straddling).any():
            notes.append(f"{int((kinked & ~straddling).sum())} of {len(kinked)} samples left "
                         f"out: an input of {', '.join(kinked_layers)} within one "
                         "finite-difference step of a kink (its one-sided slopes differ), where "
                         "central differences are no derivative")
        keep = ~(straddling | kinked)
        X, y = X[keep], np.asarray(y)[keep]
        activations = _forward_all(model, X)
    loss.forward(activations[-1], y)
    loss_grad = as_float64(f"{loss_name}.backward()", loss.backward())
    model.backward(loss_grad.copy())
    network_grads = {key: None if grad is None else np.array(grad, dtype=np.float64)
                     for key, grad in model.named_grads()}
    outputs = activations[-1]
    direction = random_direction(rng, outputs.shape)
    loss_row = Row(f"loss {loss_name} ∂L/∂output", loss_grad,
                   numerical_gradient(lambda out: float(loss.forward(out, y)), outputs, eps),
                   atol, rtol, probe=probe(
                       # direction bound now: the loop below reuses the name
                       lambda t, direction=direction: float(
                           loss.forward(outputs + t * direction, y)),
                       np.sum(loss_grad * direction)))
    if not loss_row.passed:
        loss_row.diagnosis = diagnose_loss(loss_grad, loss_row.numeric, outputs, y)
    upstream = loss_row.numeric  # numeric ∂L/∂(output of the layer being checked)
    per_layer: list[list[Row]] = []
    for index in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[index]
        label = f"layer {index} ({_name(layer)})"
        grad_out = rng.standard_normal(activations[index + 1].shape)
        try:
            rows, jacobian, extra = layer_rows(layer, activations[index], grad_out, label,
                                                index, upstream, sample, rng, atol, rtol, eps)
        except MixesRowsError as error:
            raise MixesRowsError(
                f"{error}; gradcheck chains the layers' per-row Jacobians, which it has none "
                f"of. Check it alone: cr.check_layer(layer, x) takes layers that mix rows") \
                from None
        for name, (entries, positions, numeric) in extra.items():
            shape = layer.params[name].shape
            stored = network_grads[f"{index}.{name}"]
            stored, problem = ((None, f"backward did not store the gradient of {name}")
                               if stored is None else in_parameter_shape(stored, shape, name))
            full = np.zeros(shape) if problem else stored
            claimed = full if positions is None else full.reshape(-1)[entries]
            direction = random_direction(rng, shape)
            row = Row(f"network ∂L/∂{index}.{name}", claimed, numeric, atol, rtol, index,
                      positions, probe=probe(
                          _loss_along(model, loss, X, y, layer.params[name], direction),
                          np.sum(full * direction)), problem=problem or None)
            if not row.passed:
                row.diagnosis = diagnose_gradient(claimed, numeric, len(X))
            rows.append(row)
        for row in rows:
            row.diagnosis = [dataclasses.replace(item, where=label) for item in row.diagnosis]
        if rows[0].diagnosis:
            _note_jacobian(notes, label, layer, activations[index], jacobian)
        per_layer.insert(0, rows)
        upstream = np.einsum("bi,bij->bj", upstream, jacobian)
    rows = [row for layer_rows in per_layer for row in layer_rows] + [loss_row]
    if isinstance(loss, UserLoss):
        notes.extend(loss.notes)
    return _traced_report(title, rows, per_layer, loss_row, notes)


def _network(model: Sequential | Sequence[object], X: np.ndarray, layout: str,
             per_sample: bool) -> Sequential:
    """``model``; or, for a list of layers, a ``Sequential`` of copies of them, each layer of
    the user's own adapted (``as_layer``) at the activations it sees on ``X`` ``(B, n)``."""
    if isinstance(model, Sequential):
        return model
    if not isinstance(model, list | tuple) or not model:
        raise TypeError("model must be a Sequential or a non-empty list of layers, got "
                        f"{type(model).__name__}")
    adapted = []
    x = X
    for index, layer in enumerate(model):
        if isinstance(layer, type):
            raise TypeError(f"layer {index} is the class {layer.__name__}; pass an instance: "
                            f"{layer.__name__}(...)")
        if not isinstance(layer, layers.Layer):
            _refuse_a_loss(layer, index)
            try:
                layer = as_layer(layer, x.T if layout == "columns" else x, layout, per_sample)
            except ConventionError as error:
                raise ConventionError(f"layer {index}: {error}") from None
        adapted.append(copy.deepcopy(layer))  # the user's layers are never run
        x = as_float64(f"layer {index} ({_name(layer)}) output", adapted[-1].forward(x))
    return Sequential._of_any(adapted)


def _refuse_a_loss(layer: object, index: int) -> None:
    """A user's loss in the list of layers (``forward(inputs, y_true)``) gets one line."""
    forward = getattr(layer, "forward", None)
    arguments = required_positional(forward) if callable(forward) else []
    if len(arguments) >= 2 and arguments[1].lower() in TARGET_NAMES:
        raise ValueError(
            f"layer {index} ({type(layer).__name__}) takes {', '.join(arguments)} in forward: "
            "a loss, not a layer. Leave it out of the list and pass it as the loss: "
            f"cr.gradcheck(layers, {type(layer).__name__}(...), X, y)")


def _name(layer: object) -> str:
    """The class name a report shows for a layer: the user's for a wrapped one."""
    return layer.label if isinstance(layer, WrappedLayer) else type(layer).__name__


def _forward_all(model: Sequential, X: np.ndarray) -> list[np.ndarray]:
    """``[X, layer 0 output, layer 1 output, ...]``, each layer caching its forward."""
    activations = [X]
    for index, layer in enumerate(model.layers):
        activations.append(as_float64(f"layer {index} output", layer.forward(activations[-1])))
    return activations


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
        return Report(title, rows, failing, label, notes, failing_layers=isolated)
    if not loss_row.passed:
        return Report(title, rows, None, loss_row.name, notes)
    if any(not row.passed for row in rows):
        notes.append("every layer and the loss pass in isolation: the network's backward "
                     "does not chain them correctly")
        return Report(title, rows, None, "network backward", notes)
    return Report(title, rows, None, None, notes)
