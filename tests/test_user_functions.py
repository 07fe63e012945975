"""Functional-style user code (tests/user_code/functional.py), element-wise derivatives,
torch.autograd.Function subclasses, and chainrule.testing's assertions."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.testing import (
    assert_functions_correct,
    assert_jacobian_correct,
    assert_layer_correct,
)
from user_code import attribute_style
from user_code import functional as fn

RNG = np.random.default_rng(11)
X, W, B = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2)), RNG.normal(size=2)
T = np.eye(4)[[0, 2, 1]]
P = fn.softmax(X)

# (name, forward, backward, inputs, expected row names, expected diagnosis; None: passes)
FUNCTIONS = [
    ("affine", fn.affine_forward, fn.affine_backward, (X, W, B), ["dx", "dw", "db"], None),
    ("affine, db averaged", fn.affine_forward, fn.affine_backward_mean_db, (X, W, B),
     ["dx", "dw", "db"], "averaged_in_layer"),
    ("relu", fn.relu_forward, fn.relu_backward, (X,), ["dx"], None),
    ("sigmoid, σ·g", fn.sigmoid_forward, fn.sigmoid_backward, (X,), ["dx"],
     "output_instead_of_derivative"),
]


@pytest.mark.parametrize(("forward", "backward", "inputs", "rows", "expected"),
                         [case[1:] for case in FUNCTIONS], ids=[case[0] for case in FUNCTIONS])
def test_functional_style(forward, backward, inputs, rows, expected):
    report = cr.check_functions(forward, backward, *inputs)
    assert [row.name for row in report.rows] == rows
    if expected is None:
        assert report and all(row.max_rel_error < 1e-6 for row in report.rows), str(report)
    else:
        assert not report and [d.identifier for d in report.diagnosis] == [expected]


def test_functional_averaged_bias_names_the_factor_and_the_formula():
    report = cr.check_functions(fn.affine_forward, fn.affine_backward_mean_db, X, W, B)
    assert report.cause == "db" and report.diagnosis[0].detail == (
        "factor 0.333333 = 1 / batch size 3")
    assert "`db = g.sum(axis=0)`" in report.diagnosis[0].fix


def test_backward_returning_too_few_gradients_is_one_clear_error():
    with pytest.raises(ValueError, match=r"backward returned 1 gradient; expected one per "
                                         r"floating-point input, in order: x, w, b"):
        cr.check_functions(fn.affine_forward, lambda dout, cache: dout @ cache[1].T, X, W, B)


@pytest.mark.parametrize(("function", "derivative", "expected"), [
    (fn.sigmoid, fn.sigmoid_prime, None),
    (fn.softmax, fn.softmax_prime, "diagonal_only"),
    (fn.sigmoid, lambda s: s * (1 - s), "evaluated_at_input"),  # given z, not σ(z)
])
def test_elementwise_derivatives(function, derivative, expected):
    for x in (X[0], X):
        report = cr.check_jacobian(function, derivative, x, elementwise=True)
        if expected is None:
            assert report and report.rows[0].analytic.shape == x.shape
        else:
            assert not report and expected in [d.identifier for d in report.diagnosis]
    if expected is None:
        with pytest.raises(ValueError, match="pass elementwise=True"):
            cr.check_jacobian(function, derivative, X[0])


@pytest.mark.parametrize(("gradient", "expected"), [
    (fn.cross_entropy_grad, None),
    (fn.cross_entropy_grad_summed, "missing_batch_mean"),
])
def test_loss_gradients(gradient, expected):
    report = cr.check_gradient(lambda p: fn.cross_entropy(p, T), lambda p: gradient(p, T), P)
    assert bool(report) is (expected is None)
    assert [d.identifier for d in report.diagnosis] == ([] if expected is None else [expected])


def test_a_loss_that_uses_only_the_first_row_is_named():
    report = cr.check_gradient(lambda p: fn.first_sample_loss(p, T), lambda p: -T / p, P)
    assert [d.identifier for d in report.diagnosis] == ["rows_ignored"]
    assert report.diagnosis[0].detail == "rows 1, 2 of 3 do not affect the result"


def test_user_function_that_raises_names_file_line_and_shape():
    with pytest.raises(cr.UserCodeError) as caught:
        cr.check_gradient(lambda p: fn.cross_entropy(p, T),
                          lambda p: fn.mse_grad_times_wrong_shape(p, T), P)
    message = str(caught.value)
    assert "raised ValueError: operands could not be broadcast together" in message
    line = fn.mse_grad_times_wrong_shape.__code__.co_firstlineno + 1
    assert f"functional.py:{line}, called with input shape (3, 4)" in message


def test_testing_assertions_carry_the_diagnosis_and_fix():
    assert_layer_correct(attribute_style.Sigmoid(), X)
    assert_jacobian_correct(fn.sigmoid, fn.sigmoid_prime, X, elementwise=True)
    assert_functions_correct(fn.affine_forward, fn.affine_backward, X, W, B)
    with pytest.raises(AssertionError, match="output_instead_of_derivative") as caught:
        assert_layer_correct(attribute_style.SigmoidOutputOnly(), X)
    assert "fix: multiply the upstream gradient by the activation's derivative" in str(
        caught.value)
    with pytest.raises(AssertionError, match="diagonal_only"):
        assert_jacobian_correct(fn.softmax, fn.softmax_prime, X, elementwise=True)
    with pytest.raises(AssertionError, match="averaged_in_layer"):
        assert_functions_correct(fn.affine_forward, fn.affine_backward_mean_db, X, W, B)


def test_check_autograd_function_without_torch_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"check_autograd_function needs PyTorch"):
        cr.check_autograd_function(object, X)


def _linear_function(torch, sign: float):
    class Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias):
            ctx.save_for_backward(x, weight)
            return x @ weight.T + bias

        @staticmethod
        def backward(ctx, grad):
            x, weight = ctx.saved_tensors
            return grad @ weight, grad.T @ x, sign * grad.sum(0)

    return Linear


def test_check_autograd_function():
    torch = pytest.importorskip("torch")
    weight = torch.tensor(RNG.normal(size=(2, 4)), dtype=torch.float32)
    right = cr.check_autograd_function(_linear_function(torch, 1.0), X.astype(np.float32),
                                       weight, np.zeros(2))
    assert right and [row.name for row in right.rows] == ["dx", "dweight", "dbias"]
    assert all(row.max_rel_error < 1e-6 for row in right.rows)  # checked in float64
    wrong = cr.check_autograd_function(_linear_function(torch, -1.0), X, weight, np.zeros(2))
    assert not wrong and wrong.cause == "dbias"
    assert [d.identifier for d in wrong.diagnosis] == ["sign_flipped"]
    # torch.autograd.gradcheck agrees on the verdicts
    inputs = (torch.tensor(X, requires_grad=True), weight.double().requires_grad_(),
              torch.zeros(2, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(_linear_function(torch, 1.0).apply, inputs)
    assert not torch.autograd.gradcheck(_linear_function(torch, -1.0).apply, inputs,
                                        raise_exception=False)


def test_backward_taking_the_inputs_instead_of_a_cache():
    def scaled_square(x, scale):
        return scale * x ** 2

    def scaled_square_backward(dout, x, scale):
        return 2 * scale * x * dout, np.sum(x ** 2 * dout, keepdims=True)

    scale = np.array([1.5])
    report = cr.check_functions(scaled_square, scaled_square_backward, X, scale)
    assert report and [row.name for row in report.rows] == ["dx", "dscale"]
    wrong = cr.check_functions(scaled_square, lambda dout, x, s: (scale * x * dout,
                                                                  np.sum(x ** 2 * dout)), X, scale)
    assert [d.identifier for d in wrong.diagnosis] == ["scaled"] and wrong.cause == "dx"
