"""chainrule.check: numeric derivatives; checks of functions, layers, networks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule import (
    CrossEntropy,
    Dense,
    Layer,
    LogSoftmax,
    MSELoss,
    NLLLoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    gradcheck,
    mlp,
)
from chainrule.check import network
from chainrule.check.functions import check_gradient, check_jacobian
from chainrule.check.layercheck import check_layer
from chainrule.check.numerical import numerical_gradient, numerical_jacobian, rowwise_jacobian
from chainrule.check.usercode import check_jacobian_of, load_function
from chainrule.cli import main
from chainrule.nn.functional import log_softmax, sigmoid, softmax, softmax_jacobian


# --- the df2 / softmax_prime code of shared/seeds/000, in both readings -----------------------
def softmax_prime_as_run(f):
    """As its author ran it (an ``else:`` before the off-diagonal line)."""
    jacobian = np.diag(f)
    for i in range(len(jacobian)):
        for j in range(len(jacobian)):
            if i == j:
                jacobian[i][j] = f[i] * (1 - f[i])
            else:
                jacobian[i][j] = -f[i] * f[j]
    return jacobian


def softmax_prime_as_pasted(f):
    """Exactly as pasted: both assignments inside the ``if``."""
    jacobian = np.diag(f)
    for i in range(len(jacobian)):
        for j in range(len(jacobian)):
            if i == j:
                jacobian[i][j] = f[i] * (1 - f[i])
                jacobian[i][j] = -f[i] * f[j]
    return jacobian


def df2(d):
    return np.apply_along_axis(softmax_prime_as_run, axis=1, arr=d)


SEED_Z = np.array([1.75, 1.75])


def identifiers(report) -> list[str]:
    return sorted(item.identifier for item in report.diagnosis)


# --- numerical differentiation -----------------------------------------------------------------
def test_numerical_gradient_worked_example():
    # f = x0² x1 + 3 x1 at (2, 5): ∇f = (2 x0 x1, x0² + 3) = (20, 7)
    grad = numerical_gradient(lambda v: v[0] ** 2 * v[1] + 3 * v[1], np.array([2.0, 5.0]))
    np.testing.assert_allclose(grad, [20.0, 7.0], rtol=1e-9)


def test_numerical_jacobian_matches_closed_form_and_oracle(rng, numeric_jacobian):
    z = rng.normal(size=5)
    jacobian = numerical_jacobian(softmax, z)
    np.testing.assert_allclose(jacobian, softmax_jacobian(softmax(z)), atol=1e-10)
    np.testing.assert_allclose(jacobian, numeric_jacobian(softmax, z), atol=1e-8)


def test_batched_jacobian_equals_loop_and_has_full_shape(rng):
    x = rng.normal(size=(3, 4))
    looped = numerical_jacobian(softmax, x)
    batched = numerical_jacobian(softmax, x, batched=True)
    assert batched.shape == (3, 4, 3, 4)  # f(x).shape + x.shape
    np.testing.assert_allclose(batched, looped, atol=1e-10)
    np.testing.assert_array_equal(batched[0, :, 1, :], 0)  # rows do not interact
    np.testing.assert_allclose(rowwise_jacobian(softmax, x),
                               softmax_jacobian(softmax(x)), atol=1e-10)


def test_batched_mode_needs_few_calls(rng):
    calls = []

    def counted(x):
        calls.append(x.shape)
        return np.tanh(x)

    numerical_jacobian(counted, rng.normal(size=(8, 10)), batched=True)
    assert len(calls) <= 4  # instead of 2 * 80 + 1 calls one entry at a time
    calls.clear()
    numerical_jacobian(counted, rng.normal(size=(8, 10)))
    assert len(calls) == 2 * 80 + 1


def test_batched_gradient_of_stacked_scalar(rng):
    x = rng.normal(size=(3, 2))
    grad = numerical_gradient(lambda stack: np.sum(stack ** 3, axis=(1, 2)), x, batched=True)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-8, atol=1e-8)


def test_step_scales_with_the_magnitude_of_x():
    x = np.array([1e8, -3e7])
    grad = numerical_gradient(lambda v: float(np.sum(v ** 2)), x)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-9)
    fixed = numerical_gradient(lambda v: float(np.sum(v ** 2)), x, eps=1e-6)
    assert np.max(np.abs(fixed - 2 * x) / np.abs(2 * x)) > 1e-6  # a fixed tiny step loses it


def test_rowwise_refuses_functions_that_mix_rows(rng):
    def centre(batch):
        return batch - batch.mean(axis=0)

    with pytest.raises(ValueError, match="mixes rows"):
        rowwise_jacobian(centre, rng.normal(size=(4, 3)))


def test_rowwise_names_a_random_function_as_random(rng):
    """A dropout mask drawn per call used to be reported as mixing the rows of the batch."""
    draw = np.random.default_rng(0)

    def dropout(batch):
        return batch * (draw.random(batch.shape) < 0.5) / 0.5

    with pytest.raises(ValueError, match=r"^dropout gives a different output each time for "
                                         r"the same input \(random, like a dropout mask\)"):
        rowwise_jacobian(dropout, rng.normal(size=(4, 3)), name="dropout")


def test_numerical_refuses_non_finite_input_and_bad_eps():
    with pytest.raises(ValueError, match=r"non-finite values: nan at \[1\]"):
        numerical_gradient(lambda v: float(v.sum()), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="eps must be > 0"):
        numerical_gradient(lambda v: float(v.sum()), np.ones(2), eps=0.0)


# --- check_jacobian: the seed question ---------------------------------------------------------
def test_seed_as_run_reproduces_the_printed_matrix_and_is_evaluated_at_input():
    np.testing.assert_array_equal(softmax_prime_as_run(SEED_Z),
                                  [[-1.3125, -3.0625], [-3.0625, -1.3125]])
    report = check_jacobian(softmax, softmax_prime_as_run, SEED_Z)
    assert not report.passed
    assert identifiers(report) == ["evaluated_at_input"]
    assert report.diagnosis[0].part == "all"
    np.testing.assert_allclose(report.rows[0].numeric, [[0.25, -0.25], [-0.25, 0.25]],
                               atol=1e-10)
    worst = report.worst  # relative error 1.19 on the diagonal, 0.92 off it
    assert worst.index == (0, 0)
    assert worst.analytic == -1.3125
    assert worst.numeric == pytest.approx(0.25, abs=1e-10)


def test_seed_applied_to_a_passes_and_gives_the_answer():
    def at_output(z):
        return softmax_prime_as_run(softmax(z))

    report = check_jacobian(softmax, at_output, SEED_Z)
    assert report.passed and report.diagnosis == []
    # the seed's chain rule: (0, -2) @ J(A) = (0.5, -0.5) = A - T
    np.testing.assert_allclose(np.array([0.0, -2.0]) @ at_output(SEED_Z), [0.5, -0.5])


def test_seed_as_pasted_judges_diagonal_and_off_diagonal_separately():
    np.testing.assert_array_equal(softmax_prime_as_pasted(SEED_Z), [[-3.0625, 0], [0, -3.0625]])
    report = check_jacobian(softmax, softmax_prime_as_pasted, SEED_Z)
    assert not report.passed
    parts = {(item.identifier, item.part) for item in report.diagnosis}
    assert parts == {("diagonal_overwritten", "diagonal"), ("evaluated_at_input", "diagonal"),
                     ("cross_terms_missing", "off-diagonal")}


@pytest.mark.parametrize(("claimed", "expected"), [
    (softmax_prime_as_run, ["evaluated_at_input"]),
    (softmax_prime_as_pasted, ["cross_terms_missing", "diagonal_overwritten",
                               "evaluated_at_input"]),
])
def test_seed_mistakes_at_a_random_batch(rng, claimed, expected):
    z = rng.normal(size=(3, 5))
    report = check_jacobian(softmax, lambda batch: np.stack([claimed(row) for row in batch]), z)
    assert identifiers(report) == expected


def test_df2_on_a_batch_gives_per_row_jacobians():
    z = np.array([[1.75, 1.75], [0.0, 1.0]])
    report = check_jacobian(softmax, df2, z)
    assert report.rows[0].analytic.shape == (2, 2, 2)
    assert identifiers(report) == ["evaluated_at_input"]


@settings(max_examples=30)
@given(st.lists(st.floats(-4, 4), min_size=2, max_size=6))
def test_any_point_correct_passes_and_at_input_is_named(values):
    z = np.array(values)
    assert check_jacobian(softmax, lambda v: softmax_jacobian(softmax(v)), z).passed
    wrong = check_jacobian(softmax, softmax_jacobian, z)  # the formula applied to z
    if not wrong.passed:  # at rare points z the two coincide within the tolerance
        assert "evaluated_at_input" in identifiers(wrong)


# --- check_jacobian: every catalogue entry, from a deliberately wrong implementation -------------
def _sigmoid_prime(s):
    return np.diag(s * (1 - s))


def _log_softmax_jacobian(z):
    p = softmax(z)
    return np.eye(len(z)) - p[None, :]


CASES = {
    # name: (f, right Jacobian of z, wrong Jacobian of z, expected identifiers)
    "transposed": (log_softmax, _log_softmax_jacobian,
                   lambda z: _log_softmax_jacobian(z).T, ["transposed"]),
    "evaluated_at_input/sigmoid": (sigmoid, lambda z: _sigmoid_prime(sigmoid(z)),
                                   _sigmoid_prime, ["evaluated_at_input"]),
    "evaluated_at_input/tanh": (np.tanh, lambda z: np.diag(1 - np.tanh(z) ** 2),
                                lambda z: np.diag(1 - z ** 2), ["evaluated_at_input"]),
    "diagonal_overwritten": (softmax, lambda z: softmax_jacobian(softmax(z)),
                             lambda z: -np.outer(softmax(z), softmax(z)),
                             ["diagonal_overwritten"]),
    "diagonal_only": (softmax, lambda z: softmax_jacobian(softmax(z)),
                      lambda z: np.diag(softmax(z) * (1 - softmax(z))), ["diagonal_only"]),
    "sign_flipped": (softmax, lambda z: softmax_jacobian(softmax(z)),
                     lambda z: -softmax_jacobian(softmax(z)), ["sign_flipped"]),
    "scaled": (np.tanh, lambda z: np.diag(1 - np.tanh(z) ** 2),
               lambda z: 2 * np.diag(1 - np.tanh(z) ** 2), ["scaled"]),
    "evaluated_at_input+diagonal_overwritten": (
        softmax, lambda z: softmax_jacobian(softmax(z)), lambda z: -np.outer(z, z),
        ["diagonal_overwritten", "evaluated_at_input"]),
    "evaluated_at_input+sign_flipped": (
        softmax, lambda z: softmax_jacobian(softmax(z)), lambda z: -softmax_jacobian(z),
        ["evaluated_at_input", "sign_flipped"]),
    "diagonal_only+evaluated_at_input": (
        softmax, lambda z: softmax_jacobian(softmax(z)), lambda z: np.diag(z * (1 - z)),
        ["diagonal_only", "evaluated_at_input"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_mistake_is_named_and_the_right_version_passes(name, rng):
    f, right, wrong, expected = CASES[name]
    z = rng.normal(size=4)
    good = check_jacobian(f, right, z)
    assert good.passed and good.diagnosis == []
    bad = check_jacobian(f, wrong, z)
    assert not bad.passed
    assert identifiers(bad) == expected
    assert all(item.explanation for item in bad.diagnosis)


def test_scaled_reports_the_factor(rng):
    bad = check_jacobian(np.tanh, lambda z: 2 * np.diag(1 - np.tanh(z) ** 2), rng.normal(size=3))
    assert "factor 2" in bad.diagnosis[0].detail


def test_no_diagnosis_when_nothing_in_the_catalogue_matches(rng):
    bad = check_jacobian(softmax, lambda z: softmax_jacobian(softmax(z)) + 0.01 * np.eye(4),
                         rng.normal(size=4))
    assert not bad.passed and bad.diagnosis == []
    assert "no classic mistake" in str(bad)


def test_missing_batch_mean_for_a_summed_loss_gradient(rng):
    logits, labels = rng.normal(size=(8, 3)), rng.integers(0, 3, 8)
    onehot = np.eye(3)[labels]

    def mean_loss(z):
        return float(-np.mean(np.sum(onehot * log_softmax(z), axis=1)))

    right = check_gradient(mean_loss, lambda z: (softmax(z) - onehot) / 8, logits)
    assert right.passed and right.diagnosis == []
    summed = check_gradient(mean_loss, lambda z: softmax(z) - onehot, logits)
    assert identifiers(summed) == ["missing_batch_mean"]
    assert "batch size 8" in summed.diagnosis[0].detail


def test_check_gradient_sign_flip_and_errors(rng):
    x = rng.normal(size=5)
    assert identifiers(check_gradient(lambda v: float(v @ v), lambda v: -2 * v, x)) == [
        "sign_flipped"]
    with pytest.raises(ValueError, match=r"grad_fn\(x\) has shape \(4,\); expected x's shape"):
        check_gradient(lambda v: float(v @ v), lambda v: (2 * v)[:4], x)
    with pytest.raises(ValueError, match="f must return a scalar"):
        check_gradient(lambda v: v, lambda v: v, x)


def test_check_jacobian_bad_arguments(rng):
    z = rng.normal(size=3)
    with pytest.raises(ValueError, match=r"has shape \(3, 2\); expected \(m, n\) = \(3, 3\)"):
        check_jacobian(softmax, lambda v: np.ones((3, 2)), z)
    with pytest.raises(ValueError, match=r"per-row Jacobians \(B, m, n\) = \(2, 3, 3\)"):
        check_jacobian(softmax, lambda v: np.ones((3, 3)), rng.normal(size=(2, 3)))
    with pytest.raises(ValueError, match=r"jacobian_fn\(x\) has non-finite values: inf"):
        check_jacobian(softmax, lambda v: np.full((3, 3), np.inf), z)
    with pytest.raises(ValueError, match=r"f\(x\) has non-finite values"):
        check_jacobian(np.log, lambda v: np.diag(1 / v), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="vector"):
        check_jacobian(softmax, softmax_jacobian, np.ones((2, 2, 2)))


# --- check_layer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [Dense(4, 3, seed=0), Dense(4, 3, seed=0, init="he"), Tanh(),
                                   Sigmoid(), ReLU(), Softmax(), LogSoftmax()],
                         ids=lambda layer: type(layer).__name__)
def test_every_builtin_layer_passes(layer, rng):
    x = rng.normal(size=(5, 4))
    x[np.abs(x) < 0.05] = 0.5  # away from the ReLU kink
    report = check_layer(layer, x)
    assert report.passed, str(report)
    assert report.rows[0].max_rel_error < 1e-6  # comfortably inside rtol = 1e-5


class Swish(Layer):
    """A user's own layer with a parameter: ``y = x · σ(β x)``."""

    def __init__(self, beta: float = 1.5, wrong_param_grad: bool = False) -> None:
        super().__init__()
        self.params["beta"] = np.array([beta])
        self.grads["beta"] = np.zeros(1)
        self.wrong_param_grad = wrong_param_grad

    def forward(self, x):
        self.x = x
        self.s = sigmoid(self.params["beta"][0] * x)
        return x * self.s

    def backward(self, grad_out):
        beta, s, x = self.params["beta"][0], self.s, self.x
        dbeta = np.sum(grad_out * x * x * s * (1 - s))
        self.grads["beta"][0] = -dbeta if self.wrong_param_grad else dbeta
        return grad_out * (s + beta * x * s * (1 - s))


def test_custom_layer_passes_and_a_wrong_parameter_gradient_is_named(rng):
    x = rng.normal(size=(6, 3))
    report = check_layer(Swish(), x)
    assert report.passed
    assert [row.name for row in report.rows] == ["Swish input gradient", "Swish ∂/∂beta"]
    bad = check_layer(Swish(wrong_param_grad=True), x)
    assert not bad.passed
    assert [row.passed for row in bad.rows] == [True, False]
    assert identifiers(bad) == ["sign_flipped"]


class SoftmaxAtLogits(Softmax):
    """Softmax whose backward applies the Jacobian formula to the logits (seed question 1)."""

    def forward(self, x):
        self.z = x
        return super().forward(x)

    def backward(self, grad_out):
        return np.einsum("bi,bij->bj", grad_out, softmax_jacobian(self.z))


class SoftmaxDoubled(Softmax):
    """A wrong backward whose Jacobian (2 J) still has rows summing to zero."""

    def backward(self, grad_out):
        return 2 * super().backward(grad_out)


def test_wrong_softmax_layers_are_diagnosed(rng):
    x = rng.normal(size=(4, 3))
    report = check_layer(SoftmaxAtLogits(), x)
    assert identifiers(report) == ["evaluated_at_input"]
    doubled = check_layer(SoftmaxDoubled(), x)
    assert identifiers(doubled) == ["scaled"] and "factor 2" in doubled.diagnosis[0].detail


def test_constant_upstream_gradient_is_refused_because_it_hides_softmax_bugs(rng):
    x = rng.normal(size=(4, 3))
    ones = np.ones((4, 3))
    # Why: with all-ones upstream the doubled (wrong) backward agrees with the numeric value.
    layer = SoftmaxDoubled()
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(ones), 0, atol=1e-15)
    with pytest.raises(ValueError, match="null space of the softmax Jacobian"):
        check_layer(SoftmaxDoubled(), x, grad_out=ones)
    with pytest.raises(ValueError, match="null space"):
        check_layer(Softmax(), x, grad_out=np.repeat(rng.normal(size=(4, 1)), 3, axis=1))
    assert check_layer(Softmax(), x, grad_out=rng.normal(size=(4, 3))).passed
    with pytest.raises(ValueError, match=r"grad_out has shape \(4, 2\); the layer's output is "):
        check_layer(Softmax(), x, grad_out=np.ones((4, 2)))


class DenseWithOneWrongEntry(Dense):
    def backward(self, grad_out):
        grad_in = super().backward(grad_out)
        self.grads["W"][2, 1] += 0.5
        return grad_in


def test_worst_entry_points_at_the_planted_bug_also_when_sampling(rng):
    x = rng.normal(size=(5, 4))
    report = check_layer(DenseWithOneWrongEntry(4, 3, seed=0), x)
    assert report.worst.row == "DenseWithOneWrongEntry ∂/∂W"
    assert report.worst.index == (2, 1)
    assert report.worst.analytic - report.worst.numeric == pytest.approx(0.5, abs=1e-8)
    sampled = check_layer(DenseWithOneWrongEntry(4, 3, seed=0), x, sample=5)
    weights = sampled.rows[1]
    assert weights.analytic.shape == (5,) and weights.positions.shape == (5, 2)
    if not weights.passed:  # the sample contains (2, 1)
        assert sampled.worst.index == (2, 1)
    else:
        assert (2, 1) not in {tuple(p) for p in weights.positions}


def test_check_layer_leaves_the_layer_untouched_and_checks_float32_in_float64(rng):
    layer = Dense(4, 3, seed=0, dtype=np.float32)
    before = layer.params["W"].copy()
    report = check_layer(layer, rng.normal(size=(3, 4)))
    assert report.passed
    np.testing.assert_array_equal(layer.params["W"], before)
    assert layer.params["W"].dtype == np.float32 and layer.x is None


# --- whole-network gradcheck -----------------------------------------------------------------
def _five_layer_net() -> Sequential:
    return Sequential([Dense(6, 5, seed=0), Tanh(), Dense(5, 5, seed=1), Sigmoid(),
                       Dense(5, 4, seed=2)])


def _plant(layer: Layer, where: str) -> Layer:
    """A copy of ``layer`` whose input gradient (or W gradient) is 10% too large."""
    base = type(layer)

    def backward(self, grad_out):
        grad_in = base.backward(self, grad_out)
        if where == "W":
            self.grads["W"] *= 1.1
            return grad_in
        return 1.1 * grad_in

    planted = copy.deepcopy(layer)
    planted.__class__ = type(f"Buggy{base.__name__}", (base,), {"backward": backward})
    return planted


@pytest.fixture
def batch(rng):
    return rng.normal(size=(6, 6)), rng.integers(0, 4, 6)


@pytest.mark.parametrize(("index", "where"), [(0, "input"), (0, "W"), (1, "input"),
                                              (2, "input"), (2, "W"), (3, "input"),
                                              (4, "input"), (4, "W")])
def test_planted_bug_in_layer_k_is_traced_to_layer_k(index, where, batch):
    model = _five_layer_net()
    model.layers[index] = _plant(model.layers[index], where)
    report = gradcheck(model, SoftmaxCrossEntropy(), *batch)
    assert not report.passed
    assert report.failing_layer == index
    assert report.cause.startswith(f"layer {index} (Buggy")
    assert identifiers(report) == ["scaled"]
    # every layer other than the planted one passes its own check
    isolated = [row for row in report.rows if not row.name.startswith("network")
                and row.layer is not None and row.layer != index]
    assert all(row.passed for row in isolated)
    # one random direction sees it too (the planted layer is deep-copied, the others are
    # views of the flat parameter vector), then the full check localises it
    fast = gradcheck(model, SoftmaxCrossEntropy(), *batch, fast=True)
    assert "fast check failed" in fast.notes[0] and fast.failing_layer == index


def test_correct_networks_pass_with_every_loss(rng):
    X = rng.normal(size=(5, 4))
    labels = rng.integers(0, 3, 5)
    cases = [
        (mlp(4, [6], 3, activation="tanh", seed=0), SoftmaxCrossEntropy()),
        (mlp(4, [6, 5], 3, activation="sigmoid", seed=1, output="softmax"), CrossEntropy()),
        (mlp(4, [6], 3, activation="relu", seed=2, output="log_softmax"), NLLLoss()),
        (mlp(4, [6], 3, activation="tanh", seed=3), MSELoss()),
    ]
    for model, loss in cases:
        report = gradcheck(model, loss, X, labels)
        assert report.passed, str(report)
        assert report.failing_layer is None and report.cause is None
        assert report.diagnosis == []
        fast = gradcheck(model, loss, X, labels, fast=True)
        assert fast.passed and len(fast.rows) == 1, str(fast)


def test_wrong_input_gradient_of_layer_0_fails_although_it_touches_no_parameter(batch):
    model = Sequential([_plant(Tanh(), "input"), Dense(6, 4, seed=0)])
    report = gradcheck(model, SoftmaxCrossEntropy(), *batch)
    assert not report.passed and report.failing_layer == 0
    network_rows = [row for row in report.rows if row.name.startswith("network")]
    assert all(row.passed for row in network_rows)  # no parameter below it to corrupt
    fast = gradcheck(model, SoftmaxCrossEntropy(), *batch, fast=True)
    assert not fast.passed and fast.failing_layer == 0
    assert "fast check failed" in fast.notes[0]


class SummedCrossEntropy(SoftmaxCrossEntropy):
    """Mean loss, but the gradient of the sum (the batch mean forgotten in backward)."""

    def backward(self):
        return super().backward() * self._batch

    def forward(self, output, target):
        self._batch = len(output)
        return super().forward(output, target)


def test_a_wrong_loss_is_the_cause_not_a_layer(batch):
    report = gradcheck(_five_layer_net(), SummedCrossEntropy(), *batch)
    assert not report.passed
    assert report.failing_layer is None
    assert report.cause == "loss SummedCrossEntropy ∂L/∂output"
    assert identifiers(report) == ["missing_batch_mean"]


def test_softmax_layer_bug_in_a_network_points_at_the_jacobian_entry(batch):
    model = Sequential([Dense(6, 4, seed=0), Tanh(), Dense(4, 3, seed=1), SoftmaxAtLogits()])
    report = gradcheck(model, CrossEntropy(), batch[0], batch[1] % 3)
    assert report.failing_layer == 3
    assert identifiers(report) == ["evaluated_at_input"]
    text = str(report)
    assert "layer 3 (SoftmaxAtLogits) Jacobian" in text and "worst entry" in text
    assert "FAILED: layer 3 (SoftmaxAtLogits) input gradient" in text


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradcheck_leaves_the_model_untouched(batch, dtype, fast):
    model = mlp(6, [5], 4, activation="tanh", seed=0, dtype=dtype)
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(batch[0].astype(dtype)), batch[1])
    model.backward(loss.backward())
    weights, grads = model.get_weights(), {key: g.copy() for key, g in model.grads.items()}
    live = dict(model.params)
    cached = [vars(layer).copy() for layer in model.layers]
    assert gradcheck(model, SoftmaxCrossEntropy(), *batch, fast=fast).passed
    for key, value in model.get_weights().items():
        np.testing.assert_array_equal(value, weights[key])
        np.testing.assert_array_equal(model.grads[key], grads[key])
        assert value.dtype == dtype and model.params[key] is live[key]
    for layer, before in zip(model.layers, cached, strict=True):
        assert all(vars(layer)[name] is value for name, value in before.items())


def test_fast_and_sampled_checks(batch):
    model = _five_layer_net()
    fast = gradcheck(model, SoftmaxCrossEntropy(), *batch, fast=True, directions=3)
    assert fast.passed and len(fast.rows) == 1 and fast.rows[0].analytic.shape == (3,)
    assert fast.eps_sweep().rows[0].order == pytest.approx(2, abs=0.2)
    sampled = gradcheck(model, SoftmaxCrossEntropy(), *batch, sample=4)
    assert sampled.passed
    weights = next(row for row in sampled.rows if row.name == "network ∂L/∂2.W")
    assert weights.analytic.size == 4
    with pytest.raises(ValueError, match="directions must be >= 1"):
        gradcheck(model, SoftmaxCrossEntropy(), *batch, fast=True, directions=0)
    with pytest.raises(ValueError, match="X must be a non-empty batch"):
        gradcheck(model, SoftmaxCrossEntropy(), np.ones(6), batch[1])


@pytest.mark.parametrize("fast", [False, True])
def test_backward_of_the_wrong_shape_is_named(batch, fast):
    class DropsAColumn(Tanh):
        def backward(self, grad_out):
            return super().backward(grad_out)[:, :-1]

    model = Sequential([DropsAColumn(), Dense(6, 4, seed=0)])
    with pytest.raises(ValueError, match=r"backward returned shape \(6, 5\).*\(6, 6\)"):
        gradcheck(model, SoftmaxCrossEntropy(), *batch, fast=fast)


def test_fast_check_is_seeded_and_reproducible(batch):
    model = mlp(6, [5], 4, activation="tanh", seed=0)
    runs = [gradcheck(model, SoftmaxCrossEntropy(), *batch, fast=True, seed=seed)
            for seed in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0].rows[0].analytic, runs[1].rows[0].analytic)
    np.testing.assert_array_equal(runs[0].rows[0].numeric, runs[1].rows[0].numeric)
    assert runs[0].rows[0].analytic[0] != runs[2].rows[0].analytic[0]
    # the directions are default_rng(seed)'s uniform draws on [-1, 1); small ones are drawn
    # once and shared read-only, large ones afresh
    expected = np.random.default_rng(5).uniform(-1, 1, (2, 300))
    moves = network._random_moves(5, 2, 300)
    np.testing.assert_array_equal(moves, expected)
    assert network._random_moves(5, 2, 300) is moves and not moves.flags.writeable
    large = network._random_moves(5, 1, network._CACHED_MOVES + 1)
    assert large.flags.writeable and network._random_moves(5, 1, large.size) is not large


def test_network_gradients_agree_with_torch(batch):
    torch = pytest.importorskip("torch")
    model = mlp(6, [5], 4, activation="tanh", seed=0)
    report = gradcheck(model, SoftmaxCrossEntropy(), *batch)
    W1, b1, W2, b2 = (torch.tensor(param, requires_grad=True) for param in model.params.values())
    hidden = torch.tanh(torch.tensor(batch[0]) @ W1 + b1)
    torch.nn.functional.cross_entropy(hidden @ W2 + b2, torch.tensor(batch[1])).backward()
    numeric = {row.name: row.numeric for row in report.rows}
    for key, tensor in zip(["0.W", "0.b", "2.W", "2.b"], (W1, b1, W2, b2), strict=True):
        np.testing.assert_allclose(numeric[f"network ∂L/∂{key}"], tensor.grad.numpy(),
                                   rtol=1e-6, atol=1e-9)


# --- reports ---------------------------------------------------------------------------------
def test_report_table_html_and_json(batch):
    model = Sequential([Dense(6, 4, seed=0), SoftmaxAtLogits()])
    report = gradcheck(model, CrossEntropy(), batch[0], batch[1])
    text = str(report)
    assert "max rel err" in text and "FAIL" in text and "rel err = |a - n|" in text
    html = report._repr_html_()
    assert html.count("<tr") == len(report.rows) + 1 and "evaluated_at_input" in html
    data = json.loads(report.to_json())
    assert data["passed"] is False and data["failing_layer"] == 1
    assert data["diagnosis"][0]["identifier"] == "evaluated_at_input"
    assert {row["name"] for row in data["rows"]} == {row.name for row in report.rows}
    assert data["worst"]["row"] == "layer 1 (SoftmaxAtLogits) input gradient"


def test_eps_sweep_orders_two_when_right_and_one_when_wrong(rng):
    x = rng.normal(size=(4, 3))
    right = check_layer(Tanh(), x).eps_sweep()
    assert right.consistent
    assert right.rows[0].order == pytest.approx(2, abs=0.2)
    wrong = check_layer(SoftmaxAtLogits(), x).eps_sweep()
    assert not wrong.consistent
    assert wrong.rows[0].order == pytest.approx(1, abs=0.2)
    assert "WRONG" in str(wrong) and "remainder" in str(wrong)


def test_plot_check_writes_a_png(tmp_path, batch):
    pytest.importorskip("matplotlib")
    from chainrule.explain.plots import plot_check

    model = Sequential([Dense(6, 4, seed=0), Tanh(), Dense(4, 3, seed=1), SoftmaxAtLogits()])
    report = gradcheck(model, CrossEntropy(), batch[0], batch[1] % 3)
    path = plot_check(report, tmp_path / "check.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# --- reference functions and the CLI ---------------------------------------------------------
SEED_MODULE = '''
import numpy as np


def softmax_prime(f):
    jacobian = np.diag(f)
    for i in range(len(jacobian)):
        for j in range(len(jacobian)):
            if i == j:
                jacobian[i][j] = f[i] * (1 - f[i])
            else:
                jacobian[i][j] = -f[i] * f[j]
    return jacobian


def df2(d):
    return np.apply_along_axis(softmax_prime, axis=1, arr=d)


def sigmoid_prime(s):
    return np.diag(s * (1 - s))
'''


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(SEED_MODULE)
    return path


def test_check_jacobian_of_references(seed_file):
    softmax_prime = load_function(f"{seed_file}:softmax_prime")
    assert identifiers(check_jacobian_of(softmax_prime, "softmax")) == ["evaluated_at_input"]
    assert check_jacobian_of(softmax_prime, "softmax", takes="output").passed
    df2_loaded = load_function(f"{seed_file}:df2")
    assert not check_jacobian_of(df2_loaded, "softmax", batch=3).passed
    sigmoid_prime = load_function(f"{seed_file}:sigmoid_prime")
    assert check_jacobian_of(sigmoid_prime, "sigmoid", takes="output").passed
    assert check_jacobian_of(lambda z: np.diag((z > 0) * 1.0), "relu", size=6).passed
    with pytest.raises(ValueError, match="of must be one of"):
        check_jacobian_of(softmax_prime, "softplus")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        load_function(f"{seed_file}:nope")
    with pytest.raises(FileNotFoundError):
        load_function("missing_file.py:f")
    with pytest.raises(ValueError, match="MODULE:FUNCTION"):
        load_function("no_colon")
    assert load_function("chainrule.nn.functional:softmax") is softmax


def test_cli_check_passes_and_writes_json(tmp_path, capsys):
    assert main(["check", "--hidden", "8", "--batch-size", "4", "--activation", "tanh"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "network ∂L/∂0.W" in out
    assert main(["check", "--hidden", "8", "--batch-size", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is True and data["failing_layer"] is None
    target = tmp_path / "report.json"
    assert main(["check", "--hidden", "8", "--batch-size", "4", "--fast", "--sweep",
                 "--json", str(target)]) == 0
    data = json.loads(target.read_text())
    assert data["passed"] is True and "eps_sweep" in data


def test_cli_check_jacobian_exit_status_and_diagnosis(seed_file, tmp_path, capsys):
    assert main(["check-jacobian", f"{seed_file}:softmax_prime", "--of", "softmax"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "evaluated_at_input" in out
    assert main(["check-jacobian", f"{seed_file}:softmax_prime", "--of", "softmax",
                 "--takes", "output", "--size", "3"]) == 0
    capsys.readouterr()
    plot = tmp_path / "check.png"
    assert main(["check-jacobian", f"{seed_file}:df2", "--of", "softmax", "--batch", "2",
                 "--plot", str(plot)]) == 1
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["check-jacobian", f"{seed_file}:missing", "--of", "softmax"]) == 2
    assert "has no function 'missing'" in capsys.readouterr().err


class DenseSoftmax(Layer):
    """A fused ``y = softmax(x W)``: every weight moves every output column."""

    def __init__(self, n_in: int, n_out: int, wrong: bool = False) -> None:
        super().__init__()
        self.params["W"] = np.random.default_rng(0).normal(size=(n_in, n_out))
        self.grads["W"] = np.zeros((n_in, n_out))
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        self.a = softmax(x @ self.params["W"])
        return self.a

    def backward(self, grad_out):
        grad_z = self.a * (grad_out - np.sum(grad_out * self.a, axis=1, keepdims=True))
        if self.wrong:  # the cross terms forgotten: diag(a(1-a)) only
            grad_z = grad_out * self.a * (1 - self.a)
        self.grads["W"][...] = self.x.T @ grad_z
        return grad_z @ self.params["W"].T


def test_parameters_that_move_every_column_fall_back_to_one_entry_at_a_time(rng):
    # Had the column-aligned shortcut been accepted here, the numeric W gradient would be
    # wrong and this correct layer would fail.
    x = rng.normal(size=(5, 3))
    report = check_layer(DenseSoftmax(3, 4), x)
    assert report.passed, str(report)
    assert report.rows[1].max_rel_error < 1e-6
    wrong = check_layer(DenseSoftmax(3, 4, wrong=True), x)
    assert [row.passed for row in wrong.rows] == [False, False]
    assert wrong.cause == "DenseSoftmax input gradient"


def test_load_function_file_can_import_its_neighbours(tmp_path):
    (tmp_path / "helpers.py").write_text("import numpy as np\n\n\n"
                                         "def outer(a):\n    return np.outer(a, a)\n")
    (tmp_path / "mine.py").write_text("import numpy as np\nfrom helpers import outer\n\n\n"
                                      "def softmax_prime(a):\n"
                                      "    return np.diag(a) - outer(a)\n")
    softmax_prime = load_function(f"{tmp_path / 'mine.py'}:softmax_prime")
    assert check_jacobian_of(softmax_prime, "softmax", takes="output").passed


def test_two_wrong_layers_are_each_diagnosed(batch):
    model = _five_layer_net()
    model.layers[0] = _plant(model.layers[0], "W")
    model.layers[3] = _plant(model.layers[3], "input")
    report = gradcheck(model, SoftmaxCrossEntropy(), *batch)
    assert report.failing_layer == 3 and report.failing_layers == [0, 3]
    assert [(item.where, item.identifier) for item in report.diagnosis] == [
        ("layer 3 (BuggySigmoid)", "scaled"), ("layer 0 (BuggyDense)", "scaled")]
    summary = report.summary()
    assert "layer 3 (BuggySigmoid): scaled" in summary
    assert "layer 0 (BuggyDense): scaled" in summary and "factor 1.1" in summary


def test_failing_small_jacobian_is_shown_side_by_side_with_wrong_entries_marked():
    z = np.array([1.0, 2.0, 0.5])
    wrong = softmax_jacobian(softmax(z)) * np.array([[1, 1, 1], [1, 1, 1], [1, 1, -1]])
    text = str(check_jacobian(softmax, lambda v: wrong, z))
    block = text.split("Jacobian: claimed (left) vs numeric (right), * = wrong:\n")[1]
    lines = block.splitlines()[:3]
    assert [line.count("*") for line in lines] == [0, 0, 2]  # only [2, 2], on both sides
    assert lines[2].split("|")[0].split()[-1] == f"{wrong[2, 2]:.4g}*"
    assert lines[2].split("|")[1].split()[-1] == f"{-wrong[2, 2]:.4g}*"


def test_large_failing_gradient_shows_its_worst_rows():
    numeric = np.arange(80.0).reshape(8, 10)
    claimed = numeric.copy()
    claimed[5, 7] += 3.0
    claimed[2, 1] += 1.0
    text = str(check_gradient(lambda v: float(np.sum(v * numeric)), lambda v: claimed,
                              np.ones((8, 10))))
    assert "gradient: claimed (left) vs numeric (right), * = wrong, worst rows of 8 × 10:" in text
    worst = text.split("worst rows of 8 × 10:\n")[1].splitlines()
    assert worst[0].startswith("  row 5, columns [") and worst[2].startswith("  row 2, columns [")
    assert worst[1].count("*") == 2 and worst[3].count("*") == 2


def test_cli_check_jacobian_class_method_elementwise_and_exit_codes(tmp_path, capsys):
    path = tmp_path / "my_net.py"
    path.write_text("import numpy as np\n\nnot_callable = [1, 2, 3]\n\n\n"
                    "class Softmax:\n    def jacobian(self, a):\n"
                    "        return np.diag(a) - np.outer(a, a)\n\n\n"
                    "def sigmoid_prime(z):\n    s = 1 / (1 + np.exp(-z))\n    return s * (1 - s)\n"
                    "\n\ndef broken(z):\n    return np.ones(3) + np.ones((12, 12))\n")
    assert main(["check-jacobian", f"{path}:Softmax.jacobian", "--of", "softmax",
                 "--takes", "output"]) == 0
    assert main(["check-jacobian", f"{path}:sigmoid_prime", "--of", "sigmoid",
                 "--elementwise", "--batch", "3"]) == 0
    capsys.readouterr()
    assert main(["check-jacobian", f"{path}:not_callable", "--of", "softmax"]) == 2
    assert "my_net.py:not_callable is a list, not a function" in capsys.readouterr().err
    assert main(["check-jacobian", f"{path}:broken", "--of", "softmax"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "your code raised: broken raised ValueError: operands " in err
    assert f"{path}:17, called with input shape (4,)" in err
    assert main(["check-jacobian", f"{tmp_path / 'none.py'}:f", "--of", "softmax"]) == 2


def test_cli_a_file_that_fails_to_import_is_named_with_its_line(tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "syntax.py").write_text("import numpy as np\n\ndef f(:\n    return 1\n")
    (tmp_path / "raises.py").write_text("import numpy as np\n\nSIZE = 1 / 0\n")
    assert main(["check-jacobian", "syntax.py:f", "--of", "softmax"]) == 3
    err = capsys.readouterr().err
    assert err == ("chainrule check-jacobian: your code raised: importing syntax.py raised "
                   "SyntaxError: invalid syntax (syntax.py, line 3) — at syntax.py:3\n")
    assert main(["check-jacobian", "raises.py:f", "--of", "softmax"]) == 3
    assert capsys.readouterr().err == (
        "chainrule check-jacobian: your code raised: importing raises.py raised "
        "ZeroDivisionError: division by zero — at raises.py:3\n")


def test_cli_suggests_takes_output_after_evaluated_at_input(seed_file, capsys):
    assert main(["check-jacobian", f"{seed_file}:softmax_prime", "--of", "softmax"]) == 1
    assert ("softmax_prime is right when given the output softmax(z): rerun with --takes output"
            in capsys.readouterr().out)


def test_cli_check_layer(tmp_path, capsys):
    path = tmp_path / "layers.py"
    path.write_text("import numpy as np\n\n\nclass Dense:\n"
                    "    def __init__(self, n_in, n_out):\n"
                    "        self.W = np.random.default_rng(0).normal(size=(n_in, n_out))\n"
                    "        self.b = np.zeros(n_out)\n\n"
                    "    def forward(self, x):\n        self.x = x\n"
                    "        return x @ self.W + self.b\n\n"
                    "    def backward(self, g):\n        self.dW = self.x.T @ g / len(g)\n"
                    "        self.db = g.sum(axis=0)\n        return g @ self.W.T\n")
    assert main(["check-layer", f"{path}:Dense", "--in", "4", "--args",
                 '{"n_in": 4, "n_out": 3}']) == 1
    out = capsys.readouterr().out
    assert out.startswith("check-layer: Dense(n_in=4, n_out=3) at x (5, 4)\n")
    assert "averaged_in_layer" in out and "fix: " in out
    assert main(["check-layer", f"{path}:Dense", "--in", "4"]) == 2
    assert ("cannot build Dense(): missing a required argument: 'n_in'; give its arguments "
            "as --args '{\"n_in\": ..., \"n_out\": ...}'") in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["check-layer", f"{path}:Dense", "--in", "4", "--args", "[4]"])
    assert caught.value.code == 2
