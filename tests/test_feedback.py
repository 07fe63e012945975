"""Feedback while training: verbose levels, how a run ended, the train command's output and
its defaults on every bundled dataset."""

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule import experiment
from chainrule.cli import main

EPOCH_LINE = re.compile(r"^epoch (\d+)/3 - loss: \d\.\d{4} - accuracy: \d\.\d{4} - "
                        r"val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4} - \d+\.\d\d s$")


def blobs(rng, n=60):
    y = np.arange(n) % 3
    return rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[y], y


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbose_levels(verbose, rng, capsys):
    X, y = blobs(rng)
    history = cr.fit(cr.mlp(4, 8, 3, seed=0), cr.SoftmaxCrossEntropy(), cr.Adam(0.01), X, y,
                     epochs=3, validation_data=(X, y), verbose=verbose)
    out = capsys.readouterr().out
    if verbose == 0:
        assert out == ""
        return
    lines = [line.strip() for line in out.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == history.note and history.note.startswith("trained all 3 epochs")
    if verbose == 1:
        assert [EPOCH_LINE.match(line)[1] for line in lines[:-1]] == ["1", "2", "3"]
        assert f"loss: {history.loss[1]:.4f} - accuracy: {history.accuracy[1]:.4f}" in lines[1]
    else:  # the bar, left on screen with the epoch's metrics
        finished = [line for line in lines if "val_accuracy" in line]
        assert [line.split(":")[0] for line in finished] == ["epoch 1/3", "epoch 2/3",
                                                             "epoch 3/3"]
        assert f"val_loss: {history.val_loss[2]:.4f}" in finished[2]


def test_verbose_is_checked_and_tqdm_is_imported_only_for_a_bar():
    with pytest.raises(ValueError, match=r"verbose must be 0 \(silent\), 1 \(a line per epoch\)"
                                         r", 2 \(a progress bar\) or 'auto'; got verbose=3"):
        cr.fit(cr.mlp(2, 2, 2), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), np.eye(2), [0, 1],
               verbose=3)
    code = ("import sys, numpy as np, chainrule as cr\n"
            "assert 'tqdm' not in sys.modules\n"
            "for verbose in (0, 1):\n"
            "    cr.fit(cr.mlp(2, 2, 2), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), np.eye(2),\n"
            "           [0, 1], verbose=verbose)\n"
            "assert 'tqdm' not in sys.modules\n"
            "cr.fit(cr.mlp(2, 2, 2), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), np.eye(2), [0, 1],\n"
            "       verbose=2)\n"
            "assert 'tqdm' in sys.modules\n")
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_early_stopping_says_when_why_and_which_weights(rng, capsys):
    X, y = blobs(rng, n=90)
    X_val, y_val = X[:30] + rng.normal(scale=3.0, size=(30, 4)), y[:30]
    history = cr.fit(cr.mlp(4, 32, 3, seed=0), cr.SoftmaxCrossEntropy(), cr.Adam(0.05), X, y,
                     epochs=200, validation_data=(X_val, y_val), patience=2, verbose=1)
    assert history.stopped_early and len(history.epoch) < 200
    best = history.best_epoch
    assert history.note == (
        f"early stopping after epoch {len(history.epoch)}: val_loss has not improved for 3 "
        f"epochs (patience 2); kept the weights of epoch {best + 1} "
        f"(val_loss {history.val_loss[best]:.4f})")
    assert capsys.readouterr().out.splitlines()[-1] == history.note


def test_a_run_that_was_still_learning_says_so(rng):
    X, y = blobs(rng)
    history = cr.fit(cr.mlp(4, 8, 3, seed=0), cr.SoftmaxCrossEntropy(), cr.SGD(0.01), X, y,
                     epochs=20, verbose=0)
    drop = 1 - history.loss[-1] / history.loss[-3]
    assert drop > 0.02  # more than 1% per epoch over the last 20 // 10 = 2 epochs
    assert history.note == (f"trained all 20 epochs; not converged: the training loss fell "
                            f"{drop:.0%} in the last 2 epochs (more epochs may help)")
    history = cr.fit(cr.mlp(4, 8, 3, seed=0), cr.SoftmaxCrossEntropy(), cr.Adam(0.05), X, y,
                     epochs=200, verbose=0)
    assert history.note == "trained all 200 epochs"


def test_cli_patience_validates_on_part_of_the_training_split(capsys):
    assert main(["train", "--data", "iris", "--patience", "3", "--verbose", "1", "--lr",
                 "0.01"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0].startswith("training on iris: hidden [64] relu, adam lr=0.01, about 1200 "
                             "steps (at least 30 epochs)")
    assert EPOCH_LINE.pattern  # the per-epoch lines are on stderr, one per epoch
    epoch_lines = [line for line in err if line.startswith("epoch ")]
    assert len(epoch_lines) >= 4 and epoch_lines[0].startswith("epoch 1/300 - loss: ")
    assert err[-1].startswith("early stopping after epoch ")
    assert re.fullmatch(r"test accuracy: \d\.\d{4} \(38 samples\) in \d+\.\d\d s",
                        captured.out.strip())
    run = experiment.run(experiment.TrainConfig(data="iris", patience=3, lr=0.01), verbose=0)
    assert run.n_test == 38
    # 112 training rows, 10% of them (stratified) held out for early stopping
    assert sum(run.history.history["loss"]) > 0 and len(run.history.val_loss) >= 4
    assert run.history.note == err[-1]


def test_cli_quiet_still_says_how_training_ended(capsys):
    assert main(["train", "--data", "iris", "--epochs", "3", "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("trained all 3 epochs; not converged: the training loss fell ")


def test_cli_test_size_is_checked(capsys):
    assert main(["train", "--test-size", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "chainrule train: error: test_size (--test-size) must be a fraction between 0 and 1, "
        "exclusive; got 1.5")


@pytest.mark.parametrize("data", ["iris", "wine", "breast_cancer"])
def test_defaults_reach_a_reasonable_accuracy_on_each_small_dataset(data):
    result = experiment.run(experiment.TrainConfig(data=data), verbose=0)
    assert result.test_accuracy >= 0.93


def test_auto_is_silent_outside_a_terminal_even_with_jupyter_installed(rng, capsys):
    pytest.importorskip("ipykernel")  # imported, as a test runner may do; no kernel runs

    X, y = blobs(rng)
    cr.fit(cr.mlp(4, 8, 3, seed=0), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y, epochs=2,
           verbose="auto")
    assert capsys.readouterr().out == ""


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(1, 6), min_size=1, max_size=5),
       test_size=st.floats(0.05, 0.95))
def test_split_refuses_exactly_what_a_stratified_split_cannot_do(counts, test_size):
    """The up-front check agrees with scikit-learn's own refusals, in the user's terms."""
    from sklearn.model_selection import train_test_split

    y = np.repeat(np.arange(len(counts)), counts)
    X = np.zeros((len(y), 2))
    try:
        train_test_split(X, y, test_size=test_size, stratify=y, random_state=0)
    except ValueError:
        with pytest.raises(ValueError, match=r"^the data has \d+ samples?, too few to split: "):
            experiment.split(X, y, test_size, 0)
    else:
        X_train, X_test, *_ = experiment.split(X, y, test_size, 0)
        assert len(X_train) + len(X_test) == len(y)


def labelled_csv(path, labels):
    """A two-feature CSV with a header and these labels, one row each."""
    path.write_text("a,b,label\n" + "".join(f"{i},{2 * i},{label}\n"
                                            for i, label in enumerate(labels)))
    return path


def test_cli_names_the_file_and_the_reason_when_it_is_too_small_to_split(tmp_path, capsys):
    data = labelled_csv(tmp_path / "small.csv", "xyx")
    assert main(["train", "--data", str(data), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"chainrule train: error: {data} has 3 samples, too few to split: every class needs "
        "at least 2 samples, one on each side, and class 'y' has only 1")
    labelled_csv(data, "xyxyx")
    assert main(["train", "--data", str(data), "--quiet", "--test-size", "0.2"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"chainrule train: error: {data} has 5 samples, too few to split: test_size 0.2 "
        "(--test-size) holds out 1 and keeps 4, and each side needs one sample of every class "
        "(2)")


def test_cli_refuses_a_data_set_of_one_class(tmp_path, capsys):
    data = labelled_csv(tmp_path / "one.csv", ["cat"] * 20)
    assert main(["train", "--data", str(data), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"chainrule train: error: {data}: every label is 'cat'; a classifier needs at least 2 "
        "classes")
