"""Checking code written the way people write it (tests/user_code/), as they wrote it.

Each layer or function has an expected verdict and diagnosis; none may end in a raw
AttributeError, TypeError or NumPy error from inside chainrule.
"""

from __future__ import annotations

import threading
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.check.adapters import ConventionError
from user_code import attribute_style, book_style, column_style, dict_style, per_sample

X = np.random.default_rng(7).normal(size=(5, 4))

# (name, factory, keyword arguments of check_layer, expected diagnosis; None: passes)
LAYERS = [
    ("book Layer_Dense", lambda: book_style.Layer_Dense(4, 3), {}, None),
    ("book ReLU", book_style.Activation_ReLU, {}, None),
    ("book Softmax", book_style.Activation_Softmax, {}, None),
    ("book Dense averaged", lambda: book_style.Layer_Dense_Averaged(4, 3), {},
     "averaged_in_layer"),
    ("book Softmax A - T", book_style.Activation_Softmax_Shortcut, {}, "fused_shortcut"),
    ("book Softmax +a_i a_j", book_style.Activation_Softmax_PlusCross, {},
     "off_diagonal_sign"),
    ("attr Dense", lambda: attribute_style.Dense(4, 3), {}, None),
    ("attr Dense db (1, n) for b (n,)", lambda: attribute_style.DenseBiasKeepdims(4, 3), {},
     None),
    ("attr Dense dW never stored", lambda: attribute_style.DenseForgetsToStore(4, 3), {},
     "grads_not_stored"),
    ("attr Dense dW transposed", lambda: attribute_style.DenseTransposed(4, 4), {},
     "transposed"),
    ("attr Sigmoid", attribute_style.Sigmoid, {}, None),
    ("attr Sigmoid σ·g", attribute_style.SigmoidOutputOnly, {},
     "output_instead_of_derivative"),
    ("attr ReLU relu(z)·g", attribute_style.ReLUTimesOutput, {},
     "output_instead_of_derivative"),
    ("attr Tanh backprop()", attribute_style.Tanh, {}, None),
    ("out, cache = forward(x); dx, dW, db = backward(dout, cache)",
     lambda: attribute_style.AffineCache(4, 3), {}, None),
    ("attr LeakyReLU back() -> self.dx", attribute_style.LeakyReLU, {}, "sign_flipped"),
    ("attr Softmax backwards(grad, z)", attribute_style.Softmax, {}, None),
    ("attr Softmax at logits", attribute_style.SoftmaxAtLogits, {}, "evaluated_at_input"),
    ("attr Softmax no keepdims", attribute_style.SoftmaxNoKeepdims, {},
     "reduction_without_keepdims"),
    ("attr Softmax returns Jacobians", attribute_style.SoftmaxJacobians, {},
     "returned_jacobian"),
    ("attr Softmax a(1 - a)", attribute_style.SoftmaxDiagonal, {}, "diagonal_only"),
    ("attr Softmax forward without keepdims", attribute_style.SoftmaxForwardNoKeepdims, {},
     "reduction_without_keepdims"),
    ("attr Dense dx transposed", lambda: attribute_style.DenseInputGradientTransposed(4, 3), {},
     "transposed"),
    ("columns Dense backward(grad, lr)", lambda: column_style.Dense(4, 3),
     {"layout": "columns"}, None),
    ("columns Dense += lr·dW", lambda: column_style.DenseSignFlipped(4, 3),
     {"layout": "columns"}, "sign_flipped"),
    ("columns Sigmoid", column_style.Sigmoid, {"layout": "columns"}, None),
    ("columns Softmax, one (n, 1) column at a time", column_style.Softmax,
     {"layout": "columns", "per_sample": True}, None),
    ("columns Softmax at the input, one column at a time", column_style.SoftmaxAtInput,
     {"layout": "columns", "per_sample": True}, "evaluated_at_input"),
    ("per-sample Neuron", lambda: per_sample.Neuron(4, 3), {"per_sample": True}, None),
    ("dict Affine", lambda: dict_style.Affine(4, 3), {}, None),
]


@pytest.mark.parametrize(("factory", "options", "expected"),
                         [case[1:] for case in LAYERS], ids=[case[0] for case in LAYERS])
def test_user_layer_verdict_and_diagnosis(factory, options, expected):
    x = X.T if options.get("layout") == "columns" else X
    report = cr.check_layer(factory(), x, **options)
    if expected is None:
        assert report and report.passed, str(report)
        assert all(row.max_rel_error < 1e-6 for row in report.rows)
        return
    assert not report, str(report)
    identifiers = [item.identifier for item in report.diagnosis]
    assert identifiers == [expected], str(report)
    assert all(item.fix for item in report.diagnosis)
    assert expected in str(report) and "fix: " in str(report)
    assert "fix: " in report._repr_html_() and report.to_dict()["diagnosis"][0]["fix"]


def test_bool_of_a_report_is_its_verdict():
    wrong = cr.check_layer(attribute_style.SigmoidOutputOnly(), X)
    assert bool(wrong) is False and bool(cr.check_layer(attribute_style.Sigmoid(), X)) is True
    with pytest.raises(AssertionError):
        assert cr.check_layer(attribute_style.SigmoidOutputOnly(), X)


def test_stored_results_and_parameters_are_found_and_the_user_object_is_untouched():
    layer = book_style.Layer_Dense(4, 3)
    weights = layer.weights.copy()
    report = cr.check_layer(layer, X)
    assert [row.name for row in report.rows] == ["Layer_Dense input gradient",
                                                 "Layer_Dense ∂/∂weights",
                                                 "Layer_Dense ∂/∂biases"]
    np.testing.assert_array_equal(layer.weights, weights)
    assert not hasattr(layer, "output")


def test_columns_layout_reports_in_the_users_layout():
    report = cr.check_layer(column_style.Dense(4, 3), X.T, layout="columns")
    assert report.rows[0].analytic.shape == (4, 5)  # (features, B), as given
    assert report.rows[1].name.endswith("∂/∂weights") and report.rows[1].analytic.shape == (3, 4)


def test_learning_rate_backward_leaves_the_parameters_as_they_were():
    layer = column_style.Dense(4, 3)
    weights = layer.weights.copy()
    assert cr.check_layer(layer, X.T, layout="columns")
    np.testing.assert_array_equal(layer.weights, weights)


def test_a_bug_only_at_some_batch_sizes_is_caught_and_named():
    report = cr.check_layer(attribute_style.SoftmaxNoKeepdims(), X)  # B = 5, C = 4
    crashed = [row for row in report.rows if row.problem is not None]
    assert crashed and "broadcast" in crashed[0].problem and "attribute_style.py:" in (
        crashed[0].problem)
    assert "passes at B = 1" in report.diagnosis[0].detail
    one = [row for row in report.rows if row.name.endswith("at B=1")]
    assert one and all(row.passed for row in one)


def test_user_code_that_raises_everywhere_is_reported_as_theirs():
    with pytest.raises(cr.UserCodeError) as caught:
        cr.check_layer(attribute_style.Crashes(4, 3), X)
    message = str(caught.value)
    assert message.startswith("Crashes.backward raised AttributeError: 'function' object has "
                              "no attribute 'T'")
    assert "attribute_style.py:" in message and "(5, 3)" in message
    assert isinstance(caught.value.__cause__, AttributeError)
    assert caught.value.location.endswith(
        f":{attribute_style.Crashes.backward.__code__.co_firstlineno + 3}")


def test_the_users_file_is_named_as_they_would_type_it(monkeypatch):
    """Inside the working directory the file is relative (no machine path); outside, whole."""
    source = Path(attribute_style.__file__).resolve()
    line = attribute_style.Crashes.backward.__code__.co_firstlineno + 3
    for folder, shown in [(source.parents[1], f"{Path('user_code', source.name)}:{line}"),
                          (source.parent, f"{source.name}:{line}"),
                          (source.parents[2] / "src", f"{source}:{line}")]:
        monkeypatch.chdir(folder)
        with pytest.raises(cr.UserCodeError) as caught:
            cr.check_layer(attribute_style.Crashes(4, 3), X)
        assert caught.value.location == shown
        assert f" — at {shown}, called with input shape (5, 3)" in str(caught.value)


def test_a_class_or_a_single_sample_gets_a_hint():
    with pytest.raises(TypeError, match=r"^layer is the class Dense; pass an instance: "
                                        r"check_layer\(Dense\(\.\.\.\), x\)$"):
        cr.check_layer(attribute_style.Dense, X)
    with pytest.raises(ValueError, match=r"^x must be a non-empty batch \(B, features\), got "
                                         r"shape \(4,\); for one sample pass x\[None\] \(a "
                                         r"batch of 1\), or per_sample=True if your code takes "
                                         r"one sample at a time$"):
        cr.check_layer(attribute_style.Dense(4, 3), X[0])
    with pytest.raises(ValueError, match=r"\(features, B\), got shape \(4,\); for one sample "
                                         r"pass x\[:, None\]"):
        cr.check_layer(column_style.Dense(4, 3), X[0], layout="columns")
    with pytest.raises(ValueError, match=r"got shape \(0, 4\)$"):
        cr.check_layer(attribute_style.Dense(4, 3), X[:0])
    assert cr.check_layer(attribute_style.Dense(4, 3), X[0][None])


def test_an_unknown_convention_gets_one_error_with_the_wrap_layer_call():
    with pytest.raises(ConventionError, match=r"Found methods \['backpropagate', 'propagate'\], "
                                              r"array attributes: W \(3, 2\)") as caught:
        cr.check_layer(attribute_style.Propagates(), X[:, :3])
    assert "wrap_layer(layer, forward='propagate', backward='backpropagate'" in str(caught.value)
    layer = attribute_style.Propagates()
    wrapped = cr.wrap_layer(layer, forward="propagate", backward="backpropagate")
    assert cr.check_layer(wrapped, X[:, :3])  # no parameter gradient to check: input only


def test_wrap_layer_with_closures_and_arrays():
    W = np.random.default_rng(0).normal(size=(4, 2))
    cache = {}

    def forward(x):
        cache["x"] = x
        return np.tanh(x @ W)

    def backward(g):
        dz = g * (1 - np.tanh(cache["x"] @ W) ** 2)
        cache["dW"] = cache["x"].T @ dz
        return dz @ W.T

    layer = cr.wrap_layer(forward=forward, backward=backward, params={"W": W},
                          grads={"W": lambda: cache["dW"]})
    before = W.copy()
    report = cr.check_layer(layer, X)
    assert report and [row.name for row in report.rows][1].endswith("∂/∂W")
    np.testing.assert_array_equal(W, before)  # perturbed in place, restored exactly
    halved = cr.wrap_layer(forward=forward, backward=lambda g: backward(g) / 2,
                           params={"W": W}, grads={"W": lambda: cache["dW"]})
    assert [d.identifier for d in cr.check_layer(halved, X).diagnosis] == ["scaled"]


class ScaledTanh(cr.Tanh):
    """A user's own layer class (deep-copied by gradcheck, unlike the built-in layers)."""


@pytest.mark.parametrize("layer_class", [cr.Tanh, ScaledTanh])
def test_replaced_method_on_one_layer_instance_is_checked_in_both_gradcheck_paths(layer_class):
    def make(replace: bool):
        model = cr.mlp(4, [5], 3, activation="tanh", seed=0)
        model.layers[1] = layer_class()
        if replace:
            tanh = model.layers[1]
            original = type(tanh).backward

            def backward(self, grad_out):
                return 2 * original(self, grad_out)

            tanh.backward = types.MethodType(backward, tanh)
        return model

    y = np.array([0, 1, 2, 1, 0])
    for fast in (False, True):
        assert cr.gradcheck(make(False), cr.SoftmaxCrossEntropy(), X, y, fast=fast)
        report = cr.gradcheck(make(True), cr.SoftmaxCrossEntropy(), X, y, fast=fast)
        assert not report and report.failing_layer == 1
        assert [d.identifier for d in report.diagnosis] == ["scaled"]
    plain = cr.gradcheck(make(True), cr.SoftmaxCrossEntropy(), X, y)
    fast = cr.gradcheck(make(True), cr.SoftmaxCrossEntropy(), X, y, fast=True)
    assert [row.name for row in plain.rows] == [row.name for row in fast.rows]
    for a, b in zip(plain.rows, fast.rows, strict=True):
        np.testing.assert_array_equal(a.analytic, b.analytic)
        np.testing.assert_array_equal(a.numeric, b.numeric)


def test_readme_check_your_own_code_output_is_real():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Check your own code")[1]
    code = section.split("```python\n")[1].split("```")[0]
    pasted = section.split("```text\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(code.replace("print(", "result = ("), "README", "exec"), namespace)
    assert str(namespace["result"]) + "\n" == pasted


class _RowsDense:
    """``y = x @ W + b`` on rows ``(B, n)``, optionally with ``dW`` scaled by ``factor``."""

    def __init__(self, W, b, factor=1.0):
        self.W, self.b, self.factor = W, b, factor

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.W + self.b)

    def backward(self, grad):
        dz = grad * (1 - np.tanh(self.x @ self.W + self.b) ** 2)
        self.dW, self.db = self.factor * (self.x.T @ dz), dz.sum(axis=0)
        return dz @ self.W.T


class _ColumnsDense(_RowsDense):
    """The same layer written on columns ``(n, B)``: ``y = Wᵀ x + b``."""

    def forward(self, x):
        return super().forward(x.T).T

    def backward(self, grad):
        return super().backward(grad.T).T


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 6), n_in=st.integers(1, 5), n_out=st.integers(1, 5),
       factor=st.sampled_from([1.0, -1.0, 3.0]), seed=st.integers(0, 2**16))
def test_columns_layout_agrees_with_rows(batch, n_in, n_out, factor, seed):
    rng = np.random.default_rng(seed)
    W, b, x = rng.normal(size=(n_in, n_out)), rng.normal(size=n_out), rng.normal(size=(batch, n_in))
    rows = cr.check_layer(_RowsDense(W, b, factor), x)
    columns = cr.check_layer(_ColumnsDense(W, b, factor), x.T, layout="columns")
    assert bool(rows) is bool(columns) is (factor == 1.0)
    assert [row.name.replace("_Rows", "") for row in rows.rows] == [
        row.name.replace("_Columns", "") for row in columns.rows]
    np.testing.assert_allclose(columns.rows[0].analytic, rows.rows[0].analytic.T)
    np.testing.assert_allclose(columns.rows[0].numeric, rows.rows[0].numeric.T, atol=1e-9)
    for one, other in zip(rows.rows[1:], columns.rows[1:], strict=True):
        np.testing.assert_allclose(other.analytic, one.analytic)
    expected = {1.0: [], -1.0: ["sign_flipped"], 3.0: ["scaled"]}[factor]
    assert [d.identifier for d in columns.diagnosis] == [d.identifier for d in rows.diagnosis]
    if not (factor == 3.0 and batch == 3):  # dW = 3·xᵀdz at B = 3 reads as missing_batch_mean
        assert [d.identifier for d in rows.diagnosis] == expected


def test_a_layer_that_cannot_be_copied_gets_one_clear_error():
    class HoldsALock:
        def __init__(self):
            self.lock = threading.Lock()

        def forward(self, x):
            return 2 * x

        def backward(self, grad):
            return 2 * grad

    with pytest.raises(ValueError, match=r"cannot copy HoldsALock to check it \(cannot pickle"):
        cr.check_layer(HoldsALock(), X)


def test_arrays_without_a_gradient_beside_them_are_named_as_not_checked():
    class Scaled:
        def __init__(self):
            self.scale = np.array([2.0, 3.0, 0.5, 1.0])

        def forward(self, x):
            return x * self.scale

        def backward(self, grad):
            return grad * self.scale

    report = cr.check_layer(Scaled(), X)
    assert report and [row.name for row in report.rows] == ["Scaled input gradient"]
    assert "not checked, no gradient found beside them: scale (4,)" in str(report)
    assert not any("not checked" in note for note in cr.check_layer(attribute_style.Dense(4, 3),
                                                                     X).notes)


def test_float32_transposed_weights_are_checked_in_float64():
    class Dense32:
        def __init__(self):
            self.W = np.random.default_rng(0).normal(size=(3, 4)).T.astype(np.float32)

        def forward(self, x):
            self.x = x
            return x @ self.W

        def backward(self, grad):
            self.dW = self.x.T @ grad
            return grad @ self.W.T

    layer = Dense32()
    report = cr.check_layer(layer, X)
    assert report and report.rows[1].name == "Dense32 ∂/∂W"
    assert report.rows[1].max_rel_error < 1e-6  # float64 copies: float32 would be ~1e-3
    assert layer.W.dtype == np.float32 and not layer.W.flags.c_contiguous


def test_a_layer_with_batch_statistics_is_checked_over_the_whole_batch(rng):
    """A correct BatchNorm failed check_layer: refused as mixing rows at B > 1, and wrong at
    B = 1, where the stack of ±h copies keeps each column's mean and hid the mixing."""
    x = rng.normal(size=(6, 4))
    report = cr.check_layer(attribute_style.BatchNorm(4), x)
    assert report.passed, str(report)
    assert report.rows[0].name == "BatchNorm input gradient (whole batch: it mixes rows)"
    wrong = cr.check_layer(attribute_style.BatchNormAsIfPerRow(4), x)
    assert not wrong.passed
    assert wrong.rows[0].name.startswith("BatchNorm")  # still named after the user's class
    assert wrong.failed_rows[0].name.endswith("(whole batch: it mixes rows)")


def test_torch_agrees_with_the_whole_batch_gradient_of_batch_norm(rng):
    torch = pytest.importorskip("torch")
    x, g = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    layer = attribute_style.BatchNorm(3)
    report = cr.check_layer(layer, x, grad_out=g, batch_sizes=[5])
    inputs = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.batch_norm(inputs, None, None, torch.tensor(layer.gamma),
                                         torch.tensor(layer.beta), training=True, eps=1e-5)
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(report.rows[0].numeric, inputs.grad.numpy(), rtol=1e-6,
                               atol=1e-9)


def test_rowwise_jacobian_sees_batch_statistics_at_batch_one():
    from chainrule.check.numerical import MixesRowsError, rowwise_jacobian

    def centred(batch):
        return batch - batch.mean(axis=0)

    with pytest.raises(MixesRowsError, match="mixes rows"):
        rowwise_jacobian(centred, np.array([[0.5, -1.0, 2.0]]))


def test_gradcheck_sends_a_layer_with_batch_statistics_to_check_layer(rng):
    layers = [cr.Dense(3, 4, seed=0), attribute_style.BatchNorm(4), cr.Dense(4, 2, seed=1)]
    with pytest.raises(ValueError, match=r"^layer 1 \(BatchNorm\)\.forward gives different "
                                         r"results .*Check it alone: cr\.check_layer"):
        cr.gradcheck(layers, cr.SoftmaxCrossEntropy(), rng.normal(size=(8, 3)),
                     np.arange(8) % 2)
