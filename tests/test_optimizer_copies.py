"""An optimizer's state survives copy, pickle and dtype changes: a copy trains exactly like
the original.

The NumPy flat-vector path keeps ``state`` as views of flat arrays; a copy or pickle would
turn those views into independent arrays (the update subtracted would then be a stale copy,
forever). These tests pin that a copy rebuilds them.
"""

import copy
import pickle

import numpy as np
import pytest

import chainrule as cr
from numba_marks import BACKENDS, use_kernels

OPTIMIZERS = [lambda: cr.SGD(0.05, momentum=0.9, weight_decay=0.01),
              lambda: cr.SGD(0.05, momentum=0.9, nesterov=True), lambda: cr.Adam(0.01)]
COPIES = [copy.deepcopy, lambda thing: pickle.loads(pickle.dumps(thing))]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """numpy: the flat-vector path of small models; numba: the compiled per-parameter one."""
    use_kernels(monkeypatch, request.param, any_size=request.param == "numba")
    if request.param == "numba":
        monkeypatch.setattr(cr.Optimizer, "_FLAT_LIMIT", 0)
    return request.param


def _train(model, optimizer, X, y, epochs=2):
    return cr.fit(model, cr.SoftmaxCrossEntropy(), optimizer, X, y, epochs=epochs,
                  batch_size=16, seed=3, verbose=0)


@pytest.mark.parametrize("make", OPTIMIZERS)
@pytest.mark.parametrize("duplicate", COPIES)
def test_a_copied_optimizer_trains_exactly_like_the_original(make, duplicate, backend, rng):
    X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
    model, optimizer = cr.mlp(5, [9], 3, seed=0), make()
    _train(model, optimizer, X, y)
    model_copy, optimizer_copy = duplicate((model, optimizer))
    _train(model, optimizer, X, y, epochs=3)
    _train(model_copy, optimizer_copy, X, y, epochs=3)
    for key, value in model.params.items():
        np.testing.assert_array_equal(model_copy.params[key], value)
    for key, state in optimizer.state.items():
        for name, value in state.items():
            np.testing.assert_array_equal(optimizer_copy.state[key][name], value)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_a_copy_is_independent_and_shares_no_state(make, backend, rng):
    X, y = rng.normal(size=(48, 4)), rng.integers(0, 2, 48)
    model, optimizer = cr.mlp(4, [6], 2, seed=1), make()
    _train(model, optimizer, X, y, epochs=1)
    twin = copy.deepcopy(optimizer)
    arrays = [value for state in twin.state.values() for value in state.values()]
    for index, array in enumerate(arrays):  # Adam's step count is one array per key too
        assert not any(np.shares_memory(array, other) for other in arrays[index + 1:])
    before = {key: dict(state) for key, state in optimizer.state.items()}
    _train(cr.mlp(4, [6], 2, seed=1), twin, X, y, epochs=1)
    for key, state in optimizer.state.items():
        for name, value in state.items():
            assert value is before[key][name]


@pytest.mark.parametrize("make", OPTIMIZERS)
@pytest.mark.parametrize("duplicate", COPIES)
def test_after_a_dtype_change_copy_and_original_still_agree(make, duplicate, backend, rng):
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    model, optimizer = cr.mlp(5, [7], 3, seed=2), make()
    _train(model, optimizer, X, y, epochs=1)
    model_copy, optimizer_copy = duplicate((model, optimizer))
    for net, step in ((model, optimizer), (model_copy, optimizer_copy)):
        net.astype(np.float32)
        _train(net, step, X.astype(np.float32), y, epochs=2)
        net.astype(np.float64)  # and back: the state follows the parameters' dtype again
        _train(net, step, X, y, epochs=1)
    for key, value in model.params.items():
        assert value.dtype == np.float64
        np.testing.assert_array_equal(model_copy.params[key], value)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_flat_and_per_parameter_paths_agree_after_a_dtype_change(make, rng, monkeypatch):
    use_kernels(monkeypatch, "numpy")  # the flat path is NumPy's
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    models, optimizers = [cr.mlp(5, [7], 3, seed=2) for _ in range(2)], [make(), make()]
    optimizers[1]._FLAT_LIMIT = 0
    for model, optimizer in zip(models, optimizers, strict=True):
        _train(model, optimizer, X, y, epochs=1)
        model.astype(np.float32)
        _train(model, optimizer, X.astype(np.float32), y, epochs=2)
    assert optimizers[0]._flat is not None and optimizers[1]._flat is None
    for key, value in models[0].params.items():
        np.testing.assert_array_equal(models[1].params[key], value)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # max_iter=5 on purpose
def test_pickled_classifier_keeps_learning_like_the_original(backend):
    """The reported case: iris, pickle round trip, 200 ``partial_fit`` calls (the copy was
    stuck at loss 0.94 while the original reached 0.17)."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    original = cr.MLPClassifier((16,), solver="sgd", learning_rate_init=0.01, max_iter=5,
                                random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(original))
    for _ in range(200):
        original.partial_fit(X, y)
        restored.partial_fit(X, y)
    assert restored.loss_curve_ == original.loss_curve_
    assert original.loss_curve_[-1] < 0.3
    np.testing.assert_array_equal(restored.predict_proba(X), original.predict_proba(X))
