"""The scikit-learn-MLP pieces of ``chainrule.nn``: canonical sample-weighted losses,
``SparseInputDense``, the L2 penalty, ``Dense.wrap`` — against worked numbers, finite
differences (float64) and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from chainrule.nn.canonical_losses import (
    HalfPoissonDeviance,
    HalfSquaredError,
    SigmoidLogLoss,
    SoftmaxLogLoss,
)
from chainrule.nn.layers import Dense
from chainrule.nn.regularization import add_l2_gradient, l2_penalty
from chainrule.nn.sparse import SparseInputDense, is_sparse
from conftest import central_differences

LOSSES = [SoftmaxLogLoss, SigmoidLogLoss, HalfSquaredError, HalfPoissonDeviance]


def _targets(loss_class, rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Valid targets: one-hot rows, 0/1 indicators, real values, counts."""
    if loss_class is SoftmaxLogLoss:
        return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    if loss_class is SigmoidLogLoss:
        return rng.integers(0, 2, shape).astype(float)
    if loss_class is HalfPoissonDeviance:
        return rng.poisson(2.0, shape).astype(float)
    return rng.normal(size=shape)


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_backward_is_the_gradient_of_forward(loss_class, weighted, rng):
    z = rng.normal(size=(6, 3))
    target = _targets(loss_class, rng, z.shape)
    weights = rng.uniform(0.1, 3.0, size=6) if weighted else None
    loss = loss_class()
    loss.forward(z, target, weights)
    numeric = central_differences(lambda v: loss_class().forward(v, target, weights), z)
    assert_allclose(loss.backward(), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_the_gradient_is_weighted_prediction_minus_target(loss_class, rng):
    # The canonical-link identity the fused backward rests on: w (h(z) - Y) / Σw.
    z = rng.normal(size=(5, 4))
    target = _targets(loss_class, rng, z.shape)
    weights = rng.uniform(0.0, 2.0, size=5)
    loss = loss_class()
    loss.forward(z, target, weights)
    expected = weights[:, None] * (loss.output(z) - target) / weights.sum()
    assert_allclose(loss.backward(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_integer_weights_equal_repeated_rows(loss_class, rng):
    z = rng.normal(size=(4, 3))
    target = _targets(loss_class, rng, z.shape)
    counts = np.array([1, 3, 0, 2])
    repeated = np.repeat(np.arange(4), counts)
    weighted_loss, repeated_loss = loss_class(), loss_class()
    value = weighted_loss.forward(z, target, counts)
    assert value == pytest.approx(repeated_loss.forward(z[repeated], target[repeated]),
                                  rel=1e-12)
    # The gradient of each distinct row is the sum over its copies.
    summed = np.zeros_like(z)
    np.add.at(summed, repeated, repeated_loss.backward())
    assert_allclose(weighted_loss.backward(), summed, rtol=1e-12, atol=1e-15)


def test_worked_examples():
    # softmax([0, ln 3]) = (1/4, 3/4); E = -ln(3/4) for class 1, gradient (1/4, -1/4).
    loss = SoftmaxLogLoss()
    assert loss(np.array([[0.0, np.log(3.0)]]), np.array([[0.0, 1.0]])) == pytest.approx(
        -np.log(0.75), rel=1e-15)
    assert_allclose(loss.backward(), [[0.25, -0.25]], rtol=1e-15)
    # σ(ln 3) = 3/4; target 0 costs -ln(1/4); weights 1 and 3 over two rows.
    loss = SigmoidLogLoss()
    value = loss(np.array([[np.log(3.0)], [0.0]]), np.array([[0.0], [1.0]]), np.array([1, 3]))
    assert value == pytest.approx((np.log(4.0) + 3 * np.log(2.0)) / 4, rel=1e-15)
    assert_allclose(loss.backward(), [[0.75 / 4], [3 * -0.5 / 4]], rtol=1e-15)
    # μ = e, y = 2: 2 ln(2/e) - 2 + e.
    loss = HalfPoissonDeviance()
    assert loss(np.array([[1.0]]), np.array([[2.0]])) == pytest.approx(
        2 * np.log(2.0) - 2 - 2 + np.e, rel=1e-15)
    assert_allclose(loss.backward(), [[np.e - 2]], rtol=1e-15)


@given(st.floats(-800, 800), st.sampled_from([0.0, 1.0]))
def test_sigmoid_log_loss_is_finite_and_exact_for_huge_logits(z, label):
    loss = SigmoidLogLoss()
    value = loss(np.array([[z]]), np.array([[label]]))
    # -log σ(z) = softplus(-z) for y = 1; softplus(z) for y = 0.
    expected = np.logaddexp(0.0, -z if label else z)
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert np.all(np.isfinite(loss.backward()))


def test_zero_weights_contribute_nothing(rng):
    z, target = rng.normal(size=(3, 2)), np.eye(2)[[0, 1, 0]]
    loss = SoftmaxLogLoss()
    assert loss(z, target, np.zeros(3)) == 0.0
    assert_array_equal(loss.backward(), np.zeros((3, 2)))
    # A zero-weight row changes neither the loss nor the other rows' gradients.
    kept = SoftmaxLogLoss()
    value = kept(z[:2], target[:2], np.array([1.0, 2.0]))
    assert loss(z, target, np.array([1.0, 2.0, 0.0])) == pytest.approx(value, rel=1e-15)
    assert_allclose(loss.backward()[:2], kept.backward(), rtol=1e-15)


@pytest.mark.parametrize(("bad", "message"), [
    ({"target": np.zeros((2, 3))}, r"target must have the output's shape \(2, 2\)"),
    ({"sample_weight": np.ones(3)}, r"sample_weight must have shape \(2,\)"),
    ({"sample_weight": np.array([1.0, -1.0])}, "finite and non-negative"),
])
def test_bad_targets_and_weights_are_named(bad, message):
    arguments = {"output": np.zeros((2, 2)), "target": np.eye(2), "sample_weight": None, **bad}
    with pytest.raises(ValueError, match=message):
        SoftmaxLogLoss().forward(**arguments)
    with pytest.raises(ValueError, match="targets must be >= 0"):
        HalfPoissonDeviance().forward(np.zeros((1, 1)), -np.ones((1, 1)))


def test_losses_agree_with_pytorch(rng):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    z = rng.normal(size=(7, 3))
    weights = rng.uniform(0.2, 2.0, size=7)
    tz, tw = torch.tensor(z, requires_grad=True), torch.tensor(weights)

    def compare(loss, target, torch_value):
        value = loss.forward(z, target, weights)
        (grad,) = torch.autograd.grad(torch_value, tz)
        assert value == pytest.approx(torch_value.item(), rel=1e-12)
        assert_allclose(loss.backward(), grad.numpy(), rtol=1e-10, atol=1e-14)

    onehot = _targets(SoftmaxLogLoss, rng, z.shape)
    per_row = functional.cross_entropy(tz, torch.tensor(onehot), reduction="none")
    compare(SoftmaxLogLoss(), onehot, (tw * per_row).sum() / tw.sum())
    labels = _targets(SigmoidLogLoss, rng, z.shape)
    per_entry = functional.binary_cross_entropy_with_logits(tz, torch.tensor(labels),
                                                            reduction="none")
    compare(SigmoidLogLoss(), labels, (tw * per_entry.sum(1)).sum() / tw.sum())
    values = rng.normal(size=z.shape)
    squared = 0.5 * ((tz - torch.tensor(values)) ** 2).sum(1)
    compare(HalfSquaredError(), values, (tw * squared).sum() / tw.sum())
    counts = _targets(HalfPoissonDeviance, rng, z.shape)
    # PyTorch's Poisson NLL on log-rates is exp(z) - y z; the deviance adds y log y - y.
    nll = functional.poisson_nll_loss(tz, torch.tensor(counts), log_input=True, full=False,
                                      reduction="none")
    constant = torch.tensor(np.where(counts > 0, counts * np.log(np.where(counts > 0, counts,
                                                                          1)), 0) - counts)
    compare(HalfPoissonDeviance(), counts, (tw * (nll + constant).sum(1)).sum() / tw.sum())


@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_sparse_input_dense_matches_dense_without_densifying(layout, rng):
    dense_x = rng.normal(size=(6, 5)) * (rng.random((6, 5)) < 0.3)
    sparse_x = sp.csr_matrix(dense_x) if layout == "csr" else sp.csc_matrix(dense_x)
    weights, bias = rng.normal(size=(5, 3)), rng.normal(size=3)
    plain = Dense.wrap(weights.copy(), bias.copy())
    sparse_layer = SparseInputDense.wrap(weights.copy(), bias.copy())
    assert_allclose(sparse_layer.forward(sparse_x), plain.forward(dense_x), rtol=1e-13)
    assert is_sparse(sparse_layer.x)  # the cached input is still the sparse matrix
    grad_out = rng.normal(size=(6, 3))
    sparse_layer._backward_params(grad_out)
    plain._backward_params(grad_out)
    for name in ("W", "b"):
        assert_allclose(sparse_layer.grads[name], plain.grads[name], rtol=1e-13, atol=1e-15)
    assert_allclose(sparse_layer.backward(grad_out), plain.backward(grad_out), rtol=1e-13)
    with pytest.raises(ValueError, match="non-finite"):
        sparse_layer.forward(sp.csr_matrix(np.array([[np.inf, 0, 0, 0, 0]])))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 5\)"):
        sparse_layer.forward(sp.csr_matrix(np.ones((2, 4))))


def test_l2_penalty_gradient_is_the_weights(rng):
    weights = [rng.normal(size=(3, 2)), rng.normal(size=(2, 1))]
    grads = [np.ones((3, 2)), np.zeros((2, 1))]
    add_l2_gradient(grads, weights, 0.5)
    flat = np.concatenate([w.ravel() for w in weights])

    def penalty(vector):
        return l2_penalty([vector[:6].reshape(3, 2), vector[6:].reshape(2, 1)])

    numeric = central_differences(penalty, flat)
    assert_allclose(np.concatenate([(g - start).ravel() for g, start in
                                    zip(grads, [np.ones((3, 2)), np.zeros((2, 1))],
                                        strict=True)]), 0.5 * numeric, rtol=1e-7)
    assert l2_penalty([np.array([[3.0, 4.0]])]) == 12.5


def test_dense_wrap_shares_the_arrays_and_refuses_mismatches():
    weights, bias = np.zeros((3, 2)), np.zeros(2)
    layer = Dense.wrap(weights, bias)
    layer.params["W"] += 1.0  # an update in place is an update of the caller's array
    assert weights.sum() == 6.0 and layer.params["b"] is bias
    with pytest.raises(ValueError, match=r"Dense\.wrap: needs float weights"):
        Dense.wrap(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"Dense\.wrap: needs float weights"):
        Dense.wrap(np.zeros((3, 2), dtype=np.float32), np.zeros(2))
