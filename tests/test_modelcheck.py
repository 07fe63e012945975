"""check_model reads a whole network written as one class that computes its loss and its
gradients: ``loss, grads = model.loss(X, y)``, or forward, a loss method and backward."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.check.adapters import ConventionError
from chainrule.check.calls import UserCodeError
from chainrule.testing import assert_model_correct
from user_code import models


@pytest.fixture
def data(rng):
    return rng.normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])


def by_name(report) -> dict:
    return {row.name: row for row in report.rows}


def test_the_assignments_two_layer_net_passes_with_a_row_per_parameter(data):
    X, y = data
    net = models.TwoLayerNet(4, 5, 3)
    report = cr.check_model(net, X, y)
    assert report.passed, str(report)
    assert report.title == ("check_model: TwoLayerNet, batch 6 (float64), loss, grads = "
                            "loss(X, y)")
    assert sorted(by_name(report)) == ["∂L/∂W1", "∂L/∂W2", "∂L/∂b1", "∂L/∂b2"]
    _, grads = net.loss(X, y)  # the rows hold what the user's code returned
    for key, gradient in grads.items():
        np.testing.assert_array_equal(by_name(report)[f"∂L/∂{key}"].analytic, gradient)


def test_torch_agrees_with_the_numeric_gradients_of_the_two_layer_net(data):
    torch = pytest.importorskip("torch")
    X, y = data
    net = models.TwoLayerNet(4, 5, 3)
    report = cr.check_model(net, X, y)
    p = {key: torch.tensor(value, requires_grad=True) for key, value in net.params.items()}
    hidden = torch.relu(torch.tensor(X) @ p["W1"] + p["b1"])
    loss = torch.nn.functional.cross_entropy(hidden @ p["W2"] + p["b2"], torch.tensor(y))
    loss = loss + net.reg * ((p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
    loss.backward()
    for key, tensor in p.items():
        np.testing.assert_allclose(by_name(report)[f"∂L/∂{key}"].numeric, tensor.grad.numpy(),
                                   rtol=1e-6, atol=1e-9)


def test_a_gradient_summed_where_the_loss_averages_is_named(data):
    X, y = data
    report = cr.check_model(models.TwoLayerNetForgetsTheMean(4, 5, 3), X, y)
    assert not report.passed and report.cause == "∂L/∂b2"  # the row with a named mistake
    b2 = by_name(report)["∂L/∂b2"]  # no regularisation term: a pure factor of the batch size
    assert [item.identifier for item in b2.diagnosis] == ["missing_batch_mean"]
    assert "factor 6 = batch size 6" in b2.diagnosis[0].detail


def test_a_from_scratch_class_storing_its_gradients_is_read(data):
    X, y = data
    T = np.eye(3)[y]
    report = cr.check_model(models.NeuralNetwork(4, 5, 3), X, T)
    assert report.passed, str(report)
    # z1, z2 are cached activations with dz1, dz2 beside them: not parameters
    assert sorted(by_name(report)) == ["∂L/∂W1", "∂L/∂W2", "∂L/∂b1", "∂L/∂b2"]
    assert report.title.endswith("backward after compute_loss")
    wrong = cr.check_model(models.NeuralNetworkSigmoidDerivative(4, 5, 3), X, T)
    assert [row.name for row in wrong.failed_rows] == ["∂L/∂W1", "∂L/∂b1"]


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 8), hidden=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_correct_models_pass_at_any_shape(batch, hidden, seed):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(batch, 3)), rng.integers(0, 2, batch)
    assert cr.check_model(models.TwoLayerNet(3, hidden, 2), X, y).passed
    assert cr.check_model(models.NeuralNetwork(3, hidden, 2), X, np.eye(2)[y]).passed


def test_sample_checks_k_entries_per_parameter(data):
    X, y = data
    report = cr.check_model(models.TwoLayerNet(4, 5, 3), X, y, sample=3)
    assert report.passed
    assert {len(row.numeric) for row in report.rows} == {3}


def test_the_users_model_is_never_run_and_float32_is_checked_in_float64(data):
    X, y = data
    net = models.NeuralNetwork(4, 5, 3)
    net.W1 = net.W1.astype(np.float32)
    before = copy.deepcopy(vars(net))
    assert cr.check_model(net, X, np.eye(3)[y]).passed
    assert vars(net).keys() == before.keys()  # no z1, a1, dW1 added: a copy was run
    assert net.W1.dtype == np.float32
    assert_model_correct(models.TwoLayerNet(4, 5, 3), X, y)
    with pytest.raises(AssertionError, match="missing_batch_mean"):
        assert_model_correct(models.TwoLayerNetForgetsTheMean(4, 5, 3), X, y)


class OnlyForward:
    def __init__(self):
        self.W = np.ones((4, 3))

    def forward(self, X):
        return X @ self.W

    def compute_loss(self, y_pred, y_true):
        return float(np.mean((y_pred - y_true) ** 2))


class ForwardAndBackward(OnlyForward):
    def backward(self, X, y, epoch):
        self.dW = X.T @ (self.forward(X) - y) / epoch


def test_what_cannot_be_read_gets_one_line(data):
    X, y = data
    with pytest.raises(TypeError, match=r"^model is the class TwoLayerNet; pass an instance"):
        cr.check_model(models.TwoLayerNet, X, y)
    with pytest.raises(ConventionError, match=r"^cannot tell how to check OnlyForward: its loss "
                                              r"returns no gradients and there is no backward"):
        cr.check_model(OnlyForward(), X, np.zeros((6, 3)))
    with pytest.raises(ConventionError, match=r"^cannot tell how to check ForwardAndBackward: "
                                              r"backward takes 'epoch'"):
        cr.check_model(ForwardAndBackward(), X, np.zeros((6, 3)))
    with pytest.raises(TypeError, match=r"^model is a chainrule Sequential, which has no loss "
                                        r"of its own: check it with cr\.gradcheck"):
        cr.check_model(cr.mlp(4, [3], 3), X, y)
    with pytest.raises(ConventionError, match=r"^cannot tell how to check object: no loss"):
        cr.check_model(object(), X, y)
    with pytest.raises(UserCodeError, match=r"^TwoLayerNet\.loss raised ValueError"):
        cr.check_model(models.TwoLayerNet(4, 5, 3), X[:, :3], y)


def test_a_backward_that_updates_the_weights_is_read_from_its_update(data):
    X, y = data
    T = np.eye(3)[y]
    net = models.NetworkThatUpdatesItself(4, 5, 3)
    report = cr.check_model(net, X, T)
    assert report.passed, str(report)
    assert report.title.endswith("gradients read from its update at learning rate 1")
    assert sorted(by_name(report)) == ["∂L/∂W1", "∂L/∂W2", "∂L/∂b1", "∂L/∂b2"]
    reference = models.NeuralNetwork(4, 5, 3)
    reference.forward(X)
    reference.backward(X, T)
    np.testing.assert_allclose(by_name(report)["∂L/∂W1"].analytic, reference.dW1, rtol=1e-12,
                               atol=1e-15)
    forgot = cr.check_model(models.NetworkForgetsToUpdateB2(4, 5, 3), X, T)
    assert [row.name for row in forgot.failed_rows] == ["∂L/∂b2"]  # claimed 0: not updated
