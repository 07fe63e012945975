"""What to change for each catalogue mistake: the correct formula and one line of NumPy.

:func:`fix_for` combines the mistake's own advice with the formula of the function it was
seen in (softmax, log-softmax, sigmoid, tanh, ReLU) or of the parameter (``dW = x.T @ g``),
and points at ``chainrule explain`` where a derivation exists.
"""

from __future__ import annotations

__all__ = ["FORMULAS", "fix_for"]

# The correct derivative of each recognised function, in the layer's own terms.
FORMULAS = {
    "softmax": "∂a_i/∂z_j = a_i(δ_ij - a_j) at the output a: `J = np.diag(a) - np.outer(a, a)`, "
               "or as the VJP `dz = a * (g - (g * a).sum(axis=1, keepdims=True))`",
    "log_softmax": "∂y_i/∂z_j = δ_ij - p_j with p = exp(y): "
                   "`dz = g - np.exp(y) * g.sum(axis=1, keepdims=True)`",
    "sigmoid": "σ'(z) = s(1 - s) with s = σ(z) the output: `dz = g * s * (1 - s)`",
    "tanh": "tanh'(z) = 1 - a² with a = tanh(z) the output: `dz = g * (1 - a ** 2)`",
    "relu": "relu'(z) = 1 where z > 0, else 0: `dz = g * (z > 0)`",
}
_EXPLAINED = {"softmax", "log_softmax"}
_EXPLAIN = ("derivation with your numbers: `chainrule explain --logits 1.75 1.75 --target 0 1`")
# Sigmoid and Dense layers (their parameters) are worked through in `chainrule explain --network`.
_WALKED_THROUGH = {"sigmoid"}
_NETWORK = "worked through with numbers: `chainrule explain --network`"

_ADVICE = {
    "transposed": "J[i, j] is ∂y_i/∂x_j (row = output, column = input); a gradient has the shape "
                  "of what it differentiates",
    "evaluated_at_input": "compute the derivative from the output a = f(z) (keep it from "
                          "forward), not from z",
    "diagonal_overwritten": "the diagonal (i = j) and the off-diagonal (i ≠ j) have different "
                            "formulas: assign them in separate branches (`if i == j: ... "
                            "else: ...`)",
    "diagonal_only": "add the cross terms ∂y_i/∂x_j, i ≠ j",
    "cross_terms_missing": "fill the off-diagonal entries (the cross terms) too",
    "sign_flipped": "remove the extra minus: backward returns +∂L/∂x; the minus belongs to the "
                    "update step `W -= lr * dW`",
    "scaled": "remove the constant factor (a stray 2, 0.5 or 1/n)",
    "missing_batch_mean": "the loss is a mean over the batch, so its gradient is divided by B "
                          "once, in the loss: `grad = (A - T) / len(A)`",
    "averaged_in_layer": "a layer's backward sums over the batch; divide by B only once, in "
                         "the loss (`(A - T) / len(A)`), and remove the `/ B` from the layer",
    "returned_jacobian": "backward returns the vector-Jacobian product g·J of shape (B, n_in), "
                         "not the Jacobians: `dx = np.einsum('bi,bij->bj', g, J)`",
    "fused_shortcut": "`A - T` is the gradient of softmax + cross-entropy with respect to the "
                      "logits, right only in a fused layer that skips the loss's backward "
                      "(like `cr.SoftmaxCrossEntropy`); a standalone softmax must send the "
                      "upstream g through its Jacobian",
    "shortcut_in_loss": "a loss on probabilities returns `-T / A / len(A)` (cross-entropy, "
                        "mean over the batch); or let the loss take the logits, with softmax "
                        "inside it, and then `(A - T) / len(A)` is right "
                        "(`cr.SoftmaxCrossEntropy`)",
    "reduction_without_keepdims": "reduce along the row with `keepdims=True` so the result is "
                                  "(B, 1) and broadcasts across each row: "
                                  "`s = (g * a).sum(axis=1, keepdims=True)` (likewise "
                                  "`z.max(axis=1, keepdims=True)`)",
    "grads_not_stored": "store the gradient on the layer in backward",
    "rows_ignored": "use every row of the batch (a sum or mean over axis 0), not only row 0: "
                    "e.g. `loss = -np.sum(T * np.log(A)) / len(A)`",
    "off_diagonal_sign": "the cross terms are -a_i a_j, not +a_i a_j",
    "output_instead_of_derivative": "multiply the upstream gradient by the activation's "
                                    "derivative, not by the activation itself",
}

# Mistakes whose fix is the family's formula, written in full.
_WITH_FORMULA = {"transposed", "evaluated_at_input", "diagonal_overwritten", "diagonal_only",
                 "cross_terms_missing", "sign_flipped", "scaled", "returned_jacobian",
                 "fused_shortcut", "off_diagonal_sign", "output_instead_of_derivative"}


def _parameter_formula(parameter: str) -> str:
    """The gradient of a parameter of ``y = x @ W + b`` (the common case), in its name."""
    bias = parameter.lower().startswith("b")
    if bias:
        return f"for y = x @ W + {parameter}: `d{parameter} = g.sum(axis=0)`"
    return f"for y = x @ {parameter} + b: `d{parameter} = x.T @ g` (shape of {parameter})"


def fix_for(identifier: str, family: str | None = None, parameter: str | None = None) -> str:
    """The fix for ``identifier``: advice, then the formula of ``family`` or ``parameter``.

    >>> fix_for("off_diagonal_sign", "softmax").split("; ")[0]
    'the cross terms are -a_i a_j, not +a_i a_j'
    """
    parts = [_ADVICE[identifier]]
    if identifier == "fused_shortcut":
        family = "softmax"
    if identifier == "grads_not_stored" and parameter is not None:
        parts.append(f"e.g. `self.d{parameter} = ...` (chainrule reads d{parameter}, "
                     f"grad_{parameter}, {parameter}_grad or grads[{parameter!r}]); "
                     + _parameter_formula(parameter))
    elif family in FORMULAS and identifier in _WITH_FORMULA:
        parts.append(FORMULAS[family])
    elif parameter is not None and identifier in ("transposed", "scaled", "averaged_in_layer",
                                                   "sign_flipped"):
        parts.append(_parameter_formula(parameter))
    if family in _EXPLAINED:
        parts.append(_EXPLAIN)
    elif family in _WALKED_THROUGH or parameter is not None:
        parts.append(_NETWORK)
    return "; ".join(parts)
