"""The catalogue of classic backprop mistakes, and naming the ones a wrong derivative shows.

A failing Jacobian or gradient is compared with wrong versions of the correct one
(transposed, evaluated at the input, diagonal overwritten, ...); the matches are returned
as :class:`~chainrule.check.report.Diagnosis` entries with a stable ``identifier`` from
``CATALOGUE``. The checks themselves live in :mod:`chainrule.check`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from chainrule.check.fixes import fix_for
from chainrule.check.report import DEFAULT_RTOL, Diagnosis, relative_error

__all__ = ["CATALOGUE", "diagnose_gradient", "diagnose_jacobian", "identify_family", "named"]

CATALOGUE: dict[str, str] = {
    "transposed": "∂y_j/∂x_i was returned instead of ∂y_i/∂x_j (the Jacobian is transposed)",
    "evaluated_at_input": "a formula written in terms of the output (softmax a, sigmoid σ) was "
                          "evaluated at the input z instead of at the output a = f(z)",
    "diagonal_overwritten": "the diagonal holds the off-diagonal formula (e.g. -a_i a_j for "
                            "i = j) instead of its own (a_i (1 - a_i))",
    "diagonal_only": "only the element-wise derivative (the diagonal) was written; the cross "
                     "terms ∂y_i/∂x_j, i ≠ j, are missing",
    "cross_terms_missing": "the off-diagonal entries are 0: the cross terms ∂y_i/∂x_j, i ≠ j, "
                           "are missing",
    "sign_flipped": "the derivative has the wrong sign",
    "scaled": "the derivative is off by a constant factor",
    "missing_batch_mean": "the gradient is summed over the batch where the loss averages it "
                          "(too large by the batch size)",
    "averaged_in_layer": "the gradient is divided by the batch size inside the layer (too "
                         "small by the batch size; only the loss averages)",
    "returned_jacobian": "backward returned per-sample Jacobians (B, n_out, n_in) instead of "
                         "the vector-Jacobian product (B, n_in)",
    "fused_shortcut": "the softmax backward returns output - upstream (the softmax + "
                      "cross-entropy shortcut A - T) where the upstream gradient must go "
                      "through the Jacobian",
    "shortcut_in_loss": "the loss's backward returns A - T (the gradient of softmax and "
                        "cross-entropy together, with respect to the logits) but the loss takes "
                        "the probabilities A: its own gradient is -T / A",
    "reduction_without_keepdims": "a row reduction without keepdims broadcasts along the wrong "
                                  "axis: right at B = 1, wrong or crashing at other batch sizes",
    "grads_not_stored": "backward computes a parameter gradient but never stores it",
    "rows_ignored": "the function ignores whole rows of the batch (their numeric derivative is "
                    "0, e.g. a loss that uses only output[0])",
    "off_diagonal_sign": "the cross terms are +a_i a_j instead of -a_i a_j",
    "output_instead_of_derivative": "the upstream gradient is multiplied by the activation's "
                                    "output instead of its derivative (σ·g for sigmoid, "
                                    "relu(z)·g for ReLU)",
}


def named(identifier: str, detail: str = "", family: str | None = None,
          parameter: str | None = None, part: str = "all") -> Diagnosis:
    """The catalogue entry ``identifier`` as a :class:`Diagnosis`, with its fix."""
    return Diagnosis(identifier, CATALOGUE[identifier], part, detail,
                     fix_for(identifier, family, parameter))

# A candidate mistake "matches" when it reproduces the claimed values to this precision
# (numeric references carry ~1e-9 relative error in float64; user code may be float32).
_MATCH_RTOL = 1e-4
_MATCH_ATOL = 1e-7


def _matches(claimed: np.ndarray, candidate: np.ndarray, scale: float) -> bool:
    tolerance = _MATCH_RTOL * np.maximum(np.abs(claimed), np.abs(candidate)) + _MATCH_ATOL * scale
    return bool(np.all(np.abs(claimed - candidate) <= tolerance))


def _fitted_factor(claimed: np.ndarray, candidate: np.ndarray) -> float | None:
    """Least-squares ``s`` with ``claimed ≈ s · candidate``; None when either is 0 (a zero
    claim is no scaling of anything)."""
    norm = float(np.sum(candidate * candidate))
    if norm == 0:
        return None
    factor = float(np.sum(claimed * candidate)) / norm
    return None if abs(factor) < 1e-6 else factor


def _scale_tags(factor: float, batch_size: int | None) -> list[tuple[str, str]]:
    """Tags for ``claimed = factor · correct``: nothing, sign, batch mean or plain scale."""
    if abs(factor - 1) < 1e-3:
        return []
    if abs(factor + 1) < 1e-3:
        return [("sign_flipped", "")]
    if batch_size is not None and batch_size > 1 and abs(factor / batch_size - 1) < 1e-3:
        return [("missing_batch_mean", f"factor {factor:.6g} = batch size {batch_size}")]
    if batch_size is not None and batch_size > 1 and abs(factor * batch_size - 1) < 1e-3:
        return [("averaged_in_layer", f"factor {factor:.6g} = 1 / batch size {batch_size}")]
    return [("scaled", f"factor {factor:.6g}")]


def diagnose_gradient(claimed: np.ndarray, numeric: np.ndarray,
                      batch_size: int | None = None,
                      parameter: str | None = None) -> list[Diagnosis]:
    """Name the catalogue mistakes that turn ``numeric`` into ``claimed`` (same shape).

    Candidates: ``-n`` (sign_flipped), ``s·n`` (scaled; missing_batch_mean when
    ``s = batch_size``, averaged_in_layer when ``s = 1 / batch_size``), ``nᵀ`` for square
    2-D gradients (transposed), and rows of ``n`` that are all 0 where the claim is not
    (rows_ignored). ``parameter`` names the parameter in the fix (``dW = x.T @ g``).
    """
    claimed = np.asarray(claimed, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(float(np.max(np.abs(numeric), initial=0)), float(np.max(np.abs(claimed),
                                                                        initial=0)))
    if scale == 0:
        return []
    tags: list[tuple[str, str]] = []
    factor = _fitted_factor(claimed, numeric)
    if factor is not None and _matches(claimed, factor * numeric, scale):
        tags = _scale_tags(factor, batch_size)
    elif (numeric.ndim == 2 and numeric.shape[0] == numeric.shape[1]
          and not _matches(numeric, numeric.T, scale) and _matches(claimed, numeric.T, scale)):
        tags = [("transposed", "")]
    elif numeric.ndim >= 2 and len(numeric) > 1:
        tags = _ignored_rows(claimed, numeric, scale)
    return [named(name, detail, parameter=parameter) for name, detail in tags]


def _ignored_rows(claimed: np.ndarray, numeric: np.ndarray, scale: float) -> list[tuple[str, str]]:
    """``rows_ignored`` when whole rows of ``numeric`` are 0 but not of ``claimed``."""
    flat_numeric = np.abs(numeric.reshape(len(numeric), -1))
    flat_claimed = np.abs(claimed.reshape(len(claimed), -1))
    dead = (flat_numeric.max(axis=1) <= _MATCH_ATOL * scale) & (flat_claimed.max(axis=1) > 0)
    if not dead.any() or dead.all():
        return []
    rows = np.flatnonzero(dead).tolist()
    shown = ", ".join(str(row) for row in rows[:8]) + (", ..." if len(rows) > 8 else "")
    return [("rows_ignored", f"rows {shown} of {len(numeric)} do not affect the result")]


@dataclass(frozen=True)
class _Family:
    """A Jacobian family ``J_ij = diag(u)_i if i = j else off(u)_ij`` in terms of ``u``.

    ``variable(y)`` maps the output ``y = f(x)`` to the ``u`` the formula is written in
    (softmax and sigmoid: the output itself; log-softmax: the probabilities ``exp(y)``).
    """

    name: str
    variable: Callable[[np.ndarray], np.ndarray]
    diagonal: Callable[[np.ndarray], np.ndarray]
    off_diagonal: Callable[[np.ndarray], np.ndarray]


def _zeros_square(u: np.ndarray) -> np.ndarray:
    return np.zeros((*u.shape, u.shape[-1]))


_FAMILIES = (
    _Family("softmax", lambda y: y, lambda u: u * (1 - u),
            lambda u: -u[..., :, None] * u[..., None, :]),
    _Family("log_softmax", np.exp, lambda u: 1 - u,
            lambda u: np.broadcast_to(-u[..., None, :], (*u.shape, u.shape[-1]))),
    _Family("sigmoid", lambda y: y, lambda u: u * (1 - u), _zeros_square),
    _Family("tanh", lambda y: y, lambda u: 1 - u * u, _zeros_square),
    _Family("relu", lambda y: y, lambda u: (u > 0).astype(np.float64), _zeros_square),
)


def _assemble(diagonal: np.ndarray, off_diagonal: np.ndarray) -> np.ndarray:
    jacobian = np.array(off_diagonal, dtype=np.float64)
    np.einsum("...ii->...i", jacobian)[...] = diagonal
    return jacobian


def identify_family(numeric: np.ndarray, y: np.ndarray, scale: float) -> _Family | None:
    for family in _FAMILIES:
        u = family.variable(y)
        if _matches(numeric, _assemble(family.diagonal(u), family.off_diagonal(u)), scale):
            return family
    return None


def diagnose_jacobian(claimed: np.ndarray, numeric: np.ndarray, x: np.ndarray,
                      y: np.ndarray, batch_size: int | None = None) -> list[Diagnosis]:
    """Name the catalogue mistakes (and pairs of them) that reproduce ``claimed``.

    Shapes: ``claimed``/``numeric`` ``(m, n)`` or per-row ``(B, m, n)``; ``x`` the input
    ``(n,)``/``(B, n)``, ``y = f(x)``. When ``numeric`` is recognised as the Jacobian of
    softmax, log-softmax, sigmoid, tanh or ReLU, the diagonal and the off-diagonal are judged
    separately against their formula evaluated at the output (right) or at the input
    (``evaluated_at_input``), the off-diagonal formula on the diagonal
    (``diagonal_overwritten``), missing cross terms, cross terms of the wrong sign
    (``off_diagonal_sign``) and, for element-wise functions, the output on the diagonal
    (``output_instead_of_derivative``); every candidate is also tried negated, transposed and
    scaled (by ``batch_size``: ``averaged_in_layer``). The simplest explanation wins.

    >>> z = np.array([1.75, 1.75])
    >>> numeric = np.array([[0.25, -0.25], [-0.25, 0.25]])
    >>> claimed = np.array([[-1.3125, -3.0625], [-3.0625, -1.3125]])  # softmax' at z
    >>> [d.identifier for d in diagnose_jacobian(claimed, numeric, z, np.array([0.5, 0.5]))]
    ['evaluated_at_input']
    """
    claimed = np.asarray(claimed, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    scale = max(float(np.max(np.abs(numeric), initial=0)), float(np.max(np.abs(claimed),
                                                                        initial=0)))
    if scale == 0 or claimed.shape != numeric.shape:
        return []
    square = numeric.shape[-1] == numeric.shape[-2]
    family = identify_family(numeric, y, scale) if square and x.shape == y.shape else None
    # (tags of the diagonal, values) and (tags of the off-diagonal, values) to combine.
    if family is None:
        diagonals: list[tuple[tuple[str, ...], np.ndarray | None]] = [((), None)]
        off_diagonals: list[tuple[tuple[str, ...], np.ndarray]] = [((), numeric)]
    else:
        at_output, at_input = family.variable(y), x
        diagonals = [((), family.diagonal(at_output)),
                     (("evaluated_at_input",), family.diagonal(at_input))]
        off_diagonals = [((), family.off_diagonal(at_output)),
                         (("evaluated_at_input",), family.off_diagonal(at_input))]
        if np.any(family.off_diagonal(at_output)):
            overwritten = np.einsum("...ii->...i", family.off_diagonal(at_output))
            overwritten_at_input = np.einsum("...ii->...i", family.off_diagonal(at_input))
            diagonals += [(("diagonal_overwritten",), overwritten),
                          (("diagonal_overwritten", "evaluated_at_input"), overwritten_at_input)]
            off_diagonals += [(("no_cross_terms",), np.zeros_like(numeric)),
                              (("off_diagonal_sign",), -family.off_diagonal(at_output))]
        else:
            diagonals.append((("output_instead_of_derivative",), y))
    elementwise = family is not None and not np.any(family.off_diagonal(family.variable(y)))
    best: list[tuple[str, str, str]] | None = None
    for diagonal_tags, diagonal in diagonals:
        for off_tags, off_diagonal in off_diagonals:
            candidate = off_diagonal if diagonal is None else _assemble(diagonal, off_diagonal)
            variant = _name_parts(diagonal_tags, off_tags, elementwise)
            for transform in _transforms(claimed, candidate, scale, not variant, batch_size):
                if best is None or len(variant) + len(transform) < len(best):
                    best = variant + transform
    if best is None:
        return []
    wrong = relative_error(claimed, numeric) > DEFAULT_RTOL
    on_diagonal = np.zeros(wrong.shape, dtype=bool)
    if square:
        np.einsum("...ii->...i", on_diagonal)[...] = True
    counts = {"all": int(wrong.sum()), "diagonal": int((wrong & on_diagonal).sum()),
              "off-diagonal": int((wrong & ~on_diagonal).sum())}
    family_name = None if family is None else family.name
    return [named(name, detail or f"explains {counts[part]}/{counts[part]} wrong "
                                  f"{'' if part == 'all' else part + ' '}entries",
                  family_name, part=part)
            for name, part, detail in best]


def _transforms(claimed: np.ndarray, candidate: np.ndarray, scale: float,
                allow_scaling: bool,
                batch_size: int | None = None) -> list[list[tuple[str, str, str]]]:
    """Whole-matrix transforms of ``candidate`` that reproduce ``claimed``, as tag lists.

    Scaling by a fitted factor is only tried on the correct matrix: combined with a variant
    it explains too much (at a symmetric point every constant diagonal is a multiple of
    every other).
    """
    if _matches(claimed, candidate, scale):
        return [[]]
    found = []
    factor = _fitted_factor(claimed, candidate)
    if factor is not None and _matches(claimed, factor * candidate, scale):
        tags = _scale_tags(factor, batch_size)
        if allow_scaling or all(name == "sign_flipped" for name, _ in tags):
            found.append([(name, "all", detail) for name, detail in tags])
    transposed = np.swapaxes(candidate, -1, -2)
    if (transposed.shape == claimed.shape and not _matches(candidate, transposed, scale)
            and _matches(claimed, transposed, scale)):
        found.append([("transposed", "all", "")])
    return found


def _name_parts(diagonal_tags: Sequence[str], off_tags: Sequence[str],
                elementwise: bool) -> list[tuple[str, str, str]]:
    """Merge per-part tags into ``(identifier, part, "")``: a tag in both parts applies to all."""
    named = []
    if "no_cross_terms" in off_tags:
        only_elementwise = set(diagonal_tags) <= {"evaluated_at_input"}
        named.append(("diagonal_only", "all", "") if only_elementwise
                     else ("cross_terms_missing", "off-diagonal", ""))
        off_tags = [tag for tag in off_tags if tag != "no_cross_terms"]
    for tag in dict.fromkeys([*diagonal_tags, *off_tags]):
        in_diagonal, in_off = tag in diagonal_tags, tag in off_tags
        if elementwise or in_diagonal == in_off:
            named.append((tag, "all", ""))
        else:
            named.append((tag, "diagonal" if in_diagonal else "off-diagonal", ""))
    return named


