"""``fit``'s fused MLP step (``chainrule.nn.fused``) is the plain layer-by-layer path.

The shortcut must not change anything a user can see: weights, ``grads``, optimizer state,
history, the layers' caches, errors on divergence; after a copy, a pickle, a dtype change; and
a method replaced on an instance or a class, or tied weights, must switch it off.
"""

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.nn import fused, kernels, training
from numba_marks import needs_numba, use_kernels

FOR_TRAINING = fused.FusedStep.for_training


def _fit(model, X, y, use_fused, optimizer=None, loss=None, monkeypatch=None, **options):
    """``fit`` with the fused step on or off; returns (history, optimizer, loss, the steps
    ``FusedStep.for_training`` gave ``fit``: None where off or declined)."""
    calls = []

    def counted(*args):
        step = FOR_TRAINING(*args) if use_fused else None
        calls.append(step)
        return step

    monkeypatch.setattr(training.FusedStep, "for_training", counted)
    optimizer = optimizer or cr.SGD(0.05, momentum=0.9)
    loss = loss or cr.SoftmaxCrossEntropy()
    options = {"epochs": 2, "batch_size": 16, "seed": 3, "verbose": 0, **options}
    history = cr.fit(model, loss, optimizer, X, y, **options)
    return history, optimizer, loss, calls


def _data(rng, n=90, n_in=12, n_classes=4, dtype=np.float64):
    X = rng.normal(size=(n, n_in)).astype(dtype)
    y = np.argmax(X[:, :n_classes] + 0.3 * rng.normal(size=(n, n_classes)), axis=1)
    return X, y


def _assert_same_training(plain, fast, exact):
    """Two (model, history, optimizer, loss) runs are the same to the bit, or to rounding."""
    def close(actual, desired):
        # A rounding difference in the loss kernel, grown through a dozen updates: within
        # 2000 eps of each array's scale (float32: 2.4e-4).
        scale = np.abs(desired).max(initial=1.0)
        eps = np.finfo(model_a.dtype).eps
        np.testing.assert_allclose(actual, desired, rtol=0, atol=2000 * eps * scale)

    compare = np.testing.assert_array_equal if exact else close
    (model_a, history_a, opt_a, loss_a), (model_b, history_b, opt_b, loss_b) = plain, fast
    for key, value in model_a.params.items():
        compare(model_b.params[key], value)
    for (_, grad_a), (_, grad_b) in zip(model_a.named_grads(), model_b.named_grads(),
                                          strict=True):
        compare(grad_b, grad_a)
    for key, state in opt_a.state.items():
        for name, value in state.items():
            if name not in ("scratch", "update"):  # scratch space, not state
                compare(opt_b.state[key][name], value)
    compare(np.array(history_b.loss), np.array(history_a.loss))
    assert history_b.accuracy == history_a.accuracy
    compare(loss_b._grad, loss_a._grad)
    for layer_a, layer_b in zip(model_a.layers, model_b.layers, strict=True):
        for cache in ("x", "y"):
            if hasattr(layer_a, cache):
                compare(getattr(layer_b, cache), getattr(layer_a, cache))


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 9), min_size=0, max_size=3),
       n=st.integers(1, 70), batch_size=st.integers(1, 40),
       dtype=st.sampled_from([np.float32, np.float64]),
       reduction=st.sampled_from(["mean", "sum"]),
       optimizer=st.sampled_from(["SGD", "SGD momentum", "SGD Nesterov, decay", "Adam"]),
       seed=st.integers(0, 2**16))
def test_fused_fit_equals_the_plain_path_to_the_bit(hidden, n, batch_size, dtype, reduction,
                                                     optimizer, seed):
    rng = np.random.default_rng(seed)
    X, y = _data(rng, n=n, n_in=5, n_classes=3, dtype=dtype)
    runs = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_kernels(monkeypatch, "numpy")
        for use_fused in (False, True):
            model = cr.mlp(5, tuple(hidden), 3, seed=seed, dtype=dtype)
            history, trained, loss, calls = _fit(
                model, X, y, use_fused, optimizer=_optimizer(optimizer),
                loss=cr.SoftmaxCrossEntropy(reduction=reduction), monkeypatch=monkeypatch,
                batch_size=batch_size)
            assert (calls[0] is not None) == use_fused
            runs.append((model, history, trained, loss))
    _assert_same_training(*runs, exact=True)


@pytest.mark.parametrize("optimizer", ["SGD", "SGD momentum", "SGD Nesterov, decay", "Adam",
                                       "Adam, decay"])
def test_updating_each_layer_during_backward_equals_the_plain_step_to_the_bit(optimizer, rng,
                                                                             monkeypatch):
    """Above the flat-vector limit the fused step updates each layer as soon as backward is
    done with it, by updaters it keeps: the same arithmetic as ``optimizer.step``."""
    use_kernels(monkeypatch, "numpy")
    X, y = _data(rng, n=100, n_in=60, n_classes=10, dtype=np.float32)
    runs = []
    for use_fused in (False, True):
        model = cr.mlp(60, (300, 200), 10, seed=1, dtype=np.float32)  # 80,510 parameters
        history, trained, loss, calls = _fit(model, X, y, use_fused, monkeypatch=monkeypatch,
                                             optimizer=_optimizer(optimizer), batch_size=32)
        runs.append((model, history, trained, loss))
    assert calls[0].optimizer is not None  # updated during backward
    _assert_same_training(*runs, exact=True)


def _optimizer(name):
    return {"SGD": lambda: cr.SGD(0.1), "SGD momentum": lambda: cr.SGD(0.1, momentum=0.9),
            "SGD Nesterov, decay": lambda: cr.SGD(0.1, momentum=0.5, nesterov=True,
                                                  weight_decay=0.01),
            "Adam": lambda: cr.Adam(0.01),
            "Adam, decay": lambda: cr.Adam(0.01, weight_decay=0.01)}[name]()


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["SGD momentum", "SGD Nesterov, decay", "Adam, decay"])
def test_fused_fit_with_compiled_kernels_equals_the_plain_path_to_rounding(dtype, optimizer,
                                                                           rng, monkeypatch):
    # 80,510 parameters: above SMALLEST_COMPILED, so every fused kernel runs compiled, the
    # loss's too (the plain path leaves its small logits to NumPy: rounding differs there),
    # and above the flat-vector limit, so each layer is updated during backward.
    use_kernels(monkeypatch, "numba")  # numba even under CHAINRULE_KERNELS=numpy
    X, y = _data(rng, n=200, n_in=60, n_classes=10, dtype=dtype)
    runs = []
    for use_fused in (False, True):
        model = cr.mlp(60, (300, 200), 10, seed=1, dtype=dtype)
        history, trained, loss, calls = _fit(model, X, y, use_fused, monkeypatch=monkeypatch,
                                             optimizer=_optimizer(optimizer), batch_size=32)
        runs.append((model, history, trained, loss))
    assert calls[0].large and calls[0].optimizer is not None and kernels.backend() == "numba"
    _assert_same_training(*runs, exact=False)


def test_fused_step_is_used_for_the_common_mlp_and_declined_otherwise(rng):
    _, y = _data(rng)
    model = cr.mlp(12, (8,), 4, seed=0)
    ce, sgd = cr.SoftmaxCrossEntropy(), cr.SGD(0.1)
    assert FOR_TRAINING(model, ce, sgd, y) is not None
    assert FOR_TRAINING(cr.Sequential([cr.Dense(12, 4)]), ce, sgd, y) is not None

    class MyDense(cr.Dense):
        pass

    declined = {
        "sigmoid": (cr.Sequential([cr.Dense(12, 8), cr.Sigmoid(), cr.Dense(8, 4)]), ce, y),
        "two Dense in a row": (cr.Sequential([cr.Dense(12, 8), cr.Dense(8, 4)]), ce, y),
        "ends in ReLU": (cr.Sequential([cr.Dense(12, 4), cr.ReLU()]), ce, y),
        "subclass": (cr.Sequential([MyDense(12, 4)]), ce, y),
        "class weights": (model, cr.SoftmaxCrossEntropy(weight=np.ones(4)), y),
        "smoothing": (model, cr.SoftmaxCrossEntropy(label_smoothing=0.1), y),
        "ignored class": (model, cr.SoftmaxCrossEntropy(ignore_index=2), y),
        "other loss": (cr.Sequential([cr.Dense(12, 4)]), cr.MSELoss(), y),
        "soft targets": (model, ce, np.eye(4)[y]),
    }
    for what, (network, loss, target) in declined.items():
        assert FOR_TRAINING(network, loss, sgd, target) is None, what
    mixed = cr.mlp(12, (8,), 4, seed=0)
    mixed.layers[0].params["b"] = mixed.layers[0].params["b"].astype(np.float32)
    assert FOR_TRAINING(mixed, ce, sgd, y) is None


def test_a_method_replaced_on_a_class_or_tied_weights_switch_it_off(rng, monkeypatch):
    _, y = _data(rng)
    model, ce, sgd = cr.mlp(12, (8,), 4, seed=0), cr.SoftmaxCrossEntropy(), cr.SGD(0.1)
    assert FOR_TRAINING(model, ce, sgd, y) is not None
    for owner, name in [(cr.Dense, "forward"), (cr.ReLU, "_function"), (cr.Layer, "_check_input"),
                        (cr.SoftmaxCrossEntropy, "_forward_labels"), (cr.SGD, "_updater"),
                        (cr.Sequential, "forward")]:
        with monkeypatch.context() as patch:
            original = getattr(owner, name)
            patch.setattr(owner, name, lambda self, *args, _f=original: _f(self, *args))
            assert FOR_TRAINING(model, ce, sgd, y) is None, (owner, name)
    tied = cr.Sequential([cr.Dense(12, 12), cr.ReLU(), cr.Dense(12, 12), cr.ReLU(),
                          cr.Dense(12, 4)])
    tied.layers[2].params["W"] = tied.layers[0].params["W"]
    assert FOR_TRAINING(tied, ce, sgd, y) is None


@pytest.mark.parametrize("where", ["layer", "loss"])
def test_a_method_replaced_on_one_instance_is_called(where, rng, monkeypatch):
    """A user's replaced method switches the shortcut off: it runs, as in the plain path."""
    X, y = _data(rng)
    model, loss, calls = cr.mlp(12, (8,), 4, seed=0), cr.SoftmaxCrossEntropy(), []
    owner = model.layers[1] if where == "layer" else loss
    original = owner.backward

    def spy(grad_out=None):
        calls.append(1)
        return original(grad_out) if where == "layer" else original()

    owner.backward = spy
    _fit(model, X, y, True, loss=loss, monkeypatch=monkeypatch, epochs=1, batch_size=30)
    assert len(calls) == 3  # one per batch


def test_copies_pickles_and_dtype_changes_train_alike_fused_or_not(rng, monkeypatch):
    use_kernels(monkeypatch, "numpy")
    X, y = _data(rng)
    model = cr.mlp(12, (8, 6), 4, seed=0)
    _fit(model, X, y, True, monkeypatch=monkeypatch)  # a trained model with caches set
    variants = {"deepcopy": copy.deepcopy(model), "pickle": pickle.loads(pickle.dumps(model)),
                "float32": copy.deepcopy(model).astype(np.float32)}
    for name, variant in variants.items():
        runs = []
        for use_fused in (False, True):
            twin = copy.deepcopy(variant)
            history, optimizer, loss, calls = _fit(twin, X, y, use_fused,
                                                   monkeypatch=monkeypatch)
            assert (calls[0] is not None) == use_fused, name
            runs.append((twin, history, optimizer, loss))
        _assert_same_training(*runs, exact=True)
    # the copies trained from the same weights: the original's training is theirs
    original = copy.deepcopy(model)
    _fit(original, X, y, True, monkeypatch=monkeypatch)
    _fit(variants["pickle"], X, y, True, monkeypatch=monkeypatch)
    for key, value in original.params.items():
        np.testing.assert_array_equal(variants["pickle"].params[key], value)


@pytest.mark.parametrize("case", ["runaway", "overflow"])
def test_divergence_is_reported_alike_fused_or_not(case, rng, monkeypatch):
    X, y = _data(rng)
    messages = []
    for use_fused in (False, True):
        model = cr.mlp(12, (8,), 4, seed=0)
        if case == "overflow":  # the hidden layer's output overflows: logits not finite
            model.layers[0].params["W"][...] = 1e308
            expected = ValueError  # before any update: the inputs or weights are too large
        else:
            expected = FloatingPointError
        with pytest.raises(expected) as error:
            _fit(model, X, y, use_fused, optimizer=cr.SGD(1e8), monkeypatch=monkeypatch)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    expected_cause = "Dense(8→4): input has" if case == "overflow" else "runaway"
    assert expected_cause in messages[0]


def test_the_last_partial_batch_and_a_wider_batch_reuse_no_stale_rows(rng, monkeypatch):
    """Buffers sized by the first batch serve a smaller last batch, and grow for a larger
    one (the same step object across two forward calls)."""
    use_kernels(monkeypatch, "numpy")
    X, y = _data(rng, n=40)
    model = cr.mlp(12, (8,), 4, seed=0)
    step = FOR_TRAINING(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.1), y)
    for rows in (16, 5, 33):
        logits, batch_loss = step.forward(X[:rows], y[:rows])
        expected = cr.SoftmaxCrossEntropy()(model.forward(X[:rows]), y[:rows])
        assert logits.shape == (rows, 4)
        np.testing.assert_array_equal(logits, model.forward(X[:rows]))
        assert batch_loss == expected
