"""fit and the train command: accuracy reached, history, early stopping, divergence, dtypes."""

import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule import experiment
from chainrule.cli import main
from chainrule.nn.training import class_indices


@pytest.fixture(scope="module")
def default_run():
    return experiment.run(verbose=0)


def test_default_run_reaches_097_on_digits(default_run):
    assert default_run.test_accuracy >= 0.97
    assert default_run.n_test == 450  # 25% of 1,797, stratified
    history = default_run.history
    assert len(history.loss) == experiment.default_epochs(1347, 32) == 30  # epochs=None
    assert history.loss[-1] < history.loss[0] / 5
    assert history.val_accuracy[-1] == pytest.approx(default_run.test_accuracy)
    assert default_run.model.preprocessing.kind == "standard"
    assert default_run.summary().startswith(f"test accuracy: {default_run.test_accuracy:.4f} "
                                            "(450 samples) in ")


def blobs(rng, n=300, classes=3, features=4):
    centers = rng.normal(size=(classes, features)) * 4
    y = rng.integers(0, classes, size=n)
    return centers[y] + rng.normal(size=(n, features)), y


def test_history_layout_and_string_labels(rng):
    X, y = blobs(rng)
    names = np.array(["cat", "dog", "emu"])[y]
    model = cr.mlp(4, [8], 3, seed=0)
    history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.1, momentum=0.9), X, names,
                     epochs=5, batch_size=16, validation_data=(X[:50], names[:50]), seed=0,
                     verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.loss is history.history["loss"] and len(history.val_accuracy) == 5
    assert history.epoch == [0, 1, 2, 3, 4]
    assert history.accuracy[-1] > 0.95
    np.testing.assert_array_equal(model.classes, ["cat", "dog", "emu"])
    assert np.mean(model.predict(X) == names) > 0.95
    with pytest.raises(ValueError, match="'owl' is not one of the classes"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, names, epochs=1,
               validation_data=(X[:1], np.array(["owl"])), verbose=0)


def test_same_seed_same_model(rng):
    X, y = blobs(rng)
    weights = []
    for _ in range(2):
        model = cr.mlp(4, [8], 3, seed=1)
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.01), X, y, epochs=2, seed=7,
               verbose=0)
        weights.append(model.params["0.W"].copy())
    np.testing.assert_array_equal(*weights)


def test_early_stopping_restores_the_best_weights(rng):
    X, y = blobs(rng, n=200)
    y_val = rng.integers(0, 3, size=40)  # random validation labels: val loss soon rises
    model = cr.mlp(4, [32], 3, seed=0)
    history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.05), X, y, epochs=200,
                     validation_data=(X[:40], y_val), patience=3, verbose=0)
    assert history.stopped_early and len(history.loss) < 200
    best = history.best_epoch
    assert history.val_loss[best] == min(history.val_loss)
    assert len(history.val_loss) == best + 5  # best, then patience + 1 worse epochs
    X_val = model.prepare(X[:40])
    assert cr.SoftmaxCrossEntropy().forward(model.forward(X_val), y_val) == pytest.approx(
        history.val_loss[best])
    with pytest.raises(ValueError, match="needs validation_data"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y, patience=2, verbose=0)


def test_divergence_raises_and_keeps_finite_parameters(rng):
    X, y = blobs(rng)
    model = cr.mlp(4, [16], 3, activation="relu", seed=0)
    with pytest.raises(FloatingPointError, match=r"epoch \d+, batch \d+"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(1e6), X * 1e3, y, epochs=5,
               verbose=0)
    assert all(np.all(np.isfinite(param)) for param in model.params.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_follows_the_model_dtype(dtype, rng):
    X, y = blobs(rng)
    model = cr.mlp(4, [8], 3, seed=0, dtype=dtype)
    history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.01), X, y, epochs=10,
                     scaling="minmax", verbose=0)
    assert model.dtype == dtype and model.params["0.W"].dtype == dtype
    assert history.accuracy[-1] > 0.9
    assert model.predict_proba(X).dtype == dtype


def test_soft_targets_and_bad_input(rng):
    X, y = blobs(rng)
    soft = np.eye(3)[y] * 0.9 + 0.1 / 3
    model = cr.mlp(4, [8], 3, seed=0)
    history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.01), X, soft, epochs=5,
                     verbose=0)
    assert history.accuracy[-1] > 0.9 and model.classes is None
    X_bad = X.copy()
    X_bad[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"X\[5, 2\] is nan"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X_bad, y, verbose=0)
    with pytest.raises(ValueError, match=r"4 outputs but labels \[10, 11, 12\] are outside 0..3"):
        cr.fit(cr.mlp(4, [8], 4), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y + 10,
               verbose=0)


def test_regression_targets_have_a_loss_and_no_accuracy(rng):
    """One output and (N,) numbers: values (N, 1), not classes; no accuracy, and predict,
    which picks classes, says what to call instead (it returned zeros)."""
    X = rng.normal(size=(120, 4))
    t = X @ np.array([1.0, -2.0, 0.5, 0.0])
    models = [cr.mlp(4, [8], 1, seed=0) for _ in range(2)]
    runs = [cr.fit(model, cr.MSELoss(), cr.SGD(0.05), X, target, epochs=4, seed=1, verbose=0,
                   validation_data=(X[:30], target[:30]))
            for model, target in zip(models, (t, t.reshape(-1, 1)), strict=True)]
    assert runs[0].history == runs[1].history  # (N,) and (N, 1): the same run
    assert runs[0].accuracy == [] and runs[0].val_accuracy == []
    assert len(runs[0].loss) == 4 and runs[0].loss[-1] < runs[0].loss[0]
    np.testing.assert_array_equal(models[0].params["2.W"], models[1].params["2.W"])
    model = models[0]
    assert model.classes is None
    loss, accuracy = cr.evaluate(model, cr.MSELoss(), X, t)
    assert accuracy is None
    assert loss == pytest.approx(np.mean((model(model.prepare(X))[:, 0] - t) ** 2))
    with pytest.raises(ValueError, match=r"this network has one output, so no classes to "
                                         r"pick from; for its values use model\(model"):
        model.predict(X)
    with pytest.raises(ValueError, match=r"1 outputs but the labels have 2 distinct values: "
                                         r"\['cat', 'dog'\]"):
        cr.fit(model, cr.MSELoss(), cr.SGD(0.05), X, np.array(["cat", "dog"] * 60),
               verbose=0)


def test_accuracy_only_for_class_rows(rng):
    X, y = blobs(rng)
    one_hot = np.eye(3)[y]
    by_labels, by_rows = cr.mlp(4, [8], 3, seed=0), cr.mlp(4, [8], 3, seed=0)
    cr.fit(by_labels, cr.SoftmaxCrossEntropy(), cr.Adam(0.01), X, y, epochs=3, verbose=0)
    rows = cr.fit(by_rows, cr.MSELoss(), cr.Adam(0.01), X, one_hot, epochs=3, verbose=0)
    assert len(rows.accuracy) == 3  # one-hot rows are classes
    labels_accuracy = float(np.mean(by_rows.predict(X) == y))
    assert cr.evaluate(by_rows, cr.MSELoss(), X, one_hot)[1] == labels_accuracy
    assert cr.evaluate(by_labels, cr.SoftmaxCrossEntropy(), X, y)[1] == (
        float(np.mean(by_labels.predict(X) == y)))
    values = rng.normal(size=(len(X), 3))  # rows that are not class distributions
    history = cr.fit(by_labels, cr.MSELoss(), cr.Adam(0.01), X, values, epochs=2, verbose=0)
    assert history.accuracy == [] and by_labels.classes is None  # no stale classes
    assert cr.evaluate(by_labels, cr.MSELoss(), X, values)[1] is None


def test_progress_bar_quiet_when_not_a_terminal(rng, capsys):
    X, y = blobs(rng, n=40)
    cr.fit(cr.mlp(4, [4], 3, seed=0), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y, epochs=2,
           verbose="auto")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_cli_train_prints_the_summary_line(capsys):
    assert main(["train", "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("test accuracy: 0.9") and "(450 samples) in " in line
    assert float(line.split()[2]) >= 0.97


def test_cli_options_and_errors(capsys):
    assert main(["train", "--quiet", "--data", "iris", "--hidden", "16", "8", "--epochs", "60",
                 "--optimizer", "sgd", "--lr", "0.05", "--dtype", "float32"]) == 0
    assert "(38 samples)" in capsys.readouterr().out
    assert main(["train", "--quiet", "--data", "no-such-data"]) == 2
    assert "error: no dataset or file 'no-such-data'" in capsys.readouterr().err


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "chainrule", "train", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--hidden" in result.stdout and "--batch-size" in result.stdout


def test_class_indices_any_order_and_unknown_labels():
    classes = np.array(["dog", "cat", "emu"], dtype=object)  # as recorded: not sorted
    np.testing.assert_array_equal(
        class_indices(classes, np.array(["emu", "dog", "cat", "dog"])), [2, 0, 1, 0])
    with pytest.raises(ValueError, match=r"label 'owl' is not one of the classes \['dog'"):
        class_indices(classes, np.array(["cat", "owl"]))
    with pytest.raises(ValueError, match="label 3 is not one of the model's classes"):
        class_indices(classes, np.array([3]), "the model's classes")  # ints against strings
