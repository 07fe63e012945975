"""gradcheck on a list of the user's own layers (tests/user_code/), mixed with chainrule's."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.check.adapters import ConventionError
from chainrule.check.calls import UserCodeError
from chainrule.testing import assert_network_correct
from user_code import attribute_style, book_style, column_style, per_sample


class Dropout:
    """A mask drawn on every forward, as in training."""

    def forward(self, inputs):
        self.mask = np.random.default_rng().random(inputs.shape) < 0.5
        return inputs * self.mask / 0.5

    def backward(self, dvalues):
        return dvalues * self.mask / 0.5


def _data(n_in: int = 4, n_classes: int = 3, batch: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, n_in)), np.arange(batch) % n_classes


def _row(report: cr.Report, name: str):
    return next(row for row in report.rows if row.name == name)


def _state(layer: object) -> dict:
    return {name: copy.deepcopy(value) for name, value in vars(layer).items()}


def _same_state(before: dict, after: dict) -> bool:
    return before.keys() == after.keys() and all(
        np.array_equal(value, after[name]) if isinstance(value, np.ndarray)
        else value == after[name] for name, value in before.items())


def _book_network(widths: list[int]) -> list[object]:
    layers = []
    for n_in, n_out in itertools.pairwise(widths):
        layers += [book_style.Layer_Dense(n_in, n_out), book_style.Activation_ReLU()]
    return layers[:-1]


def _as_chainrule(user_layers: list[object]) -> cr.Sequential:
    """The same network in chainrule's layers, with the user's weights."""
    layers = []
    for layer in user_layers:
        if isinstance(layer, book_style.Layer_Dense):
            dense = cr.Dense(*layer.weights.shape)
            dense.params["W"][...] = layer.weights
            dense.params["b"][...] = layer.biases[0]
            layers.append(dense)
        else:
            layers.append(cr.ReLU())
    return cr.Sequential(layers)


def test_a_network_of_book_style_layers_passes_and_is_left_untouched():
    layers = _book_network([4, 5, 3])
    before = [_state(layer) for layer in layers]
    X, y = _data()
    report = cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, y)
    assert report.passed
    assert [row.name for row in report.rows][:5] == [
        "layer 0 (Layer_Dense) input gradient", "layer 0 (Layer_Dense) ∂/∂weights",
        "layer 0 (Layer_Dense) ∂/∂biases", "network ∂L/∂0.weights", "network ∂L/∂0.biases"]
    assert "layer 1 (Activation_ReLU) input gradient" in [row.name for row in report.rows]
    # Never run, never changed: no output, inputs or gradients stored on the user's objects.
    assert all(_same_state(state, _state(layer)) for state, layer in zip(before, layers,
                                                                           strict=True))
    assert cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, y, fast=True).passed


@settings(max_examples=10, deadline=None)
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       batch=st.integers(1, 7), seed=st.integers(0, 100))
def test_the_same_numbers_as_the_network_in_chainrule_layers(widths, batch, seed):
    user_layers = _book_network([3, *widths])
    model = _as_chainrule(user_layers)
    X, y = _data(3, widths[-1], batch, seed)
    ours = cr.gradcheck(user_layers, cr.SoftmaxCrossEntropy(), X, y)
    theirs = cr.gradcheck(model, cr.SoftmaxCrossEntropy(), X, y)
    assert ours.passed and theirs.passed
    for index in range(0, len(user_layers), 2):
        for user_name, name in (("weights", "W"), ("biases", "b")):
            mine = _row(ours, f"network ∂L/∂{index}.{user_name}")
            reference = _row(theirs, f"network ∂L/∂{index}.{name}")
            np.testing.assert_allclose(mine.analytic.reshape(-1), reference.analytic.reshape(-1),
                                       rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(mine.numeric.reshape(-1), reference.numeric.reshape(-1),
                                       rtol=1e-6, atol=1e-9)


def test_the_numeric_network_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    layers = _book_network([4, 6, 3])
    X, y = _data()
    report = cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, y)
    weights = [torch.tensor(layers[i].weights, requires_grad=True) for i in (0, 2)]
    biases = [torch.tensor(layers[i].biases, requires_grad=True) for i in (0, 2)]
    hidden = torch.relu(torch.tensor(X) @ weights[0] + biases[0])
    loss = torch.nn.functional.cross_entropy(hidden @ weights[1] + biases[1], torch.tensor(y))
    loss.backward()
    for position, index in enumerate((0, 2)):
        np.testing.assert_allclose(_row(report, f"network ∂L/∂{index}.weights").numeric,
                                   weights[position].grad.numpy(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(_row(report, f"network ∂L/∂{index}.biases").numeric,
                                   biases[position].grad.numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("layers", "loss", "failing", "identifier"), [
    # the seed question: a softmax layer's backward with the diagonal h_j(1 - h_j) only
    ([book_style.Layer_Dense(4, 5), book_style.Activation_ReLU(),
      book_style.Layer_Dense(5, 3), attribute_style.SoftmaxDiagonal()],
     cr.CrossEntropy(), 3, "diagonal_only"),
    # the other: A - T used in a softmax layer that is followed by the loss's own backward
    ([book_style.Layer_Dense(4, 3), book_style.Activation_Softmax_Shortcut()],
     cr.CrossEntropy(), 1, "fused_shortcut"),
    ([book_style.Layer_Dense_Averaged(4, 5), book_style.Activation_ReLU(),
      book_style.Layer_Dense(5, 3)], cr.SoftmaxCrossEntropy(), 0, "averaged_in_layer"),
])
def test_a_wrong_layer_of_the_users_is_named_with_its_mistake(layers, loss, failing, identifier):
    X, y = _data()
    report = cr.gradcheck(layers, loss, X, y)
    assert not report.passed and report.failing_layer == failing
    assert report.cause.startswith(f"layer {failing} ({type(layers[failing]).__name__})")
    diagnosed = [item.identifier for row in report.failed_rows for item in row.diagnosis]
    assert identifier in diagnosed
    assert not cr.gradcheck(layers, loss, X, y, fast=True).passed


def test_the_pytest_assertion_names_the_layer_and_the_mistake():
    X, y = _data()
    assert_network_correct(_book_network([4, 5, 3]), cr.SoftmaxCrossEntropy(), X, y)
    with pytest.raises(AssertionError, match=r"FAILED: layer 1 \(Activation_Softmax_Shortcut\)"
                                             r" input gradient.*fused_shortcut"):
        assert_network_correct([book_style.Layer_Dense(4, 3),
                                book_style.Activation_Softmax_Shortcut()], cr.CrossEntropy(), X, y)


def test_column_layout_and_one_sample_at_a_time():
    """The video-tutorial style: columns (features, B), one column at a time, and a backward
    that takes the learning rate and updates the weights itself."""
    X, y = _data()
    network = [column_style.Dense(4, 5), column_style.Sigmoid(), column_style.Dense(5, 3)]
    before = network[0].weights.copy()
    batched = cr.gradcheck(network, cr.SoftmaxCrossEntropy(), X.T, y, layout="columns")
    assert batched.passed, batched
    assert np.array_equal(network[0].weights, before)
    one_at_a_time = cr.gradcheck(network, cr.SoftmaxCrossEntropy(), X.T, y, layout="columns",
                                 per_sample=True)
    np.testing.assert_allclose(_row(one_at_a_time, "network ∂L/∂0.weights").analytic,
                               _row(batched, "network ∂L/∂0.weights").analytic, rtol=1e-12)
    # the first seed question: the softmax Jacobian evaluated at the logits z, not at a
    wrong = cr.gradcheck([column_style.Dense(4, 3), column_style.SoftmaxAtInput()],
                         cr.CrossEntropy(), X.T, y, layout="columns", per_sample=True)
    assert wrong.failing_layer == 1
    assert "evaluated_at_input" in [item.identifier for row in wrong.failed_rows
                                    for item in row.diagnosis]
    assert cr.gradcheck([per_sample.Neuron(4, 3)], cr.SoftmaxCrossEntropy(), X, y,
                        per_sample=True).passed
    with pytest.raises(ValueError, match=r"X must be a non-empty batch \(features, B\)"):
        cr.gradcheck(network, cr.SoftmaxCrossEntropy(), X[0], y, layout="columns")


def test_chainrule_layers_and_the_users_mix_and_float32_is_checked_in_float64():
    user_dense = book_style.Layer_Dense(5, 3)
    user_dense.weights = user_dense.weights.astype(np.float32)
    user_dense.biases = user_dense.biases.astype(np.float32)
    layers = [cr.Dense(4, 5, seed=0), attribute_style.Tanh(), user_dense]
    X, y = _data()
    report = cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, y)
    assert report.passed, report
    assert max(row.max_rel_error for row in report.rows) < 1e-6  # not float32's 1e-3
    assert user_dense.weights.dtype == np.float32  # the user's layer is left as it was


def test_a_gradient_the_users_backward_does_not_store_is_named():
    layers = [attribute_style.DenseForgetsToStore(4, 3)]
    X, y = _data()
    report = cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, y)
    assert report.failing_layer == 0
    network_w = _row(report, "network ∂L/∂0.W")
    assert not network_w.passed
    assert network_w.problem == "backward did not store the gradient of W"


def test_what_cannot_be_checked_is_named_by_position():
    X, y = _data()
    with pytest.raises(TypeError, match=r"^layer 1 is the class Activation_ReLU; pass an "
                                        r"instance: Activation_ReLU\(\.\.\.\)$"):
        cr.gradcheck([book_style.Layer_Dense(4, 3), book_style.Activation_ReLU],
                     cr.SoftmaxCrossEntropy(), X, y)
    with pytest.raises(ConventionError, match=r"^layer 1: "):
        cr.gradcheck([book_style.Layer_Dense(4, 3), object()], cr.SoftmaxCrossEntropy(), X, y)
    with pytest.raises(TypeError, match="a Sequential or a non-empty list of layers, got list"):
        cr.gradcheck([], cr.SoftmaxCrossEntropy(), X, y)
    with pytest.raises(ConventionError, match=r"^cannot tell how to check object: no forward"):
        cr.check_layer(object(), X)  # no __dict__: it raised TypeError from vars()
    with pytest.raises(ValueError, match="layout='columns' is for a list of your own layers"):
        cr.gradcheck(cr.mlp(4, [3], 3), cr.SoftmaxCrossEntropy(), X.T, y, layout="columns")
    with pytest.raises(ValueError, match=r"^layer 1 \(Activation_Softmax_Loss_Categorical"
                                         r"Crossentropy\) takes inputs, y_true in forward: a "
                                         r"loss, not a layer\. Leave it out of the list and "
                                         r"pass it as the loss: cr\.gradcheck\(layers, "
                                         r"Activation_Softmax_Loss_CategoricalCrossentropy"):
        cr.gradcheck([book_style.Layer_Dense(4, 3),
                      book_style.Activation_Softmax_Loss_CategoricalCrossentropy()],
                     cr.SoftmaxCrossEntropy(), X, y)
    with pytest.raises(ValueError, match=r"^layer 1 \(Dropout\)\.forward gives a different "
                                         r"output each time for the same input"):
        cr.gradcheck([book_style.Layer_Dense(4, 3), Dropout()], cr.SoftmaxCrossEntropy(), X, y)
    with pytest.raises(UserCodeError, match=r"Crashes\.backward raised AttributeError"):
        cr.gradcheck([attribute_style.Crashes(4, 3)], cr.SoftmaxCrossEntropy(), X, y)


def test_sequential_points_users_layers_to_gradcheck():
    with pytest.raises(TypeError, match=r"^Sequential: layer 0 is a Layer_Dense object, not a "
                                        r"chainrule layer; to gradient-check a network of your "
                                        r"own layers, pass them as a list: chainrule\.gradcheck"):
        cr.Sequential(book_style.Layer_Dense(4, 3))
    with pytest.raises(TypeError, match=r"the class Dense, not a chainrule layer; pass an "
                                        r"instance: Dense\(\.\.\.\)$"):
        cr.Sequential(cr.Dense)
    layers = [cr.Dense(2, 3, seed=0), cr.ReLU()]
    assert cr.Sequential(layer for layer in layers).layers == layers  # one generator, as before
    with pytest.raises(TypeError, match=r"^Sequential: layer 0 is 'relu', not a chainrule "
                                        r"layer$"):
        cr.Sequential("relu")  # not taken letter by letter


def test_the_example_script_checks_a_network_of_its_own_layers():
    script = Path(__file__).parents[1] / "examples" / "check_my_layer.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=True)
    assert "network with Activation_Softmax: failing layer 1\nFAILED: layer 1 (Activation_" \
           "Softmax) input gradient, entry [2, 0]" in run.stdout
    assert "network with Activation_Softmax_Fixed: failing layer None\nPASSED" in run.stdout
