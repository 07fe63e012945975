"""Backpropagation written out step by step with the user's own numbers.

``explain_softmax_cross_entropy`` works the softmax + cross-entropy chain rule the long way
(through the C×C Jacobian) and the short way (A - T) and checks both against a numerical
derivative; ``explain_backprop`` does the same for one sample through a whole ``Sequential``:
the table people draw by hand, layer by layer from the output back.
"""

from __future__ import annotations

import numpy as np

from chainrule.explain.derivation import Derivation, Step, format_number
from chainrule.nn.functional import log_softmax, softmax, softmax_jacobian
from chainrule.nn.layers import Dense, Layer, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from chainrule.nn.losses import CrossEntropy, Loss, MSELoss, NLLLoss, SoftmaxCrossEntropy
from chainrule.nn.network import Sequential

__all__ = ["explain_backprop", "explain_softmax_cross_entropy", "loss_for"]

NUMERICAL_STEP = 1e-6  # central-difference step h for the numerical derivative


def explain_softmax_cross_entropy(
    logits: np.typing.ArrayLike,
    target: int | np.typing.ArrayLike,
    precision: int = 6,
    max_full: int = 10,
    row: int | None = None,
) -> Derivation | list[Derivation]:
    """∂E/∂Z for ``A = softmax(Z)``, ``E = -Σ T ln A``, through the Jacobian and by the shortcut.

    ``logits`` Z: ``(C,)``, or a batch ``(B, C)``; ``target``: a class index or a probability
    vector T ``(C,)`` (for every row of a batch), or per row: labels ``(B,)`` (integers) or
    T ``(B, C)``. A batch gives one ``Derivation`` per row (a list; one row: that row's
    ``Derivation``), or row ``row`` alone.
    Steps (keys): ``Z``, ``T``, ``A``, ``E``, ``dE/dA`` = -T/A, ``J`` = diag(A) - A Aᵀ (from
    A, not Z), ``dE/dZ`` = Jᵀ ∂E/∂A, ``A-T``, ``numerical`` (central differences) and the
    checks ``chain=shortcut`` and ``chain=numerical``.

    >>> d = explain_softmax_cross_entropy([1.75, 1.75], 1)
    >>> d["dE/dA"].value, d["dE/dZ"].value
    (array([ 0., -2.]), array([ 0.5, -0.5]))
    >>> [d["A-T"].value for d in explain_softmax_cross_entropy([[2.0, 0.0], [0.0, 0.0]], [0, 1])]
    [array([-0.11920292,  0.11920292]), array([ 0.5, -0.5])]
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 2:
        targets = _row_targets(target, z.shape)
        if row is not None and not -len(z) <= row < len(z):
            raise ValueError(f"row {row} is out of range for {len(z)} rows of logits")
        rows = range(len(z)) if row is None else [row % len(z)]
        derivations = [_explain_row(z[index], targets[index], precision, max_full,
                                    f", row {index} of {len(z)}" if len(z) > 1 else "")
                       for index in rows]
        return derivations[0] if len(derivations) == 1 else derivations
    if row is not None:
        raise ValueError(f"row goes with a batch of logits (B, C), got shape {z.shape}")
    return _explain_row(z, target, precision, max_full, "")


def _row_targets(target: int | np.typing.ArrayLike, shape: tuple[int, int]) -> list:
    """One target per row of logits ``(B, C)``: an index or a vector ``(C,)`` each."""
    n_rows = shape[0]
    t = np.asarray(target)
    if t.ndim == 0:
        return [target] * n_rows
    if t.ndim == 1 and np.issubdtype(t.dtype, np.integer):
        if len(t) != n_rows:
            raise ValueError(f"{len(t)} labels for {n_rows} rows of logits; give one per row "
                             "(or one class index for all)")
        return [int(label) for label in t]
    if t.ndim == 1:
        return [t] * n_rows
    if t.shape != shape:
        raise ValueError(f"targets of shape {t.shape} for logits of shape {shape}; give one "
                         "row of probabilities per row of logits")
    return list(t)


def _explain_row(z: np.ndarray, target: int | np.typing.ArrayLike, precision: int,
                 max_full: int, where: str) -> Derivation:
    """``explain_softmax_cross_entropy`` of one vector of logits; ``where`` ends the title."""
    if z.ndim != 1 or len(z) < 2:
        raise ValueError(f"logits must be a vector of at least 2 classes (C,) or a batch of "
                         f"them (B, C), got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"logits must be finite; entry {int(np.flatnonzero(~np.isfinite(z))[0])}"
                         f" is {z[~np.isfinite(z)][0]}")
    t, label = _target_vector(target, len(z))
    a = softmax(z)
    loss = _cross_entropy(z, t)
    # 0·(-T/A) is 0 where T = 0 even if A underflowed to 0; where T > 0, A is floored at the
    # smallest normal number, as CrossEntropy does, so the value stays finite.
    dloss_da = -np.divide(t, np.maximum(a, np.finfo(a.dtype).tiny), out=np.zeros_like(t),
                          where=t > 0) + 0.0
    jacobian = softmax_jacobian(a)
    chain = jacobian.T @ dloss_da
    shortcut = a - t
    numerical = _numerical_gradient(z, t)
    shortcut_error = float(np.max(np.abs(chain - shortcut)))
    numerical_error = float(np.max(np.abs(chain - numerical)))
    n = len(z)
    described = f"class {label} (one-hot)" if label is not None else "probabilities"
    pitfall = ""
    if n <= max_full:
        wrong = softmax_jacobian(z)
        show = Derivation("", precision=precision).format_value
        with np.errstate(over="ignore", invalid="ignore"):  # huge logits: inf is the answer
            wrong_gradient = wrong.T @ dloss_da
        pitfall = (f"\ncommon slip: the same formula at Z gives {show(wrong)},"
                   f"\nand then ∂E/∂Z = {show(wrong_gradient)}, not A - T")
    underflow = bool(np.any((a < np.finfo(a.dtype).tiny) & (t > 0)))
    steps = [
        Step("Z", "logits", "Z", "Z", z),
        Step("T", f"target: {described}", "T", "T", t),
        Step("A", "softmax", "A = softmax(Z) = exp(Z) / Σ exp(Z)",
             r"A = \operatorname{softmax}(Z) = \frac{e^{Z}}{\sum_j e^{Z_j}}", a),
        Step("E", "cross-entropy loss", "E = -Σ T ln A", r"E = -\sum_i T_i \ln A_i",
             np.float64(loss), note="" if label is None else
             f"one-hot T: E = -ln A_{label} = -ln {format_number(a[label], precision)}"),
        Step("dE/dA", "loss gradient", "∂E/∂A = -T / A",
             r"\frac{\partial E}{\partial A} = -\frac{T}{A}", dloss_da),
        Step("J", "softmax Jacobian", "J = ∂A/∂Z = diag(A) - A Aᵀ",
             r"J = \frac{\partial A}{\partial Z} = \operatorname{diag}(A) - A A^\top", jacobian,
             note="J_ij = A_i (δ_ij - A_j), evaluated at A = softmax(Z), not at Z" + pitfall),
        Step("dE/dZ", "chain rule", "∂E/∂Z = Jᵀ ∂E/∂A",
             r"\frac{\partial E}{\partial Z} = J^\top \frac{\partial E}{\partial A}", chain),
        Step("A-T", "shortcut", "∂E/∂Z = A - T", r"\frac{\partial E}{\partial Z} = A - T",
             shortcut, note="valid because Σ T = 1"),
        Step("numerical", "numerical derivative", "(E(Z + h e_j) - E(Z - h e_j)) / 2h",
             r"\frac{E(Z + h e_j) - E(Z - h e_j)}{2h}", numerical,
             note=f"central differences, h = {NUMERICAL_STEP:g}"),
        Step("chain=shortcut", "check", "max |Jᵀ ∂E/∂A - (A - T)|",
             r"\max_j \left\lvert J^\top \tfrac{\partial E}{\partial A} - (A - T) \right\rvert",
             np.float64(shortcut_error), passed=shortcut_error <= 1e-9,
             note=("A underflows (to 0 or a subnormal) where T > 0, so -T/A cannot be formed in "
                   "floating point: the reason libraries fuse softmax and cross-entropy")
             if underflow else ""),
        Step("chain=numerical", "check", "max |Jᵀ ∂E/∂A - numerical|",
             r"\max_j \left\lvert J^\top \tfrac{\partial E}{\partial A} - \text{numerical} "
             r"\right\rvert",
             np.float64(numerical_error),
             passed=numerical_error <= 1e-6 * (1 + float(np.max(np.abs(z))))),
    ]
    return Derivation(f"Softmax + cross-entropy, step by step: C = {n} classes, "
                      f"target {described}{where}", steps, precision, max_full)


def _target_vector(target: int | np.typing.ArrayLike, n_classes: int) -> tuple[np.ndarray,
                                                                                int | None]:
    """``(T, label)``: a class index becomes one-hot T (label kept); a vector is validated."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= target < n_classes:
            raise ValueError(f"target class {target} is out of range for {n_classes} classes "
                             f"(expected 0..{n_classes - 1})")
        return np.eye(n_classes)[int(target)], int(target)
    t = np.asarray(target, dtype=np.float64)
    if t.shape != (n_classes,):
        raise ValueError(f"target must be a class index or a vector of {n_classes} "
                         f"probabilities, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or abs(t.sum() - 1) > 1e-6:
        raise ValueError(f"target probabilities must be finite, >= 0 and sum to 1; got {t} "
                         f"(sum {t.sum():.6g})")
    one_hot = np.count_nonzero(t) == 1 and t.max() == 1
    return t, int(np.argmax(t)) if one_hot else None


def _cross_entropy(z: np.ndarray, t: np.ndarray) -> float:
    """``-Σ T log softmax(Z)``, stable for any finite Z; 0 ln 0 counts as 0."""
    return float(-np.sum(np.where(t > 0, t * log_softmax(z), 0.0)))


def _numerical_gradient(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Central differences ``(E(Z + h e_j) - E(Z - h e_j)) / 2h`` for every class j."""
    gradient = np.empty_like(z)
    for j in range(len(z)):
        step = np.zeros_like(z)
        step[j] = NUMERICAL_STEP
        gradient[j] = (_cross_entropy(z + step, t) - _cross_entropy(z - step, t)) / (
            2 * NUMERICAL_STEP)
    return gradient


def explain_backprop(
    model: Sequential,
    loss: Loss,
    x: np.typing.ArrayLike,
    target: int | np.typing.ArrayLike,
    precision: int = 4,
    max_full: int = 10,
) -> Derivation:
    """The backpropagation table for ONE sample through ``model``, from the output back.

    ``x``: one RAW input ``(n_in,)``, as ``model.predict`` takes it (the recorded scaling is
    applied; a row of ``model.prepare(X)`` is taken as it is); ``target``: a class index or a
    target vector. With ``h0 = x`` (prepared), ``h(k+1) = layer k (hk)`` and ``δk = ∂E/∂hk``,
    each layer k shows the incoming ``δ(k+1)`` ``(1, n_out)``, its local Jacobian
    ``∂h(k+1)/∂hk`` (the diagonal only for element-wise activations), each parameter gradient
    and the outgoing ``δk`` ``(1, n_in)``.
    Keys: ``h0``.., ``E``, ``"{k}.grad_out"``, ``"{k}.local"``, ``"{k}.W"``, ``"{k}.b"``,
    ``"{k}.grad_in"``, ``check``. The values are computed from the explicit Jacobians, then
    ``model.backward`` is run on the same sample (overwriting its ``grads``) and compared.

    >>> from chainrule import CrossEntropy, mlp
    >>> model = mlp(3, [2], 2, activation="sigmoid", output="softmax", seed=0)
    >>> table = explain_backprop(model, CrossEntropy(), [0.5, -1.0, 2.0], 1)
    >>> bool(np.allclose(table["0.W"].value, model.grads["0.W"])), table.agrees
    (True, True)
    """
    x = np.asanyarray(x)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"explain_backprop: x must be ONE sample of shape (n_in,), got {x.shape}")
    x = model.prepare(x[None, :])[0]
    target_batch = np.asarray(target)[None] if np.ndim(target) <= 1 else np.asarray(target)
    hidden = [x[None, :]]
    steps = [Step("h0", "input", "h0 = x", "h_0 = x", hidden[0], group="forward",
                  note="hk: input of layer k; δk = ∂E/∂hk")]
    for index, layer in enumerate(model.layers):
        hidden.append(layer.forward(hidden[-1]))
        plain, latex = _forward_formula(layer, index)
        steps.append(Step(f"h{index + 1}", f"layer {index}: {layer!r}", plain, latex,
                          hidden[-1], group="forward"))
    n_layers = len(model.layers)
    loss_value = loss.forward(hidden[-1], target_batch)
    delta = np.array(loss.backward(), copy=True)
    steps += _loss_steps(loss, n_layers, loss_value, delta)

    explained: dict[str, np.ndarray] = {}
    for index in range(n_layers - 1, -1, -1):
        layer_steps, delta = _layer_steps(model.layers[index], index, hidden[index],
                                          hidden[index + 1], delta)
        steps += layer_steps
        explained.update({step.key: step.value for step in layer_steps})

    loss.forward(model.forward(x[None, :]), target_batch)
    reference = {"0.grad_in": model.backward(loss.backward()), **model.grads}
    difference = max(float(np.max(np.abs(explained[key] - value)))
                     for key, value in reference.items())
    scale = max(float(np.max(np.abs(value))) for value in reference.values())
    tolerance = 100 * np.finfo(model.dtype).eps * (1 + scale)
    steps.append(Step("check", "check", "max |table - model.backward|",
                      r"\max \left\lvert \text{table} - \text{model.backward} \right\rvert",
                      np.float64(difference), group="check", passed=difference <= tolerance,
                      note="over δ0 and every parameter gradient"))
    chain = " → ".join(repr(layer) for layer in model.layers)
    return Derivation(f"Backpropagation for one sample: {chain} → {type(loss).__name__}",
                      steps, precision, max_full)


def _forward_formula(layer: Layer, index: int) -> tuple[str, str]:
    """``(plain, latex)`` for ``h(k+1) = layer k (hk)``."""
    out, inp = index + 1, index
    if isinstance(layer, Dense):
        return (f"h{out} = h{inp} W{inp} + b{inp}", rf"h_{{{out}}} = h_{{{inp}}} W_{{{inp}}} + "
                                                     rf"b_{{{inp}}}")
    names = {Sigmoid: ("σ", r"\sigma"), Tanh: ("tanh", r"\tanh"), ReLU: ("relu", r"\mathrm{relu}"),
             Softmax: ("softmax", r"\operatorname{softmax}"),
             LogSoftmax: ("log softmax", r"\log\operatorname{softmax}")}
    plain, latex = names.get(type(layer), (repr(layer), rf"\text{{{type(layer).__name__}}}"))
    return f"h{out} = {plain}(h{inp})", rf"h_{{{out}}} = {latex}(h_{{{inp}}})"


def _loss_steps(loss: Loss, n_layers: int, value: float, delta: np.ndarray) -> list[Step]:
    """The loss E and its gradient δL = ∂E/∂hL, which starts the backward pass."""
    last = n_layers
    formulas = {
        CrossEntropy: (f"E = -Σ T ln h{last}", rf"E = -\sum T \ln h_{{{last}}}",
                       f"-T / h{last}", rf"-T / h_{{{last}}}"),
        SoftmaxCrossEntropy: (f"E = -Σ T log softmax(h{last})",
                              rf"E = -\sum T \log\operatorname{{softmax}}(h_{{{last}}})",
                              f"softmax(h{last}) - T",
                              rf"\operatorname{{softmax}}(h_{{{last}}}) - T"),
        NLLLoss: (f"E = -Σ T h{last}", rf"E = -\sum T h_{{{last}}}", "-T", "-T"),
        MSELoss: (f"E = Σ (h{last} - T)² / n", rf"E = \sum (h_{{{last}}} - T)^2 / n",
                  f"2 (h{last} - T) / n", rf"2 (h_{{{last}}} - T) / n"),
    }
    name = type(loss).__name__
    plain_loss, latex_loss, plain_grad, latex_grad = formulas.get(
        type(loss), (f"E = {name}(h{last}, T)", rf"E = \text{{{name}}}(h_{{{last}}}, T)",
                     "loss.backward()", r"\text{loss.backward()}"))
    group = f"loss: {name}"
    return [
        Step("E", "loss", plain_loss, latex_loss, np.float64(value), group=group),
        Step(f"delta{last}", "loss gradient", f"δ{last} = ∂E/∂h{last} = {plain_grad}",
             rf"\delta_{{{last}}} = \frac{{\partial E}}{{\partial h_{{{last}}}}} = {latex_grad}",
             delta, group=group),
    ]


_DIAGONALS = {
    Sigmoid: ("σ'(h{i}) = h{o} ⊙ (1 - h{o})",
              r"\sigma'(h_{{{i}}}) = h_{{{o}}} \odot (1 - h_{{{o}}})"),
    Tanh: ("tanh'(h{i}) = 1 - h{o}²", r"\tanh'(h_{{{i}}}) = 1 - h_{{{o}}}^2"),
    ReLU: ("relu'(h{i}) = [h{i} > 0]", r"\mathrm{{relu}}'(h_{{{i}}}) = [h_{{{i}}} > 0]"),
}


def _layer_steps(layer: Layer, index: int, layer_input: np.ndarray, layer_output: np.ndarray,
                 grad_out: np.ndarray) -> tuple[list[Step], np.ndarray]:
    """Steps for layer ``index`` (incoming δ, local derivative, parameter gradients,
    outgoing δ) and the outgoing δ, all from the layer's explicit Jacobian."""
    i, o = index, index + 1
    group = f"layer {index}: {layer!r}"
    jacobian = layer.jacobian(layer_input)[0]  # (n_out, n_in): ∂h(o)_r / ∂h(i)_c
    steps = [Step(f"{i}.grad_out", "incoming gradient", f"δ{o} = ∂E/∂h{o}",
                  rf"\delta_{{{o}}} = \frac{{\partial E}}{{\partial h_{{{o}}}}}", grad_out,
                  group=group)]
    if type(layer) in _DIAGONALS:
        plain, latex = _DIAGONALS[type(layer)]
        local = np.diagonal(jacobian).copy()
        grad_in = grad_out * local
        symbol = plain.split(" =")[0]
        steps.append(Step(f"{i}.local", "local derivative", plain.format(i=i, o=o),
                          latex.format(i=i, o=o), local,
                          group=group, note="element-wise: only the diagonal of J"))
        outgoing = (f"δ{i} = δ{o} ⊙ {symbol.format(i=i)}",
                    rf"\delta_{{{i}}} = \delta_{{{o}}} \odot {latex.split(' =')[0].format(i=i)}")
    else:
        grad_in = grad_out @ jacobian
        if isinstance(layer, Dense):
            local = (f"∂h{o}/∂h{i} = W{i}ᵀ", rf"\frac{{\partial h_{{{o}}}}}{{\partial h_{{{i}}}}}"
                                             rf" = W_{{{i}}}^\top", "")
            outgoing = (f"δ{i} = δ{o} W{i}ᵀ", rf"\delta_{{{i}}} = \delta_{{{o}}} W_{{{i}}}^\top")
        elif isinstance(layer, Softmax):
            local = (f"J = diag(h{o}) - h{o}ᵀ h{o}",
                     rf"J = \operatorname{{diag}}(h_{{{o}}}) - h_{{{o}}}^\top h_{{{o}}}",
                     f"from the output h{o} = softmax(h{i}), not from h{i}")
            outgoing = (f"δ{i} = δ{o} J", rf"\delta_{{{i}}} = \delta_{{{o}}} J")
        else:
            local = (f"J = ∂h{o}/∂h{i}", rf"J = \frac{{\partial h_{{{o}}}}}{{\partial h_{{{i}}}}}",
                     "")
            outgoing = (f"δ{i} = δ{o} J", rf"\delta_{{{i}}} = \delta_{{{o}}} J")
        steps.append(Step(f"{i}.local", "local Jacobian", local[0], local[1], jacobian,
                          group=group, note=local[2]))
    if isinstance(layer, Dense):
        steps += [
            Step(f"{i}.W", "weight gradient", f"∂E/∂W{i} = h{i}ᵀ δ{o}",
                 rf"\frac{{\partial E}}{{\partial W_{{{i}}}}} = h_{{{i}}}^\top \delta_{{{o}}}",
                 np.outer(layer_input[0], grad_out[0]), group=group),
            Step(f"{i}.b", "bias gradient", f"∂E/∂b{i} = δ{o}",
                 rf"\frac{{\partial E}}{{\partial b_{{{i}}}}} = \delta_{{{o}}}", grad_out[0],
                 group=group),
        ]
    elif layer.params:
        layer.forward(layer_input)
        layer.backward(grad_out)
        steps += [Step(f"{i}.{name}", f"{name} gradient", f"∂E/∂{name} (from backward)",
                       rf"\frac{{\partial E}}{{\partial \text{{{name}}}}}", grad.copy(),
                       group=group) for name, grad in layer.grads.items()]
    steps.append(Step(f"{i}.grad_in", "outgoing gradient", *outgoing, grad_in, group=group))
    return steps, grad_in


def loss_for(model: Sequential) -> Loss:
    """The cross-entropy that fits the model's last layer: ``CrossEntropy`` after ``Softmax``,
    ``NLLLoss`` after ``LogSoftmax``, else ``SoftmaxCrossEntropy`` on the logits."""
    last = model.layers[-1]
    if isinstance(last, Softmax):
        return CrossEntropy()
    if isinstance(last, LogSoftmax):
        return NLLLoss()
    return SoftmaxCrossEntropy()
