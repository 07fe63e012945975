"""summary(), repr and _repr_html_ of a network, a history and a scaler: short, no arrays."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.io import datasets


@pytest.fixture(scope="module")
def iris_run():
    X, y = datasets.load("iris")
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = cr.mlp(4, 8, 3, seed=0)
    history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.01), X, names, epochs=20,
                     scaling="standard", validation_data=(X, names), verbose=0)
    return model, history


def test_summary_lists_layers_shapes_counts_dtype_scaling_and_classes(iris_run):
    model, _ = iris_run
    lines = []
    assert model.summary(print_fn=lines.append) is None
    assert lines[0].splitlines() == [
        "Sequential: input (B, 4)",
        "---------------------------------------",
        "#  layer       output shape  parameters",
        "---------------------------------------",
        "0  Dense(4→8)  (B, 8)                40",
        "1  ReLU()      (B, 8)                 0",
        "2  Dense(8→3)  (B, 3)                27",
        "---------------------------------------",
        "67 parameters",
        "float64",
        "standard scaling of 4 features (predict applies it)",
        "3 classes: 'setosa', 'versicolor', 'virginica'",
    ]
    assert 40 + 27 == model.n_params


def test_repr_is_the_summary_in_one_line(iris_run):
    model, _ = iris_run
    assert repr(model) == (
        "Sequential(Dense(4→8), ReLU(), Dense(8→3); 67 parameters, float64, standard scaling "
        "of 4 features (predict applies it), 3 classes: 'setosa', 'versicolor', 'virginica')")
    assert repr(cr.mlp(3, 2, 2).astype(np.float32)) == (
        "Sequential(Dense(3→2), ReLU(), Dense(2→2); 14 parameters, float32, no input scaling)")
    many = cr.mlp(2, 4, 100)
    many.classes = np.arange(100)
    assert "100 classes: 0, 1, 2, 3, …, 98, 99" in repr(many)


def test_html_views_are_tables_with_escaped_text(iris_run):
    model, history = iris_run
    page = model._repr_html_()
    assert page.count("<tr>") == 4 and "<code>Dense(4→8)</code>" in page
    assert "&#x27;setosa&#x27;" in page and "'setosa'" not in page
    table = history._repr_html_()
    assert table.count("<tr>") == 5  # header + loss, accuracy, val_loss, val_accuracy
    assert f"<td>{history.loss[0]:.4f}</td><td>{history.loss[-1]:.4f}</td>" in table
    assert history.note in table


def test_history_and_scaler_reprs_dump_no_arrays(rng):
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    model = cr.mlp(3, 4, 2, seed=0)
    history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y, epochs=300,
                     verbose=0, scaling="minmax")
    assert repr(history) == (
        f"History(300 epochs, loss {history.loss[0]:.4f} → {history.loss[-1]:.4f}, "
        f"accuracy {history.accuracy[0]:.4f} → {history.accuracy[-1]:.4f})")
    assert repr(model.preprocessing) == "Scaler('minmax', 3 features)"


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # 5 epochs: not converged
def test_the_estimators_fitted_model_shows_as_a_table():
    pytest.importorskip("sklearn")
    X, y = datasets.load("iris")
    clf = cr.MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    model = clf.model_
    assert model._repr_html_().count("<tr>") == len(model.layers) + 1
    assert repr(model).startswith("Sequential(Dense(4→8), ReLU(), Dense(8→3);")
    assert "3 classes: 0, 1, 2" in repr(model)
