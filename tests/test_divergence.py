"""fit under faults: divergence (non-finite and runaway), overflow, interrupts, checkpoints."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris

import chainrule as cr
from chainrule.nn.divergence import RUNAWAY_FACTOR
from chainrule.nn.divergence import loss_problem as _loss_problem
from chainrule.nn.errors import NonFiniteError


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def assert_finite(model: cr.Sequential) -> None:
    assert all(np.isfinite(param).all() for param in model.params.values())


@pytest.mark.parametrize(("optimizer", "dtype"), [
    (cr.SGD(float("inf")), np.float64),
    (cr.Adam(eps=0), np.float64),  # 0/0 for a unit whose gradient is 0
    (cr.Adam(), np.float16),  # eps=1e-8 rounds to 0 in float16
])
def test_divergence_in_a_hidden_layer_is_a_floating_point_error(iris, optimizer, dtype):
    X, y = iris
    model = cr.mlp(4, [16], 3, seed=0, dtype=dtype)
    initial = model.get_weights()
    with pytest.raises(FloatingPointError,
                       match=r"diverged at epoch 1, batch \d+: layer 2: Dense\(16→3\): input has "
                             r"\d+ non-finite value.*non-finite parameters: 0.W") as error:
        cr.fit(model, cr.SoftmaxCrossEntropy(), optimizer, X, y, epochs=3, verbose=0)
    assert "restored to its weights from the start of epoch 1" in str(error.value)
    assert_finite(model)
    for key, value in initial.items():
        np.testing.assert_array_equal(model.params[key], value)
    assert error.value.history.epoch == []  # no epoch completed


def test_sequential_keeps_the_non_finite_error_type():
    model = cr.mlp(2, [3], 2, seed=0)
    model.params["0.W"][0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"layer 2: Dense\(3→2\): input has"):
        model.forward(np.ones((1, 2)))
    with pytest.raises(ValueError, match="layer 0") as error:
        model.forward(np.ones((1, 5)))
    assert type(error.value) is ValueError


def test_nan_weight_decay_is_refused():
    for optimizer in (cr.SGD, cr.Adam):
        with pytest.raises(ValueError, match="weight_decay must be >= 0, got nan"):
            optimizer(0.1, weight_decay=float("nan"))


def test_runaway_finite_loss_stops_at_the_first_runaway_batch(iris):
    X, y = iris
    model = cr.mlp(4, [16], 3, seed=0)
    initial = model.get_weights()
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 2: the loss reached .* over "
                                                 r"1e\+06 times the first epoch's mean batch "
                                                 r"loss .* \(taken as at least 1\): runaway"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(1e6), X, y, epochs=3, seed=0,
               verbose=0)
    for key, value in initial.items():  # back at the start of epoch 1, not at |W| ~ 1e19
        np.testing.assert_array_equal(model.params[key], value)


def test_runaway_rule_never_fires_on_healthy_swings():
    assert _loss_problem(9.0, 2.3) is None  # digits: back up to 9 after 5e-8
    assert _loss_problem(9.0, 5e-8) is None  # the reference is taken as at least 1
    assert _loss_problem(0.9 * RUNAWAY_FACTOR, 5e-8) is None
    assert "runaway" in _loss_problem(1.1 * RUNAWAY_FACTOR, 1e-3)
    assert _loss_problem(0.5e6 * 100, 100.0) is None
    assert _loss_problem(1e30, None) is None  # the first batch has no reference yet
    assert "float32's range" in _loss_problem(1e39, None)
    assert "became nan" in _loss_problem(float("nan"), 1.0)


class ScriptedLoss(cr.MSELoss):
    """MSE's gradient, with batch losses read from a script (the runaway test's input)."""

    def __init__(self, losses: list[float]) -> None:
        super().__init__()
        self.losses = iter(losses)

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        super().forward(output, target)
        return next(self.losses)


def test_runaway_reference_is_the_mean_of_the_first_epochs_batches():
    X, y = np.zeros((4, 2)), np.zeros((4, 1))
    # Epoch 1: batches 1 and 3, mean 2. Epoch 2: 2.5e6 is over 1e6 times the mean (2e6),
    # under 1e6 times the last batch (3e6) or the largest.
    loss = ScriptedLoss([1.0, 3.0, 2.5e6])
    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 1: the loss reached 2.5e\+06, "
                                                 r"over 1e\+06 times the first epoch's mean "
                                                 r"batch loss 2 "):
        cr.fit(cr.Sequential([cr.Dense(2, 1, seed=0)]), loss, cr.SGD(1e-9), X, y, epochs=2,
               batch_size=2, shuffle=False, verbose=0)
    # Within epoch 1 the reference is the mean of its batches so far: (1 + 3) / 2 at batch 3.
    loss = ScriptedLoss([1.0, 3.0, 2.5e6])
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 3: .* mean batch loss 2 "):
        cr.fit(cr.Sequential([cr.Dense(2, 1, seed=0)]), loss, cr.SGD(1e-9), np.zeros((6, 2)),
               np.zeros((6, 1)), epochs=1, batch_size=2, shuffle=False, verbose=0)


def test_continued_training_of_a_trained_model_is_not_stopped(iris):
    X, y = iris
    model = cr.mlp(4, [32], 3, seed=0)
    for _ in range(3):  # each call's first epoch starts near 0 loss: a tiny reference
        history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.02), X, y, epochs=40,
                         batch_size=8, scaling="standard", seed=0, verbose=0)
    assert history.accuracy[-1] > 0.97


def test_inputs_too_large_are_a_value_error_before_any_update():
    model = cr.mlp(4, [16], 3, seed=0)
    X = np.full((10, 4), 1e308)
    with pytest.raises(ValueError, match=r"non-finite result before any update .* largest "
                                         r"\|input\| 1e\+308"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, np.arange(10) % 3,
               verbose=0)


def test_empty_or_mismatched_validation_data_is_refused(iris):
    X, y = iris
    for validation in ((X[:0], y[:0]), (X[:5], y[:4])):
        with pytest.raises(ValueError, match="validation_data has"):
            cr.fit(cr.mlp(4, [8], 3), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y,
                   validation_data=validation, verbose=0)
    X_val = X[:5].copy()
    X_val[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"validation X\[2, 1\] is inf"):
        cr.fit(cr.mlp(4, [8], 3), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y,
               validation_data=(X_val, y[:5]), verbose=0)


def test_mse_divergence_is_reported(rng):
    X = rng.normal(size=(64, 3))
    targets = X @ rng.normal(size=(3, 2))
    model = cr.mlp(3, [8], 2, seed=0)
    with pytest.raises(FloatingPointError, match=r"epoch \d+, batch \d+"):
        cr.fit(model, cr.MSELoss(), cr.SGD(1e3), X, targets, epochs=20, verbose=0)
    assert_finite(model)


def _interrupting(optimizer: cr.Optimizer, after_steps: int) -> cr.Optimizer:
    """``optimizer`` whose step number ``after_steps`` raises KeyboardInterrupt (a Ctrl-C)."""
    step, count = optimizer.step, [0]

    def interrupted_step(model):
        count[0] += 1
        if count[0] == after_steps:
            raise KeyboardInterrupt
        step(model)

    optimizer.step = interrupted_step
    return optimizer


def test_interrupt_restores_the_best_weights_and_keeps_the_history(rng):
    X = rng.normal(size=(200, 4)) * 3
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    y_val = rng.integers(0, 3, size=40)  # random labels: validation loss soon rises
    model = cr.mlp(4, [32], 3, seed=0)
    optimizer = _interrupting(cr.Adam(0.05), after_steps=7 * 20 + 3)  # in epoch 21 (7 batches)
    with pytest.raises(KeyboardInterrupt) as error:
        cr.fit(model, cr.SoftmaxCrossEntropy(), optimizer, X, y, epochs=100,
               validation_data=(X[:40], y_val), patience=50, verbose=0)
    history = error.value.history
    assert history.epoch == list(range(20))
    best = history.best_epoch
    assert history.val_loss[best] == min(history.val_loss) < history.val_loss[-1]
    val_loss = cr.SoftmaxCrossEntropy().forward(model.forward(X[:40]), y_val)
    assert val_loss == pytest.approx(history.val_loss[best], rel=1e-12)


def test_checkpoint_holds_the_best_epoch(rng, tmp_path):
    X = rng.normal(size=(200, 4)) * 3
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    y_val = rng.integers(0, 3, size=40)
    path = tmp_path / "best.safetensors"
    model = cr.mlp(4, [32], 3, seed=0)
    history = cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.05), X, y, epochs=15,
                     validation_data=(X[:40], y_val), verbose=0, checkpoint=path)
    best = history.best_epoch
    assert history.val_loss[best] == min(history.val_loss)
    saved = cr.load(path)
    val_loss = cr.SoftmaxCrossEntropy().forward(saved.forward(X[:40]), y_val)
    assert val_loss == pytest.approx(history.val_loss[best], rel=1e-12)
    np.testing.assert_array_equal(saved.classes, [0, 1, 2])
    assert [entry.name for entry in tmp_path.iterdir()] == ["best.safetensors"]
    # Without validation data, the training loss decides.
    history = cr.fit(cr.mlp(4, [8], 3, seed=1), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y,
                     epochs=4, verbose=0, checkpoint=path, shuffle=False)
    assert history.best_epoch == int(np.argmin(history.loss))


def test_closed_standard_streams_do_not_break_fit(rng, monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)  # what Python sets for `2>&-`
    monkeypatch.setattr(sys, "stdout", None)  # and for `>&-`
    X = rng.normal(size=(20, 4))
    for verbose in ("auto", 1, 2):
        history = cr.fit(cr.mlp(4, [4], 3, seed=0), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X,
                         np.arange(20) % 3, epochs=2, verbose=verbose)
        assert len(history.loss) == 2


def test_mse_refuses_non_finite_values_and_overflow():
    loss = cr.MSELoss()
    with pytest.raises(NonFiniteError, match=r"output\[0, 1\] is nan"):
        loss(np.array([[0.0, np.nan]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"target\[0, 0\] is inf; targets must be finite"):
        loss(np.zeros((1, 2)), np.array([[np.inf, 0.0]]))
    with pytest.raises(NonFiniteError, match="squared error overflows float64"):
        loss(np.array([[1e200, 0.0]]), np.array([[-1e200, 0.0]]))
    assert loss(np.array([[1e150, 0.0]]), np.zeros((1, 2))) == pytest.approx(0.5e300)


def test_softmax_cross_entropy_with_logits_near_the_float_limit():
    """Row ``[0, -1e308]`` with label 1: each row's loss is 1e308; their sum overflows, their
    mean does not. The gradient is ``(p - onehot) / B`` with ``p = [1, 0]``."""
    loss = cr.SoftmaxCrossEntropy()
    logits = np.array([[0.0, -1e308]] * 2)
    assert loss(logits, np.array([1, 1])) == 1e308
    np.testing.assert_array_equal(loss.backward(), [[0.5, -0.5]] * 2)
    assert cr.SoftmaxCrossEntropy(reduction="sum")(logits, np.array([1, 1])) == np.inf
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits[:1]), torch.tensor([1]))
    assert loss(logits[:1], np.array([1])) == float(expected) == 1e308


def test_overflow_on_the_validation_data_is_reported_as_divergence(iris):
    X, y = iris
    X_val = np.full((10, 4), 1e308)  # finite, but the hidden layer overflows on it
    model = cr.mlp(4, [16], 3, seed=0)
    initial = model.get_weights()
    with pytest.raises(FloatingPointError, match=r"at epoch 1, on the validation data: layer 2"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.01), X, y, epochs=2,
               validation_data=(X_val, y[:10]), verbose=0)
    for key, value in initial.items():
        np.testing.assert_array_equal(model.params[key], value)
