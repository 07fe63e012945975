"""Layers: backward equals gᵀJ, J equals finite differences, parameter gradients, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chainrule as cr

ACTIVATIONS = [cr.Sigmoid, cr.Tanh, cr.ReLU, cr.Softmax, cr.LogSoftmax]


def make_layer(kind, n_in=5, seed=0):
    return cr.Dense(n_in, 3, seed=seed) if kind is cr.Dense else kind()


def away_from_kink(x: np.ndarray) -> np.ndarray:
    """Move entries off ReLU's kink at 0, where the one-sided derivatives differ."""
    return np.where(np.abs(x) < 0.05, 0.05 + np.abs(x), x)


@pytest.mark.parametrize("kind", [cr.Dense, *ACTIVATIONS])
def test_jacobian_matches_finite_differences(kind, numeric_jacobian, rng):
    layer = make_layer(kind)
    x = away_from_kink(rng.normal(size=(3, 5)))
    numeric = numeric_jacobian(layer.forward, x)  # (B, n_out, B, n_in)
    per_row = np.stack([numeric[b, :, b, :] for b in range(len(x))])
    np.testing.assert_allclose(layer.jacobian(x), per_row, atol=1e-8)
    for b, c in [(0, 1), (2, 0)]:  # rows do not interact
        np.testing.assert_allclose(numeric[b, :, c, :], 0, atol=1e-12)


@pytest.mark.parametrize("kind", [cr.Dense, *ACTIVATIONS])
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 5), width=st.integers(2, 9),
       scale=st.floats(0.1, 20))
def test_backward_equals_grad_times_jacobian(kind, seed, batch, width, scale):
    rng = np.random.default_rng(seed)
    layer = make_layer(kind, n_in=width, seed=seed)
    x = away_from_kink(rng.normal(size=(batch, width)) * scale)
    y = layer.forward(x)
    g = rng.normal(size=y.shape)
    expected = np.einsum("bi,bij->bj", g, layer.jacobian(x))
    np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-10, atol=1e-12)


def test_dense_parameter_gradients(numeric_jacobian, rng):
    layer = cr.Dense(4, 3, seed=1)
    x, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    layer.forward(x)
    layer.backward(g)
    weights = layer.params["W"].copy()

    def loss_of_weights(w):
        layer.params["W"][...] = w
        return np.sum(layer.forward(x) * g)

    np.testing.assert_allclose(layer.grads["W"], numeric_jacobian(loss_of_weights, weights),
                               atol=1e-8)
    layer.params["W"][...] = weights
    np.testing.assert_allclose(layer.grads["b"], g.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(layer.grads["W"], x.T @ g, rtol=1e-14)


def test_backward_overwrites_grads_and_params_are_live():
    layer = cr.Dense(2, 2, seed=0)
    grads_w = layer.grads["W"]
    x = np.ones((1, 2))
    layer.forward(x)
    layer.backward(np.ones((1, 2)))
    layer.backward(np.ones((1, 2)))
    np.testing.assert_array_equal(layer.grads["W"], np.ones((2, 2)))  # not accumulated
    assert layer.grads["W"] is grads_w
    layer.params["W"][...] = 0
    np.testing.assert_array_equal(layer.forward(x), [[0.0, 0.0]])


def test_jacobian_leaves_forward_cache_alone(rng):
    layer = cr.Softmax()
    x = rng.normal(size=(2, 3))
    y = layer.forward(x)
    layer.jacobian(rng.normal(size=(4, 3)))
    g = rng.normal(size=(2, 3))
    np.testing.assert_allclose(layer.backward(g), cr.softmax_vjp(y, g))


def test_dense_initialisation_is_seeded_and_scaled():
    a, b = cr.Dense(100, 50, seed=3), cr.Dense(100, 50, seed=3)
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    assert np.abs(a.params["W"]).max() <= np.sqrt(6 / 150)
    assert np.abs(cr.Dense(100, 50, seed=3, init="he").params["W"]).max() <= np.sqrt(6 / 100)
    np.testing.assert_array_equal(a.params["b"], 0)
    assert cr.Dense(3, 2, dtype=np.float32).params["W"].dtype == np.float32


@pytest.mark.parametrize("kind", [cr.Dense, *ACTIVATIONS])
def test_float32_stays_float32(kind, rng):
    layer = make_layer(kind).astype(np.float32)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32
    assert layer.backward(np.ones_like(y)).dtype == np.float32


def test_relu_kink_convention():
    layer = cr.ReLU()
    layer.forward(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(layer.backward(np.array([[5.0, 5.0, 5.0]])), [[0, 0, 5]])


@pytest.mark.parametrize("kind", [cr.Softmax, cr.LogSoftmax])
def test_minus_infinity_masks_a_class(kind):
    layer = kind()
    y = layer.forward(np.array([[1.0, -np.inf, 1.0]]))
    probabilities = y if kind is cr.Softmax else np.exp(y)
    np.testing.assert_array_equal(probabilities, [[0.5, 0.0, 0.5]])
    grad = layer.backward(np.array([[1.0, 7.0, -1.0]]))
    # Softmax: a ⊙ (g - ⟨g, a⟩) with a = (0.5, 0, 0.5): the masked logit gets exactly 0.
    # LogSoftmax: g - a Σg; the masked entry keeps ∂y_j/∂z_j = 1 - a_j = 1, so it gets g_j.
    expected = [[0.5, 0.0, -0.5]] if kind is cr.Softmax else [[-2.5, 7.0, -4.5]]
    np.testing.assert_allclose(grad, expected)


@pytest.mark.parametrize("kind", [cr.Softmax, cr.LogSoftmax])
@pytest.mark.parametrize(("value", "message"), [(np.nan, "NaN at \\[1, 2\\]"),
                                                (np.inf, "\\+inf at \\[1, 2\\]")])
def test_nan_or_plus_infinity_logits_are_rejected(kind, value, message):
    x = np.zeros((2, 3))
    x[1, 2] = value
    with pytest.raises(ValueError, match=f"{kind.__name__}.*{message}"):
        kind().forward(x)


def test_fully_masked_row_is_rejected():
    with pytest.raises(ValueError, match="row 0 is -inf everywhere"):
        cr.Softmax().forward(np.full((1, 3), -np.inf))


def test_dense_wrong_width_names_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Dense\(4→3\): expected input of shape \(B, 4\), "
                                         r"got \(2, 5\)"):
        cr.Dense(4, 3).forward(np.zeros((2, 5)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_dense_non_finite_input(value):
    x = np.zeros((3, 4))
    x[2, 1] = value
    with pytest.raises(ValueError, match=r"Dense\(4→3\).*non-finite.*at \[2, 1\]"):
        cr.Dense(4, 3).forward(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_accepts_huge_finite_input(dtype):
    """Huge finite entries overflow the cheap Σ x² test; the exact search clears them."""
    layer = cr.Dense(4, 3, seed=0, dtype=dtype)
    x = np.zeros((3, 4), dtype=dtype)
    x[1, 2] = np.finfo(dtype).max / 1e3
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["W"] + layer.params["b"])


@pytest.mark.parametrize("kind", [cr.Dense, *ACTIVATIONS])
def test_empty_batch_and_wrong_rank(kind):
    layer = make_layer(kind, n_in=4)
    with pytest.raises(ValueError, match="empty batch"):
        layer.forward(np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, "):
        layer.forward(np.zeros(4))


@pytest.mark.parametrize("kind", [cr.Dense, *ACTIVATIONS])
def test_backward_misuse(kind):
    layer = make_layer(kind, n_in=4)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((2, 3)))
    y = layer.forward(np.ones((2, 4)))
    with pytest.raises(ValueError, match=rf"grad_out of shape \(2, {y.shape[1]}\).*got \(3, 1\)"):
        layer.backward(np.zeros((3, 1)))
