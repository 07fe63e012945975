"""Checking one layer: its ``backward`` against central differences of its own ``forward``.

Works for any object following the layer protocol of :mod:`chainrule.nn.layers`. The input
gradient comes from per-row Jacobians with every row perturbed at once; parameters are
differenced an entry at a time, or a row at a time when an entry ``[r, j]`` moves only
output column ``j`` (verified, see :func:`_column_aligned_contractions`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np

from chainrule.check.adapters import as_layer
from chainrule.check.calls import UserCodeError
from chainrule.check.contractions import parameter_contractions
from chainrule.check.diagnosis import diagnose_gradient, diagnose_jacobian, identify_family, named
from chainrule.check.kinks import kinked_at
from chainrule.check.numerical import (
    MixesRowsError,
    as_float64,
    numerical_gradient,
    rowwise_jacobian,
    steps_for,
)
from chainrule.check.report import DEFAULT_ATOL, DEFAULT_RTOL, Diagnosis, Report, Row

__all__ = ["check_layer", "claimed_jacobian", "layer_rows", "probe", "random_direction",
           "to_float64"]


def random_direction(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """A random normal direction of ``shape`` scaled to root-mean-square 1."""
    direction = rng.standard_normal(shape)
    return direction / max(float(np.sqrt(np.mean(direction * direction))), 1e-300)


def to_float64(layer: object) -> object:
    """Give ``layer`` (a copy: checks never touch the user's) float64 parameters."""
    for name, value in layer.params.items():
        if value.dtype != np.float64:
            layer.params[name] = value.astype(np.float64)
            layer.grads[name] = np.zeros_like(layer.params[name])
    return layer


def _refuse_constant_upstream(grad_out: np.ndarray) -> None:
    if grad_out.shape[1] > 1 and np.allclose(grad_out, grad_out[:, :1], rtol=0, atol=0):
        raise ValueError(
            "grad_out is constant along the classes (like all-ones, or backpropagating "
            "y.sum()): it lies in the null space of the softmax Jacobian (its rows sum to "
            "0), so ANY softmax backward whose Jacobian rows sum to zero would pass. Use "
            "grad_out=None for a random upstream gradient")


def claimed_jacobian(layer: object, x: np.ndarray, width: int) -> np.ndarray:
    """The per-row Jacobian ``(B, m, n)`` that ``backward`` implies: row i = backward(e_i)."""
    layer.forward(x)
    rows = []
    for i in range(width):
        basis = np.zeros((len(x), width))
        basis[:, i] = 1.0
        rows.append(np.array(layer.backward(basis), dtype=np.float64))
    return np.stack(rows, axis=1)


def probe(scalar: Callable[[float], float], slope: float) -> tuple[Callable[[float], float],
                                                                  float]:
    """A row's ``probe`` for the step-size sweep: ``φ(t)`` and its claimed slope at 0."""
    return scalar, float(slope)


def _returned_jacobian_row(layer: object, x: np.ndarray, y: np.ndarray, grad_in: np.ndarray,
                           jacobian: np.ndarray, label: str, index: int | None, atol: float,
                           rtol: float) -> Row | None:
    """A failed input-gradient row when ``backward`` returned ``(B, m, n)`` Jacobians."""
    if grad_in.shape != jacobian.shape or grad_in.shape == x.shape:
        return None
    shape = "×".join(str(size) for size in grad_in.shape)
    return Row(f"{label} input gradient", grad_in, jacobian, atol, rtol, index,
               problem=f"backward returned per-sample Jacobians ({shape}); the chain rule "
                       f"needs the vector-Jacobian product g·J of the input's shape {x.shape}",
               diagnosis=[named("returned_jacobian", family=_family_of(jacobian, x, y))])


def _family_of(jacobian: np.ndarray, x: np.ndarray, y: np.ndarray) -> str | None:
    """The recognised function (softmax, sigmoid, ...) whose Jacobian this is, if any."""
    scale = float(np.max(np.abs(jacobian), initial=0))
    if scale == 0 or x.shape != y.shape:
        return None
    family = identify_family(jacobian, y, scale)
    return None if family is None else family.name


def _diagnose_input(layer: object, x: np.ndarray, y: np.ndarray, grad_out: np.ndarray,
                    grad_in: np.ndarray, jacobian: np.ndarray) -> list[Diagnosis]:
    """Name the mistake of a wrong input gradient: the fused shortcut, else from the
    Jacobian that ``backward`` implies."""
    if x.shape == y.shape and np.allclose(grad_in, y - grad_out, rtol=1e-6, atol=1e-9):
        return [named("fused_shortcut", "backward(g) returned output - g")]
    claimed = claimed_jacobian(layer, x, y.shape[1])
    return diagnose_jacobian(claimed, jacobian, x, y, len(x))


def _jacobian_at_shape(forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, width: int,
                       eps: float | None) -> np.ndarray:
    """Per-row Jacobians ``(B, m, n)`` calling ``forward`` only at ``x``'s own shape: feature
    ``j`` of every row moved at once, two calls per feature (for code that works at some
    batch sizes only, where :func:`rowwise_jacobian`'s stacked calls fail)."""
    jacobian = np.empty((len(x), width, x.shape[1]))
    steps = steps_for(x, eps)
    for j in range(x.shape[1]):
        plus, minus = x.copy(), x.copy()
        plus[:, j] += steps[:, j]
        minus[:, j] -= steps[:, j]
        change = as_float64("output", forward(plus)) - as_float64("output", forward(minus))
        jacobian[:, :, j] = change / (plus[:, j] - minus[:, j])[:, None]
    return jacobian


def _gradient_or_problem(layer: object, name: str, label: str) -> tuple[np.ndarray | None, str]:
    """The stored gradient of ``name`` (float64), or None and why it is missing."""
    grads = layer.grads
    value = grads.get(name) if isinstance(grads, dict) else None
    if value is None:
        return None, (f"backward did not store the gradient of {name} (it is unset after "
                      "backward)")
    return as_float64(f"{label} grads[{name!r}]", value), ""


def in_parameter_shape(gradient: np.ndarray, shape: tuple[int, ...],
                       name: str) -> tuple[np.ndarray, str]:
    """``(gradient, "")`` in the parameter's ``shape`` (one of the same size in another shape,
    e.g. ``db`` (1, n) kept for ``b`` (n,), reshaped), or ``(gradient, why it does not fit)``."""
    if gradient.shape == shape:
        return gradient, ""
    if gradient.size == math.prod(shape):
        return gradient.reshape(shape), ""
    return gradient, (f"the stored gradient of {name} has shape {gradient.shape}, the "
                      f"parameter {shape}")


def layer_rows(layer: object, x: np.ndarray, grad_out: np.ndarray, label: str,
               index: int | None, extra_upstream: np.ndarray | None, sample: int | None,
               rng: np.random.Generator, atol: float, rtol: float,
               eps: float | None, mixing: bool = False) -> tuple[list[Row], np.ndarray, dict]:
    """Rows of one layer checked in isolation with upstream ``grad_out``.

    Returns the rows, the numeric per-row Jacobian ``(B, m, n)`` and, when
    ``extra_upstream`` is given, for each parameter ``(entries, positions, numeric
    contraction with extra_upstream)``, e.g. the numeric ``∂L/∂θ`` of a whole network.
    ``mixing=True``: a layer that mixes the rows of the batch (batch statistics), which has
    no per-row Jacobian (None is returned), has its input gradient checked against central
    differences of ``Σ grad_out ⊙ forward(x)`` over the whole batch instead of refused.
    """
    y = as_float64(f"{label} output", layer.forward(x))
    grad_in = as_float64(f"{label} backward", layer.backward(grad_out))
    stored = {name: _gradient_or_problem(layer, name, label) for name in layer.params}
    try:
        jacobian = rowwise_jacobian(layer.forward, x, eps, f"{label}.forward")
    except UserCodeError:  # the stacked batch has a shape the code cannot take
        jacobian = _jacobian_at_shape(layer.forward, x, y.shape[1], eps)
    except MixesRowsError:
        if not mixing:
            raise
        return _whole_batch_rows(layer, x, grad_out, grad_in, stored, label, index, sample,
                                 rng, atol, rtol, eps), None, {}
    jacobian_row = _returned_jacobian_row(layer, x, y, grad_in, jacobian, label, index, atol,
                                          rtol)
    if jacobian_row is None and grad_in.shape != x.shape:
        if grad_in.T.shape != x.shape:
            raise ValueError(f"{label}: backward returned shape {grad_in.shape}, expected the "
                             f"input's {x.shape}")
        jacobian_row = Row(f"{label} input gradient", grad_in.T,
                           np.einsum("bi,bij->bj", grad_out, jacobian), atol, rtol, index,
                           problem=f"backward returned the input gradient transposed, "
                                   f"{grad_in.shape} for an input {x.shape}",
                           diagnosis=[named("transposed", "the whole input gradient")])
    direction = random_direction(rng, x.shape)
    rows = [jacobian_row or Row(
        f"{label} input gradient", grad_in, np.einsum("bi,bij->bj", grad_out, jacobian), atol,
        rtol, index, probe=probe(
            lambda t: float(np.sum(grad_out * layer.forward(x + t * direction))),
            np.sum(grad_in * direction)))]
    if not rows[0].passed and not rows[0].diagnosis:
        rows[0].diagnosis = _diagnose_input(layer, x, y, grad_out, grad_in, jacobian)
    extra = {}
    upstream = grad_out[None] if extra_upstream is None else np.stack([grad_out, extra_upstream])
    rows += _parameter_rows(layer, x, grad_out, upstream, stored, label, index, sample, rng,
                            atol, rtol, eps, extra if extra_upstream is not None else None)
    return rows, jacobian, extra


def _whole_batch_rows(layer: object, x: np.ndarray, grad_out: np.ndarray, grad_in: np.ndarray,
                      stored: dict, label: str, index: int | None, sample: int | None,
                      rng: np.random.Generator, atol: float, rtol: float,
                      eps: float | None) -> list[Row]:
    """The rows of a layer that mixes rows: its input gradient against central differences
    of ``φ(x) = Σ grad_out ⊙ forward(x)``, every entry moved in the whole batch."""
    def phi(moved: np.ndarray) -> float:
        return float(np.sum(grad_out * as_float64(f"{label} output", layer.forward(moved))))

    numeric = numerical_gradient(phi, x, eps)
    problem = None
    if grad_in.shape != x.shape:
        problem = f"backward returned shape {grad_in.shape}, not the input's {x.shape}"
    direction = random_direction(rng, x.shape)
    row = Row(f"{label} input gradient (whole batch: it mixes rows)",
              np.zeros(x.shape) if problem else grad_in, numeric,
              atol, rtol, index, problem=problem,
              probe=None if problem else probe(lambda t: phi(x + t * direction),
                                               np.sum(grad_in * direction)))
    if not row.passed and not problem:
        row.diagnosis = diagnose_gradient(grad_in, numeric, len(x))
    return [row, *_parameter_rows(layer, x, grad_out, grad_out[None], stored, label, index,
                                  sample, rng, atol, rtol, eps, None)]


def _parameter_rows(layer: object, x: np.ndarray, grad_out: np.ndarray, upstream: np.ndarray,
                    stored: dict, label: str, index: int | None, sample: int | None,
                    rng: np.random.Generator, atol: float, rtol: float, eps: float | None,
                    extra: dict | None) -> list[Row]:
    """One row per parameter: its stored gradient against ``upstream[0]`` contracted with
    its numeric derivative (``extra``, when given, gets ``upstream[1]``'s contraction)."""
    rows = []
    for name, param in layer.params.items():
        if sample is None or sample >= param.size:
            entries = np.arange(param.size)
        else:
            entries = np.sort(rng.choice(param.size, size=sample, replace=False))
        numeric = parameter_contractions(layer, x, name, upstream, entries, eps)
        positions = None if len(entries) == param.size else np.stack(
            np.unravel_index(entries, param.shape), axis=1)
        gradient, problem = stored[name]
        if gradient is not None:
            gradient, problem = in_parameter_shape(gradient, param.shape, name)
        full = gradient if not problem else np.zeros(param.shape)
        shaped = _shaper(param.shape, positions is None)
        param_direction = random_direction(rng, param.shape)
        row = Row(f"{label} ∂/∂{name}", shaped(full.reshape(-1)[entries]), shaped(numeric[0]),
                  atol, rtol, index, positions,
                  probe=probe(_parameter_scalar(layer, x, name, grad_out, param_direction),
                              np.sum(full * param_direction)),
                  problem=problem or None)
        if gradient is None and np.any(numeric[0]):
            row.diagnosis = [named("grads_not_stored", parameter=name)]
        elif not row.passed and not problem:
            row.diagnosis = diagnose_gradient(row.analytic, row.numeric, len(x), name)
        rows.append(row)
        if extra is not None:
            extra[name] = (entries, positions, shaped(numeric[1]))
    return rows


def _shaper(shape: tuple, full: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Reshape flat values to the parameter's shape when every entry was checked."""
    return (lambda values: values.reshape(shape)) if full else (lambda values: values)


def _parameter_scalar(layer: object, x: np.ndarray, name: str, grad_out: np.ndarray,
                      direction: np.ndarray) -> Callable[[float], float]:
    """``φ(t) = Σ grad_out ⊙ forward(x)`` with ``params[name]`` moved by ``t·direction``."""
    def scalar(t: float) -> float:
        param = layer.params[name]
        saved = param.copy()
        param += t * direction
        try:
            return float(np.sum(grad_out * layer.forward(x)))
        finally:
            param[...] = saved
    return scalar


def _upstream(grad_out: np.ndarray | None, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if grad_out is None:
        return rng.standard_normal(shape)
    grad_out = as_float64("grad_out", grad_out)
    if grad_out.shape != shape:
        raise ValueError(f"grad_out has shape {grad_out.shape}; the layer's output is {shape}")
    _refuse_constant_upstream(grad_out)
    return grad_out


def _batch_sizes(batch: int, n_in: int, n_out: int) -> list[int]:
    """The given batch size, then 1, one different from every width, and the output width."""
    other = next(size for size in range(2, batch + n_in + n_out + 3)
                 if size not in (n_in, n_out, batch))
    return list(dict.fromkeys([batch, 1, other, n_out]))


def _at_batch(x: np.ndarray, size: int) -> np.ndarray:
    """``size`` rows of ``x``, cycling through them (the checked points stay the user's)."""
    return x[np.arange(size) % len(x)]


def _crash_row(label: str, size: int, error: Exception) -> Row:
    """A failed row for a batch size at which the user's code raised (or returned something
    that cannot be checked, a ValueError)."""
    cause = error.__cause__
    problem = str(error) if not isinstance(error, UserCodeError) else (
        f"{error.function} raised {type(cause).__name__}: {cause} — at {error.location}, "
        f"called with shapes {error.shapes}")
    return Row(f"{label} at B={size}", np.empty(0), np.empty(0), problem=problem)


def _one_shape(layer: object, x: np.ndarray, grad_out: np.ndarray | None, label: str,
               sample: int | None, seed: int, atol: float, rtol: float,
               eps: float | None) -> list[Row]:
    # Not default_rng(seed) itself: an x drawn from that same stream would make g = x, and
    # x.T @ g symmetric, hiding a transposed parameter gradient.
    rng = np.random.default_rng([seed, 1])
    copied = copy.deepcopy(layer)
    grad_out = _upstream(grad_out, np.shape(copied.forward(x)), rng)
    rows, _, _ = layer_rows(copied, x, grad_out, label, None, None, sample, rng, atol, rtol,
                            eps, mixing=True)
    return rows


Outcome = list[Row] | Exception  # the rows at one batch size, or why there are none


def _keepdims_suspect(outcomes: dict[int, Outcome], widths: set[int]) -> set:
    """Batch sizes whose failure looks like a row reduction without keepdims: fine at B = 1,
    crashing on broadcasting elsewhere or wrong where B equals a feature width."""
    one = outcomes.get(1)
    if not isinstance(one, list) or not all(row.passed for row in one):
        return set()
    suspects = set()
    for size, outcome in outcomes.items():
        if isinstance(outcome, Exception):
            if "broadcast" in str(outcome.__cause__) or size in widths:
                suspects.add(size)
        elif size in widths and not all(row.passed for row in outcome):
            suspects.add(size)
    return suspects


def check_layer(layer: object, x: np.ndarray, grad_out: np.ndarray | None = None,
                atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, eps: float | None = None,
                sample: int | None = None, seed: int = 0, *, layout: str = "rows",
                per_sample: bool = False, batch_sizes: Sequence[int] | None = None) -> Report:
    """Check ``layer.backward`` (input and every parameter gradient) against its ``forward``.

    ``layer``: a chainrule layer, a layer object in any common convention (see
    :mod:`chainrule.check.adapters`) or a :func:`~chainrule.check.wrapped.wrap_layer`. With
    upstream ``g`` (random, seeded, unless ``grad_out`` is given) the numeric input gradient
    is ``g_b · J_b`` with per-row Jacobians ``J`` from central differences of ``forward``,
    and the numeric ``∂/∂θ_p = Σ g ⊙ ∂forward(x)/∂θ_p``. ``sample=K`` checks K random
    entries per parameter. Besides ``x``'s batch size B the layer runs at B = 1, a B
    different from every width and B = the output width (rows cycled from ``x``;
    ``batch_sizes`` to choose): a failure only at some of them is reported for those.
    ``layout="columns"``: ``x``, outputs and gradients are ``(features, B)``;
    ``per_sample=True``: the code takes one sample at a time, ``(features,)`` (a column
    ``(features, 1)`` with ``layout="columns"``). Rows of ``x`` with an input within one
    step of a kink of the layer (ReLU's at 0) are left out, with a note. The layer is
    copied (float64), never modified; an exception in it raises
    :class:`~chainrule.check.calls.UserCodeError` (if it raises at every batch size).

    >>> from chainrule.nn.layers import Softmax
    >>> check_layer(Softmax(), np.array([[1.75, 1.75]])).passed
    True
    """
    if isinstance(layer, type):
        raise TypeError(f"layer is the class {layer.__name__}; pass an instance: "
                        f"check_layer({layer.__name__}(...), x)")
    x = as_float64("x", x)
    if per_sample and x.ndim == 1:  # one sample
        x = x[:, None] if layout == "columns" else x[None]
    if x.ndim != 2 or x.size == 0:
        expected = "(features, B)" if layout == "columns" else "(B, features)"
        one = ("" if x.ndim != 1 or not x.size else
               f"; for one sample pass x[{':, None' if layout == 'columns' else 'None'}] "
               "(a batch of 1), or per_sample=True if your code takes one sample at a time")
        raise ValueError(f"x must be a non-empty batch {expected}, got shape {x.shape}{one}")
    wrapped = copy.deepcopy(as_layer(layer, x, layout, per_sample)).to_float64()
    rows_x = x.T if layout == "columns" else x
    if grad_out is not None and layout == "columns":
        grad_out = np.asarray(grad_out).T
    label = wrapped.label
    try:
        n_out = np.shape(copy.deepcopy(wrapped).forward(rows_x[:1]))[-1]
    except UserCodeError:  # fails at B = 1: the rows at other batch sizes will say how
        n_out = np.shape(copy.deepcopy(wrapped).forward(rows_x))[-1]
    if grad_out is not None:  # a wrong grad_out is the caller's error, at once
        grad_out = _upstream(grad_out, (len(rows_x), n_out), np.random.default_rng(seed))
    kinked = (kinked_at(wrapped, rows_x, eps) if n_out == rows_x.shape[1]
              else np.zeros(len(rows_x), dtype=bool))
    left_out = []
    if kinked.all():
        left_out.append(f"every row of x has an input within one finite-difference step of a "
                        f"kink of {label} (its one-sided slopes differ), where central "
                        "differences are no derivative: move x off it to check the layer")
    elif kinked.any():
        rows_x = rows_x[~kinked]
        grad_out = None if grad_out is None else grad_out[~kinked]
        left_out.append(f"{int(kinked.sum())} of {len(kinked)} rows of x left out: an input "
                        f"within one finite-difference step of a kink of {label} (its "
                        "one-sided slopes differ), where central differences are no derivative")
    sizes = list(batch_sizes) if batch_sizes is not None else (
        [len(rows_x)] if per_sample else _batch_sizes(len(rows_x), rows_x.shape[1], n_out))
    outcomes: dict[int, Outcome] = {}
    for position, size in enumerate(sizes):
        try:
            outcomes[size] = _one_shape(wrapped, _at_batch(rows_x, size),
                                        grad_out if position == 0 else None, label, sample,
                                        seed + position, atol, rtol, eps)
        except (UserCodeError, ValueError) as error:
            outcomes[size] = error
    if isinstance(outcomes[sizes[0]], Exception) and all(
            isinstance(outcome, Exception) for outcome in outcomes.values()):
        raise outcomes[sizes[0]]
    rows, notes = _combine(outcomes, sizes, label, _keepdims_suspect(
        outcomes, {rows_x.shape[1], n_out}))
    notes[:0] = left_out
    if layout == "columns":
        for row in rows:
            if row.analytic.ndim == 2 and row.name.endswith("input gradient"):
                row.analytic, row.numeric = row.analytic.T, row.numeric.T
    if wrapped.unchecked:
        notes.append(f"not checked, no gradient found beside them: {', '.join(wrapped.unchecked)}"
                     " (parameters? map them: wrap_layer(..., params=..., grads=...))")
    failed = [row for row in rows if not row.passed]
    shown = repr(layer) if type(layer).__repr__ is not object.__repr__ else label
    return Report(f"check_layer: {shown} at x {x.shape}", rows,
                  cause=failed[0].name if failed else None, notes=notes)


def _combine(outcomes: dict[int, Outcome], sizes: list[int], label: str,
             suspects: set[int]) -> tuple[list[Row], list[str]]:
    """The main batch size's rows, then the failures seen only at other batch sizes."""
    main = outcomes[sizes[0]]
    rows: list[Row] = []
    main_failed = isinstance(main, Exception) or not all(row.passed for row in main)
    for size in sizes:
        outcome = outcomes[size]
        if isinstance(outcome, Exception):
            found = [_crash_row(label, size, outcome)]
        elif size == sizes[0] or isinstance(main, Exception):
            found = outcome if size == sizes[0] else [
                Row(f"{row.name} at B={size}", row.analytic, row.numeric, row.atol, row.rtol,
                    row.layer, row.positions, row.diagnosis, row.probe, row.problem)
                for row in outcome]
        elif not main_failed:
            found = [Row(f"{row.name} at B={size}", row.analytic, row.numeric, row.atol,
                         row.rtol, row.layer, row.positions, row.diagnosis, row.probe,
                         row.problem) for row in outcome if not row.passed]
        else:
            found = []
        if size in suspects:
            for row in found:
                if not row.passed:
                    row.diagnosis = [named("reduction_without_keepdims",
                                           f"passes at B = 1, fails at B = {size}")]
        rows += found
    passing = [size for size in sizes if isinstance(outcomes[size], list)
               and all(row.passed for row in outcomes[size])]
    notes = [f"checked at batch sizes {sizes}; passed at {passing}"] if len(sizes) > 1 else []
    return rows, notes
