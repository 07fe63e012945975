"""One rule for inputs: forward/model(x) take what the first layer takes; predict,
predict_proba and evaluate take raw inputs; a model's dtype decides its arithmetic."""

import copy
import pickle

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.io import datasets
from chainrule.nn.preprocessing import PreparedInputs


@pytest.fixture(scope="module")
def digits_model():
    X, y = datasets.load("digits")
    model = cr.mlp(64, 32, 10, seed=0)
    cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(1e-2), X, y, epochs=5, seed=0,
           scaling="standard", verbose=0)
    return model, X, y


def test_every_raw_input_path_gives_the_same_accuracy(digits_model):
    model, X, y = digits_model
    predicted = np.mean(model.predict(X) == y)
    loss, accuracy = cr.evaluate(model, cr.SoftmaxCrossEntropy(), X, y)
    assert accuracy == predicted > 0.95
    logits = model(model.prepare(X))
    assert np.mean(logits.argmax(axis=1) == y) == predicted
    assert loss == pytest.approx(cr.SoftmaxCrossEntropy().forward(logits, y), rel=1e-12)
    np.testing.assert_array_equal(model.predict_proba(X), cr.softmax(logits))


def test_raw_inputs_cannot_reach_the_first_layer_by_accident(digits_model):
    model, X, _ = digits_model
    for call in (model, model.forward):
        with pytest.raises(ValueError, match=r"records standard scaling .* pass "
                                             r"model\.prepare\(X\) for raw X"):
            call(X)
    prepared = model.prepare(X)
    assert isinstance(prepared, PreparedInputs) and isinstance(prepared[:5], PreparedInputs)
    assert model.prepare(prepared) is prepared  # prepare never scales twice
    np.testing.assert_allclose(model(prepared[:5]), model(prepared)[:5], rtol=1e-12)
    # A model without a recorded scaling takes plain arrays, as before.
    plain = cr.mlp(64, 8, 10, seed=0)
    assert plain(X).shape == (len(X), 10)


def test_prepared_inputs_keep_their_mark_through_copies_pickles_and_dtype_changes(digits_model):
    """``PreparedInputs`` is an ndarray subclass: a deep copy, a pickle, ``astype`` and
    ``copy`` stay prepared (so ``forward`` takes them, and ``prepare`` never scales them
    again), with the same values; only a plain array view drops the mark."""
    model, X, _ = digits_model
    prepared = model.prepare(X[:20])
    expected = model(prepared)
    variants = {"deepcopy": copy.deepcopy(prepared), "copy": prepared.copy(),
                "pickle": pickle.loads(pickle.dumps(prepared)),
                "astype float32": prepared.astype(np.float32)}
    for name, variant in variants.items():
        assert isinstance(variant, PreparedInputs), name
        assert model.prepare(variant) is variant, name  # not scaled a second time
        np.testing.assert_allclose(model(variant), expected, rtol=1e-5, err_msg=name)
    np.testing.assert_array_equal(variants["pickle"], prepared)
    with pytest.raises(ValueError, match="records standard scaling"):
        model(np.asarray(prepared))


def test_evaluate_names_the_feature_mismatch(digits_model, capsys, tmp_path):
    model, _, _ = digits_model
    X_iris, y_iris = datasets.load("iris")
    with pytest.raises(ValueError, match=r"model expects 64 features per row; the data has 4"):
        cr.evaluate(model, cr.SoftmaxCrossEntropy(), X_iris, y_iris)
    path = model.save(tmp_path / "digits.safetensors")
    assert main(["evaluate", str(path), "--data", "iris"]) == 2
    assert capsys.readouterr().err.strip() == (
        "chainrule evaluate: error: the model expects 64 features per row; the data has 4 "
        "(shape (150, 4))")


def test_evaluate_maps_labels_through_the_classes():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    names = np.array(["up", "right", "up", "right"])
    model = cr.mlp(2, 4, 2, seed=0)
    cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.05), X, names, epochs=100, verbose=0)
    assert cr.evaluate(model, cr.SoftmaxCrossEntropy(), X, names)[1] == 1.0
    with pytest.raises(ValueError, match="label 'left' is not one of the model's classes"):
        cr.evaluate(model, cr.SoftmaxCrossEntropy(), X[:1], np.array(["left"]))


def test_a_float64_model_computes_float32_input_in_float64():
    rng = np.random.default_rng(0)
    x32 = rng.normal(size=(5, 3)).astype(np.float32)
    model = cr.mlp(3, 4, 2, seed=0)
    output = model(x32)
    assert output.dtype == np.float64
    np.testing.assert_array_equal(output, model(x32.astype(np.float64)))
    model32 = cr.mlp(3, 4, 2, seed=0).astype(np.float32)
    x64 = x32.astype(np.float64) + 1e-9  # rounded away in float32
    assert model32(x64).dtype == np.float32
    np.testing.assert_array_equal(model32(x64), model32(x64.astype(np.float32)))
    assert model.predict_proba(x32).dtype == np.float64
