"""Using a trained model on raw data: evaluate_model, predictions_csv, and the CLI's
evaluate and predict commands."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

import chainrule
from chainrule import Sequential
from chainrule.cli import main
from chainrule.io import inference
from chainrule.io.datasets import load as load_dataset
from chainrule.nn.functional import log_softmax
from model_examples import OUTPUTS, every_layer_model, train_iris_model


@pytest.fixture(scope="module")
def iris_model() -> tuple[Sequential, np.ndarray, np.ndarray]:
    return train_iris_model()


def test_evaluate_model_matches_hand_computed_numbers(iris_model) -> None:
    model, X, names = iris_model
    loss, accuracy = inference.evaluate_model(model, X, names)
    indices = np.searchsorted(model.classes, names)
    prepared = model.prepare(X)  # forward takes scaled inputs, marked by prepare
    np.testing.assert_array_equal(prepared, model.preprocessing.transform(X))
    log_probs = log_softmax(model.forward(prepared))
    assert loss == pytest.approx(-np.mean(log_probs[np.arange(len(X)), indices]), rel=1e-12)
    assert accuracy == np.mean(model.predict(X) == names)


@pytest.mark.parametrize("output", ["softmax", "log_softmax"])
def test_evaluate_model_loss_does_not_depend_on_the_output_layer(output: str) -> None:
    logits_model = every_layer_model()
    model = every_layer_model(OUTPUTS[output])
    x, labels = np.random.default_rng(4).normal(size=(9, 4)), np.arange(9) % 3
    expected = inference.evaluate_model(logits_model, x, labels)
    assert inference.evaluate_model(model, x, labels) == pytest.approx(expected, rel=1e-12)


def test_evaluate_model_unknown_label(iris_model) -> None:
    model, X, _ = iris_model
    with pytest.raises(ValueError, match="label 'rose' is not one of the model's classes"):
        inference.evaluate_model(model, X[:2], np.array(["setosa", "rose"]))
    with pytest.raises(ValueError, match="one label per input row"):
        inference.evaluate_model(model, X[:2], np.array(["setosa"]))


def test_predictions_csv(iris_model) -> None:
    model, X, _ = iris_model
    rows = list(csv.reader(io.StringIO(inference.predictions_csv(model, X[::50]))))
    assert rows[0] == ["label", "proba_setosa", "proba_versicolor", "proba_virginica"]
    assert [row[0] for row in rows[1:]] == model.predict(X[::50]).tolist()
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], dtype=float),
                                  model.predict_proba(X[::50]))


# --- command line ----------------------------------------------------------------------------

def test_cli_train_out_then_evaluate_and_predict(tmp_path: Path, capsys) -> None:
    model_path = tmp_path / "iris.safetensors"
    assert main(["train", "--data", "iris", "--epochs", "5", "--quiet",
                 "--out", str(model_path)]) == 0
    model = chainrule.load(model_path)
    assert model.preprocessing.kind == "standard"
    np.testing.assert_array_equal(model.classes, [0, 1, 2])
    capsys.readouterr()

    X, y = load_dataset("iris")
    assert main(["evaluate", str(model_path), "--data", "iris"]) == 0
    loss, accuracy = inference.evaluate_model(model, X, y)
    assert capsys.readouterr().out == (f"accuracy: {accuracy:.4f}  loss: {loss:.4f}  "
                                       "(150 samples)\n")

    np.savez(tmp_path / "inputs.npz", X=X[::10])
    assert main(["predict", str(model_path), str(tmp_path / "inputs.npz")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(label) for label in model.predict(X[::10])]

    out = tmp_path / "predictions.csv"
    assert main(["predict", str(model_path), str(tmp_path / "inputs.npz"),
                 "--out", str(out)]) == 0
    assert out.read_text() == inference.predictions_csv(model, X[::10])
