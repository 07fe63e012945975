"""Central differences straddling a kink (ReLU's at 0, the user's anywhere): such samples are
left out, not failed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import chainrule as cr
from chainrule import experiment
from chainrule.check.adapters import as_layer
from chainrule.check.kinks import kinked_at, kinked_rows, straddling_rows
from chainrule.check.numerical import STEP
from user_code import attribute_style, book_style


def test_straddling_rows_are_those_with_a_relu_input_within_one_step_of_zero():
    layers = [cr.Dense(2, 2, seed=0), cr.ReLU()]
    inputs = [np.ones((4, 2)), np.array([[0.0, 1.0], [0.9 * STEP, -2.0], [1.1 * STEP, 3.0],
                                         [-1.0, -0.5 * STEP]])]
    np.testing.assert_array_equal(straddling_rows(layers, inputs, None), [1, 1, 0, 1])
    np.testing.assert_array_equal(straddling_rows(layers, inputs, 1e-3), [1, 1, 1, 1])
    np.testing.assert_array_equal(straddling_rows([cr.Tanh(), cr.Tanh()], inputs, None),
                                  [0, 0, 0, 0])


def test_default_relu_network_passes_at_batch_256():
    report = experiment.check_network(batch_size=256)
    assert report.passed, str(report)
    assert "1 of 256 samples left out: a ReLU input within one finite-difference step" in (
        " ".join(report.notes))


class HalfWrongReLU(cr.ReLU):
    """ReLU whose backward forgets the mask: passes gradients of negative inputs through."""

    def backward(self, grad_out):
        return np.asarray(grad_out).copy()


def test_a_wrong_relu_backward_still_fails_with_kinks_left_out(rng):
    X = rng.standard_normal((64, 3))
    X[5] = [0.0, 0.0, 0.0]  # every hidden input exactly 0: a straddling row
    model = cr.Sequential([cr.Dense(3, 4, seed=0), HalfWrongReLU(), cr.Dense(4, 2, seed=1)])
    model.params["0.b"][...] = 0.0
    report = cr.gradcheck(model, cr.SoftmaxCrossEntropy(), X, rng.integers(0, 2, 64))
    assert not report.passed
    assert report.failing_layer == 1
    assert any("1 of 64 samples left out" in note for note in report.notes)


def test_the_users_kinked_layers_are_found_by_their_one_sided_slopes():
    x = np.array([[0.0, 1.0], [0.9 * STEP, -2.0], [1.1 * STEP, 3.0], [-1.0, -0.5 * STEP]])
    for user_layer, expected in [(book_style.Activation_ReLU(), [1, 1, 0, 1]),
                                 (attribute_style.Tanh(), [0, 0, 0, 0]),  # smooth at 0
                                 (attribute_style.Sigmoid(), [0, 0, 0, 0])]:
        layer = as_layer(user_layer, x)
        output = layer.forward(x)
        cached = layer._x
        rows, names = kinked_rows([layer], [x, output], None)
        np.testing.assert_array_equal(rows, expected)
        assert names == ([type(user_layer).__name__] if any(expected) else [])
        assert layer._x is cached  # probed on a copy: the cache backward needs is untouched


def test_a_users_relu_network_passes_with_a_straddling_row_left_out(rng):
    """A correct network of the user's layers failed when a hidden input lay within one step
    of ReLU's kink; chainrule's own ReLU rows were already left out."""
    X = rng.standard_normal((64, 3))
    X[5] = 0.0  # with zero biases, every hidden input of this sample is exactly 0
    layers = [book_style.Layer_Dense(3, 4), book_style.Activation_ReLU(),
              book_style.Layer_Dense(4, 2)]
    layers[0].biases[...] = 0.0
    y = rng.integers(0, 2, 64)
    report = cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, y)
    assert report.passed, str(report)
    assert ("1 of 64 samples left out: an input of Activation_ReLU within one finite-difference "
            "step of a kink") in " ".join(report.notes)
    # a wrong backward is still caught on the other rows
    layers[1] = attribute_style.ReLUTimesOutput()
    wrong = cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, y)
    assert not wrong.passed and wrong.failing_layer == 1



def test_check_layer_leaves_out_rows_at_a_kink_and_says_so():
    """ReLU at an x holding 0 failed check_layer ('no classic mistake ... matches')."""
    x = np.array([[0.0, 1.0], [0.5, -2.0], [0.3, 0.2]])
    for layer in (cr.ReLU(), book_style.Activation_ReLU()):
        report = cr.check_layer(layer, x)
        assert report.passed, str(report)
        assert report.notes[0].startswith(
            f"1 of 3 rows of x left out: an input within one finite-difference step of a kink "
            f"of {type(layer).__name__}")
    wrong = cr.check_layer(attribute_style.LeakyReLU(), x)  # its backward negates: still caught
    assert not wrong.passed
    at_zero = cr.check_layer(cr.ReLU(), np.zeros((3, 2)))
    assert not at_zero.passed
    assert at_zero.notes[0].endswith("move x off it to check the layer")


def test_the_users_kinks_away_from_zero_are_found_too():
    """ReLU6's kink at 6 and hard tanh's at ±1 failed check_layer: only inputs near 0 were
    probed."""
    x = np.array([[6.0, 1.0], [0.5, 2.0], [3.0, 6.0 + 0.5 * STEP * 6], [7.0, -1.0]])
    np.testing.assert_array_equal(kinked_at(as_layer(attribute_style.ReLU6(), x), x, None),
                                  [1, 0, 1, 0])
    np.testing.assert_array_equal(kinked_at(as_layer(attribute_style.HardTanh(), x), x, None),
                                  [1, 0, 0, 1])
    report = cr.check_layer(attribute_style.ReLU6(), x)
    assert report.passed, str(report)
    assert report.notes[0].startswith("2 of 4 rows of x left out: an input within one "
                                      "finite-difference step of a kink of ReLU6")
    wrong = cr.check_layer(attribute_style.ReLU6ForgetsTheTop(), x)  # row 3 holds 7.0
    assert not wrong.passed


def test_a_users_hard_tanh_network_passes_with_the_rows_at_its_kinks_left_out(rng):
    X = rng.standard_normal((64, 3))
    layers = [cr.Dense(3, 3, seed=0), attribute_style.HardTanh(), cr.Dense(3, 2, seed=1)]
    W, b = layers[0].params["W"], layers[0].params["b"]
    X[7] = np.linalg.solve(W.T, 1.0 - b)
    assert np.allclose(layers[0].forward(X[7:8]), 1.0)  # every hidden input at the kink at 1
    report = cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), X, rng.integers(0, 2, 64))
    assert report.passed, str(report)
    assert any(note.startswith("1 of 64 samples left out: an input of HardTanh")
               for note in report.notes)


smooth_layers = [cr.Tanh(), cr.Sigmoid(), cr.Softmax(), cr.LogSoftmax(), cr.Dense(5, 5, seed=3),
                 attribute_style.Sigmoid()]


@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float64, (6, 5), elements=st.floats(-60, 60)),
       eps=st.sampled_from([None, 1e-4, 1e-6]))
def test_smooth_layers_have_no_kink_anywhere(x, eps):
    """Probing every input must not take a smooth layer's rows away from the check: their
    one-sided slopes agree to O(h), and saturated outputs differ by rounding only."""
    for layer in smooth_layers:
        assert not kinked_at(layer, x, eps).any(), type(layer).__name__


def test_a_random_layer_has_no_kinks_so_the_check_can_name_it_random(rng):
    """A dropout mask's differences looked like kinks in most rows: gradcheck left rows out,
    and with one row left its two masks matched one time in eight, so the layer was called
    one that mixes rows instead of random."""
    class Dropout:
        def forward(self, inputs):
            self.mask = np.random.default_rng().random(inputs.shape) < 0.5
            return inputs * self.mask / 0.5

        def backward(self, dvalues):
            return dvalues * self.mask / 0.5

    x = rng.standard_normal((8, 3))
    layer = as_layer(Dropout(), x)
    for _ in range(50):
        assert not kinked_at(layer, x, None).any()
