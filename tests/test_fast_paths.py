"""The training path's shortcuts give exactly what the public, step-by-step path gives.

``fit`` skips the first layer's input gradient, ReLU multiplies by a mask, the fused loss has
a hard-label path (which overwrites its last gradient's array when nobody holds it), and small
models are optimised as one flat vector: each is checked here against the plain computation
it replaces. ``fit``'s fused MLP step has its own file, ``test_fused.py``.
"""

import copy
import pickle
import weakref

import numpy as np
import pytest

import chainrule as cr
from chainrule.nn.errors import NonFiniteError
from chainrule.nn.training import _backward_to_params


def _data(rng, n=96, n_in=6, n_classes=4, dtype=np.float64):
    return rng.normal(size=(n, n_in)).astype(dtype), rng.integers(0, n_classes, n)


@pytest.mark.parametrize("optimizer", [
    lambda: cr.SGD(0.1, momentum=0.9), lambda: cr.SGD(0.1, momentum=0.5, nesterov=True,
                                                      weight_decay=0.01),
    lambda: cr.Adam(0.01, weight_decay=0.01)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_equals_the_public_step_by_step_loop(optimizer, shuffle, rng):
    X, y = _data(rng)
    fitted = cr.mlp(6, [8, 5], 4, seed=3)
    reference = cr.mlp(6, [8, 5], 4, seed=3)
    cr.fit(fitted, cr.SoftmaxCrossEntropy(), optimizer(), X, y, epochs=3, batch_size=16,
           shuffle=shuffle, seed=7, verbose=0)

    loss, step, order = cr.SoftmaxCrossEntropy(), optimizer(), np.arange(len(X))
    shuffler = np.random.default_rng(7)
    for _ in range(3):
        if shuffle:
            shuffler.shuffle(order)
        for begin in range(0, len(X), 16):
            rows = order[begin:begin + 16]
            loss.forward(reference.forward(X[rows]), y[rows])
            reference.backward(loss.backward())
            step.step(reference)
    for key, value in reference.params.items():
        np.testing.assert_allclose(fitted.params[key], value, rtol=1e-12, atol=1e-14)


def test_backward_to_params_fills_the_same_grads_and_skips_leading_layers(rng):
    model = cr.Sequential([cr.Tanh(), cr.Dense(5, 7, seed=0), cr.ReLU(), cr.Dense(7, 3, seed=1)])
    x = rng.normal(size=(10, 5))
    grad_out = rng.normal(size=(10, 3))
    model.forward(x)
    model.backward(grad_out)
    expected = {key: grad.copy() for key, grad in model.grads.items()}
    for grad in model.grads.values():
        grad[...] = np.nan
    model.forward(x)
    _backward_to_params(model, grad_out, first_trainable=1)
    for key, grad in model.grads.items():
        np.testing.assert_array_equal(grad, expected[key])


def test_dense_backward_params_returns_checked_grad_and_fills_grads(rng):
    layer = cr.Dense(4, 3, seed=0)
    x, grad_out = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    layer.forward(x)
    layer._backward_params(grad_out)
    np.testing.assert_allclose(layer.grads["W"], x.T @ grad_out, rtol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], grad_out.sum(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="grad_out of shape"):
        layer._backward_params(grad_out[:, :2])


def test_relu_backward_is_the_masked_gradient_even_for_non_finite_upstream(rng):
    layer = cr.ReLU()
    x = rng.normal(size=(6, 5))
    y = layer.forward(x)
    grad_out = rng.normal(size=(6, 5))
    np.testing.assert_array_equal(layer.backward(grad_out), np.where(x > 0, grad_out, 0))
    huge = grad_out * 1e200  # finite, but overflows the cheap Σ g² test
    np.testing.assert_array_equal(layer.backward(huge), np.where(x > 0, huge, 0))
    grad_out[y == 0] = np.inf  # inf x (unit off) must be 0, not inf * 0 = NaN
    grad_out[0, 0], x_off = np.nan, np.flatnonzero(y.ravel() == 0)[0]
    grad_out.ravel()[x_off] = -np.inf
    expected = np.where(y > 0, grad_out, 0)
    np.testing.assert_array_equal(layer.backward(grad_out), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# exp(z) as it stands; overflowing (shifted by the row max instead); underflowing (shifted)
@pytest.mark.parametrize(("scale", "offset"), [(3, 0), (300, 0), (3, -800)])
def test_hard_label_loss_path_equals_the_soft_target_path(dtype, scale, offset, rng):
    logits = (rng.normal(scale=scale, size=(9, 5)) + offset).astype(dtype)
    logits[2, 4] = logits[7, 0] = -np.inf  # masked classes, not the labels
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3])
    for reduction in ("mean", "sum"):
        fast, general = cr.SoftmaxCrossEntropy(reduction), cr.SoftmaxCrossEntropy(reduction)
        value = fast.forward(logits, labels)
        expected = general.forward(logits, np.eye(5)[labels])  # soft rows: the general path
        tolerance = 1e-6 if dtype == np.float32 else 1e-13
        assert value == pytest.approx(expected, rel=tolerance)
        assert fast.backward().dtype == dtype
        np.testing.assert_allclose(fast.backward(), general.backward(), rtol=tolerance,
                                   atol=tolerance)
        assert np.all(fast.backward()[[2, 7], [4, 0]] == 0)


def test_hard_label_loss_path_errors(rng):
    logits = rng.normal(size=(3, 4))
    loss = cr.SoftmaxCrossEntropy()
    bad = logits.copy()
    bad[1, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"NaN or \+inf.*\[1, 2\]"):
        loss.forward(bad, np.array([0, 1, 2]))
    masked = logits.copy()
    masked[2] = -np.inf
    with pytest.raises(NonFiniteError, match=r"row 2 .* -inf everywhere"):
        loss.forward(masked, np.array([0, 1, 2]))
    masked = logits.copy()
    masked[1, 3] = -np.inf
    with pytest.raises(ValueError, match="label 3 of row 1 has probability 0"):
        loss.forward(masked, np.array([0, 3, 2]))
    with pytest.raises(ValueError, match="label 4 at index 2 is out of range"):
        loss.forward(logits, np.array([0, 3, 4]))


@pytest.mark.parametrize("make", [
    lambda: cr.SGD(0.05), lambda: cr.SGD(0.05, momentum=0.9, weight_decay=0.1),
    lambda: cr.SGD(0.05, momentum=0.9, nesterov=True), lambda: cr.Adam(0.01, weight_decay=0.1)])
def test_flat_and_per_parameter_updates_agree(make, rng, numpy_kernels):
    models = [cr.mlp(5, [7], 3, seed=0) for _ in range(2)]
    flat, per_parameter = make(), make()
    per_parameter._FLAT_LIMIT = 0
    for _ in range(4):
        x, grad_out = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
        for model, optimizer in zip(models, (flat, per_parameter), strict=True):
            model.forward(x)
            model.backward(grad_out)
            optimizer.step(model)
    for key, value in models[1].params.items():
        np.testing.assert_allclose(models[0].params[key], value, rtol=1e-13, atol=1e-15)
    assert flat._flat is not None and per_parameter._flat is None
    for name in set(flat.state["0.W"]) - {"scratch"}:  # per-parameter state, as views
        np.testing.assert_allclose(flat.state["0.W"][name], per_parameter.state["0.W"][name],
                                   rtol=1e-13, atol=1e-15)


def test_sgd_first_momentum_step_is_exactly_the_gradient_step(rng):
    model = cr.mlp(3, [4], 2, seed=0)
    before = model.get_weights()
    model.forward(rng.normal(size=(5, 3)))
    model.backward(rng.normal(size=(5, 2)))
    cr.SGD(0.5, momentum=0.9).step(model)
    for key, grad in model.grads.items():
        np.testing.assert_array_equal(model.params[key], before[key] - grad * 0.5)


# --- SoftmaxCrossEntropy reuses its last gradient's array when nobody else holds it ---------

@pytest.mark.parametrize("n_classes", [10, 300, 5000])  # each kernel path: small, one pass, wide
def test_cross_entropy_overwrites_only_a_gradient_nobody_holds(n_classes, rng):
    loss = cr.SoftmaxCrossEntropy()
    logits = rng.normal(size=(6, n_classes)).astype(np.float32)
    labels = rng.integers(0, n_classes, 6)
    loss.forward(logits, labels)
    spare = weakref.ref(loss._grad)  # a weak reference does not hold it
    loss.forward(2 * logits, labels)
    assert spare() is loss._grad  # reused: no new array per batch
    fresh = cr.SoftmaxCrossEntropy()
    fresh.forward(2 * logits, labels)
    np.testing.assert_array_equal(loss.backward(), fresh.backward())  # and the same values

    kept = loss.backward()  # the caller keeps it, or a view of it: never overwritten
    row = loss.backward()[0]
    copies = kept.copy(), row.copy()
    loss.forward(3 * logits, labels)
    assert loss.backward() is not kept
    np.testing.assert_array_equal(kept, copies[0])
    np.testing.assert_array_equal(row, copies[1])


def test_a_failed_cross_entropy_forward_leaves_no_stale_gradient(rng):
    loss = cr.SoftmaxCrossEntropy()
    logits = rng.normal(size=(4, 300)).astype(np.float32)
    loss.forward(logits, np.arange(4))
    logits[2, 5] = np.nan
    with pytest.raises(NonFiniteError):
        loss.forward(logits, np.arange(4))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        loss.backward()


def test_a_copied_or_pickled_cross_entropy_keeps_its_own_gradient_array(rng):
    """The reuse of the last gradient's array never reaches across copies: a deep copy or a
    pickle of the loss has an array of its own, and each forward fills only its own."""
    loss = cr.SoftmaxCrossEntropy()
    logits = rng.normal(size=(6, 300)).astype(np.float32)
    labels = rng.integers(0, 300, 6)
    loss.forward(logits, labels)
    copies = [copy.deepcopy(loss), pickle.loads(pickle.dumps(loss))]
    before = [twin.backward().copy() for twin in copies]
    loss.forward(2 * logits, labels)  # overwrites the original's array in place
    for twin, saved in zip(copies, before, strict=True):
        assert twin.backward() is not loss.backward()
        np.testing.assert_array_equal(twin.backward(), saved)
        twin.forward(2 * logits, labels)
        np.testing.assert_array_equal(twin.backward(), loss.backward())
