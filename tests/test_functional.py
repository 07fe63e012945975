"""Softmax math: worked numbers, identities (property tests), stability, PyTorch agreement."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import chainrule as cr

DTYPES = [np.float32, np.float64]


def logit_batches(max_scale: float = 50.0):
    """(B, C) float64 logits with B in 1..6, C in 2..12, entries in ±max_scale."""
    shapes = st.tuples(st.integers(1, 6), st.integers(2, 12))
    values = st.floats(-max_scale, max_scale, allow_nan=False, allow_infinity=False)
    return shapes.flatmap(lambda shape: arrays(np.float64, shape, elements=values))


def test_seed_question_numbers():
    a = cr.softmax(np.array([1.75, 1.75]))
    np.testing.assert_array_equal(a, [0.5, 0.5])
    np.testing.assert_array_equal(cr.softmax_jacobian(a), [[0.25, -0.25], [-0.25, 0.25]])
    np.testing.assert_array_equal(cr.softmax_vjp(a, np.array([0.0, -2.0])), [0.5, -0.5])


def test_jacobian_from_logits_is_the_classic_mistake():
    """Feeding Z instead of A reproduces the seed question's garbage diagonal."""
    wrong = cr.softmax_jacobian(np.array([1.75, 1.75]))
    np.testing.assert_allclose(np.diag(wrong), [1.75 * (1 - 1.75)] * 2)
    assert not np.allclose(wrong, cr.softmax_jacobian(cr.softmax(np.array([1.75, 1.75]))))


def test_three_class_values():
    z = np.array([1.0, 2.0, 3.0])
    expected = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(cr.softmax(z), expected, rtol=1e-15)
    np.testing.assert_allclose(cr.log_softmax(z), np.log(expected), rtol=1e-14)
    assert cr.logsumexp(z) == pytest.approx(np.log(np.exp(z).sum()), rel=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4])
def test_stable_for_large_logits(dtype, scale):
    z = np.array([[scale, -scale, 0.0], [-scale, -scale, -scale + 1]], dtype=dtype)
    a = cr.softmax(z)
    log_a = cr.log_softmax(z)
    assert a.dtype == dtype and log_a.dtype == dtype
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(log_a))
    np.testing.assert_allclose(a[0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(a[1], np.exp([-1, -1, 0]) / np.exp([-1, -1, 0]).sum(), rtol=1e-5)
    np.testing.assert_allclose(log_a[0], [0, -2 * scale, -scale], rtol=1e-6)
    np.testing.assert_allclose(cr.logsumexp(z), [scale, -scale + 1 + np.log(1 + 2 / np.e)],
                               rtol=1e-6)


def test_masked_logits_give_zero_probability():
    z = np.array([[0.0, -np.inf, 0.0]])
    np.testing.assert_array_equal(cr.softmax(z), [[0.5, 0.0, 0.5]])
    assert cr.log_softmax(z)[0, 1] == -np.inf
    assert cr.logsumexp(z)[0] == pytest.approx(np.log(2))
    assert cr.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf


def test_logsumexp_keepdims_and_axis():
    z = np.arange(12.0).reshape(3, 4)
    assert cr.logsumexp(z).shape == (3,)
    assert cr.logsumexp(z, keepdims=True).shape == (3, 1)
    np.testing.assert_allclose(cr.logsumexp(z, axis=0), np.log(np.exp(z).sum(axis=0)))
    np.testing.assert_allclose(cr.softmax(z, axis=0).sum(axis=0), 1)


def test_inputs_are_not_mutated():
    z = np.array([[3.0, 1.0]])
    a = cr.softmax(z)
    cr.softmax_jacobian(a)
    cr.softmax_vjp(a, z)
    s = cr.sigmoid(z)  # computed in a buffer of its own, never in z
    np.testing.assert_array_equal(z, [[3.0, 1.0]])
    assert not np.shares_memory(s, z) and not np.shares_memory(s, cr.sigmoid(z))


def test_sigmoid_extremes():
    z = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0])
    np.testing.assert_allclose(cr.sigmoid(z), 1 / (1 + np.exp(-np.clip(z, -700, 700))),
                               rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype, lowest", [(np.float64, -708.0), (np.float32, -87.0)])
@given(z=st.floats(-800, 100))
def test_sigmoid_is_accurate_to_a_few_ulps_relative(dtype, lowest, z):
    """``(1 + tanh(z/2)) / 2`` lost a small σ's digits: σ(-21) in float32 was 0, and 0 from
    z = -38 in float64; float32 σ(-10) was off by 2e-4 relative."""
    z = dtype(z)
    exact = np.exp(np.longdouble(z)) / (1 + np.exp(np.longdouble(z)))
    got = cr.sigmoid(np.array([z]))[0]
    assert got.dtype == dtype
    if z < lowest:  # below the smallest normal number: rounds to it, or to 0
        assert 0 <= got <= 2 * np.finfo(dtype).smallest_normal
    else:
        assert abs(np.longdouble(got) - exact) <= 4 * np.finfo(dtype).eps * exact


@given(logit_batches(), st.floats(-100, 100))
def test_softmax_rows_sum_to_one_and_shift_invariant(z, shift):
    a = cr.softmax(z)
    np.testing.assert_allclose(a.sum(axis=-1), 1, rtol=1e-12)
    np.testing.assert_allclose(cr.softmax(z + shift), a, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(np.exp(cr.log_softmax(z)), a, rtol=1e-9, atol=1e-300)


@given(logit_batches())
def test_jacobian_identities(z):
    a = cr.softmax(z)
    jac = cr.softmax_jacobian(a)
    assert jac.shape == (*z.shape, z.shape[-1])
    np.testing.assert_allclose(jac.sum(axis=-1), 0, atol=1e-15)
    np.testing.assert_allclose(jac.sum(axis=-2), 0, atol=1e-15)
    np.testing.assert_array_equal(jac, np.swapaxes(jac, -1, -2))
    expected = a[..., :, None] * (np.eye(z.shape[-1]) - a[..., None, :])
    np.testing.assert_allclose(jac, expected, atol=1e-16)


@given(logit_batches(), st.integers(0, 2**32 - 1))
def test_vjp_equals_explicit_jacobian_product(z, seed):
    g = np.random.default_rng(seed).normal(size=z.shape)
    a = cr.softmax(z)
    explicit = np.einsum("...ij,...i->...j", cr.softmax_jacobian(a), g)  # Jᵀ g
    np.testing.assert_allclose(cr.softmax_vjp(a, g), explicit, rtol=1e-10, atol=1e-14)


def test_jacobian_matches_finite_differences(numeric_jacobian, rng):
    z = rng.normal(size=5)
    numeric = numeric_jacobian(cr.softmax, z)
    np.testing.assert_allclose(cr.softmax_jacobian(cr.softmax(z)), numeric, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    z = (rng.normal(size=(7, 11)) * 20).astype(dtype)
    z[2, 3] = -np.inf
    tz = torch.from_numpy(z)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    np.testing.assert_allclose(cr.softmax(z), torch.softmax(tz, -1).numpy(), **tol)
    np.testing.assert_allclose(cr.log_softmax(z), torch.log_softmax(tz, -1).numpy(), **tol)
    np.testing.assert_allclose(cr.logsumexp(z), torch.logsumexp(tz, -1).numpy(), **tol)
    g = rng.normal(size=z.shape).astype(dtype)
    leaf = torch.from_numpy(z[:, :3].copy()).requires_grad_()
    torch.softmax(leaf, -1).backward(torch.from_numpy(g[:, :3].copy()))
    np.testing.assert_allclose(cr.softmax_vjp(cr.softmax(z[:, :3]), g[:, :3]),
                               leaf.grad.numpy(), **tol)
