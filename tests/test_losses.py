"""Losses: the seed question's numbers, finite differences, chain = fused, PyTorch, bad input."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chainrule as cr

Z = np.array([[1.75, 1.75]])
T = np.array([[0.0, 1.0]])


def test_seed_question_through_softmax_then_cross_entropy():
    softmax, cross_entropy = cr.Softmax(), cr.CrossEntropy()
    a = softmax.forward(Z)
    np.testing.assert_array_equal(a, [[0.5, 0.5]])
    assert cross_entropy.forward(a, T) == pytest.approx(np.log(2), rel=1e-15)
    dE_dA = cross_entropy.backward()
    np.testing.assert_array_equal(dE_dA, [[0.0, -2.0]])
    np.testing.assert_array_equal(softmax.jacobian(Z), [[[0.25, -0.25], [-0.25, 0.25]]])
    dE_dZ = softmax.backward(dE_dA)
    np.testing.assert_array_equal(dE_dZ, [[0.5, -0.5]])
    np.testing.assert_array_equal(dE_dZ, a - T)


@pytest.mark.parametrize("target", [np.array([1]), T])
def test_seed_question_through_fused_loss(target):
    loss = cr.SoftmaxCrossEntropy()
    assert loss.forward(Z, target) == pytest.approx(np.log(2), rel=1e-15)
    np.testing.assert_array_equal(loss.backward(), [[0.5, -0.5]])


def make_case(rng, batch=4, classes=5, soft=False, scale=3.0):
    logits = rng.normal(size=(batch, classes)) * scale
    if soft:
        target = rng.dirichlet(np.ones(classes), size=batch)
    else:
        target = rng.integers(0, classes, size=batch)
    return logits, target


LOSS_CASES = {
    "fused": (lambda: cr.SoftmaxCrossEntropy(), lambda z: z),
    "fused-options": (lambda: cr.SoftmaxCrossEntropy(weight=[1, 2, 0.5, 1, 3],
                                                     label_smoothing=0.2), lambda z: z),
    "fused-sum": (lambda: cr.SoftmaxCrossEntropy(reduction="sum"), lambda z: z),
    "cross-entropy": (lambda: cr.CrossEntropy(), cr.softmax),
    "cross-entropy-options": (lambda: cr.CrossEntropy(weight=[1, 2, 0.5, 1, 3],
                                                      label_smoothing=0.1), cr.softmax),
    "nll": (lambda: cr.NLLLoss(), cr.log_softmax),
    "nll-weighted": (lambda: cr.NLLLoss(weight=[1, 2, 0.5, 1, 3]), cr.log_softmax),
    "mse": (lambda: cr.MSELoss(), lambda z: z),
}


@pytest.mark.parametrize("name", LOSS_CASES)
@pytest.mark.parametrize("soft", [False, True])
def test_gradient_matches_finite_differences(name, soft, numeric_jacobian, rng):
    make_loss, to_output = LOSS_CASES[name]
    logits, target = make_case(rng, soft=soft, scale=1.0)  # probabilities ≫ the step
    output = to_output(logits)
    loss = make_loss()
    loss.forward(output, target)
    analytic = loss.backward().copy()
    numeric = numeric_jacobian(lambda out: make_loss().forward(out, target), output)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 6), classes=st.integers(2, 9),
       soft=st.booleans(), scale=st.floats(0.1, 30))
def test_softmax_then_cross_entropy_equals_fused(seed, batch, classes, soft, scale):
    rng = np.random.default_rng(seed)
    logits, target = make_case(rng, batch, classes, soft)
    logits *= scale
    softmax, cross_entropy, fused = cr.Softmax(), cr.CrossEntropy(), cr.SoftmaxCrossEntropy()
    chained_loss = cross_entropy.forward(softmax.forward(logits), target)
    fused_loss = fused.forward(logits, target)
    if chained_loss < 50:  # far from the probability floor, where the chain is exact
        assert chained_loss == pytest.approx(fused_loss, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(softmax.backward(cross_entropy.backward()),
                                   fused.backward(), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_gradient_is_probabilities_minus_onehot_over_batch(dtype, rng):
    logits = (rng.normal(size=(6, 4)) * 10).astype(dtype)
    labels = np.array([0, 1, 2, 3, 0, 1])
    loss = cr.SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    grad = loss.backward()
    assert grad.dtype == dtype
    expected = (cr.softmax(logits.astype(np.float64)) - np.eye(4)[labels]) / 6
    np.testing.assert_allclose(grad, expected, atol=1e-7 if dtype == np.float32 else 1e-15)
    log_p = cr.log_softmax(logits.astype(np.float64))
    assert value == pytest.approx(-log_p[np.arange(6), labels].mean(), rel=1e-5)


def test_masked_logits_have_zero_probability_and_no_nan():
    logits = np.array([[2.0, -np.inf, 0.0], [-np.inf, 1.0, 1.0]])
    loss = cr.SoftmaxCrossEntropy()
    value = loss.forward(logits, np.array([0, 2]))
    grad = loss.backward()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert grad[0, 1] == 0 and grad[1, 0] == 0
    soft = np.array([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])
    assert np.isfinite(loss.forward(logits, soft))
    assert np.all(np.isfinite(loss.backward()))
    with pytest.raises(ValueError, match="label 1 of row 0 has probability 0"):
        loss.forward(logits, np.array([1, 2]))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_plus_infinity_logits_are_rejected(value):
    logits = np.zeros((2, 3))
    logits[1, 0] = value
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy.*NaN or \+inf.*at \[1, 0\]"):
        cr.SoftmaxCrossEntropy().forward(logits, np.array([0, 1]))


@pytest.mark.parametrize("make_loss", [cr.SoftmaxCrossEntropy, cr.CrossEntropy, cr.NLLLoss])
@pytest.mark.parametrize("label", [3, -1, 7])
def test_out_of_range_label_is_named(make_loss, label):
    output = np.full((2, 3), 1 / 3) if make_loss is cr.CrossEntropy else np.log(np.full((2, 3),
                                                                                     1 / 3))
    with pytest.raises(ValueError, match=rf"{make_loss.__name__}.*label {label} at index 1 is "
                                         r"out of range for 3 classes"):
        make_loss().forward(output, np.array([0, label]))


def test_ignore_index_drops_samples_like_pytorch(rng):
    logits = rng.normal(size=(4, 3))
    loss = cr.SoftmaxCrossEntropy()
    value = loss.forward(logits, np.array([0, -100, 2, -100]))
    grad = loss.backward()
    kept = cr.SoftmaxCrossEntropy()
    assert value == pytest.approx(kept.forward(logits[[0, 2]], np.array([0, 2])))
    np.testing.assert_allclose(grad[[0, 2]], kept.backward())
    np.testing.assert_array_equal(grad[[1, 3]], 0)
    assert cr.SoftmaxCrossEntropy(ignore_index=1).forward(logits, np.array([1, 1, 1, 1])) == 0


def test_soft_target_rows_must_sum_to_one():
    with pytest.raises(ValueError, match=r"soft-target row 1 sums to 0\.9"):
        cr.SoftmaxCrossEntropy().forward(np.zeros((2, 2)), np.array([[0.5, 0.5], [0.4, 0.5]]))
    with pytest.raises(ValueError, match="non-negative"):
        cr.CrossEntropy().forward(np.full((1, 2), 0.5), np.array([[1.5, -0.5]]))


def test_empty_batch_and_shape_errors():
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy.*empty batch"):
        cr.SoftmaxCrossEntropy().forward(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="3 labels for a batch of 2"):
        cr.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"MSELoss.*: target shape \(2, 2\) does not match"):
        cr.MSELoss().forward(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="labels must be integers"):
        cr.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0.5, 1.0]))


def test_cross_entropy_rejects_logits_and_handles_zero_probability():
    with pytest.raises(ValueError, match=r"expects probabilities in \[0, 1\].*SoftmaxCrossEnt"):
        cr.CrossEntropy().forward(np.array([[2.0, -1.0]]), np.array([0]))
    loss = cr.CrossEntropy()
    value = loss.forward(np.array([[0.0, 1.0]]), np.array([0]))
    assert value == pytest.approx(-np.log(np.finfo(np.float64).tiny))  # ≈ 708, not inf
    assert np.all(np.isfinite(loss.backward()))
    assert loss.forward(np.array([[0.0, 1.0]]), np.array([1])) == 0  # 0 ln 0 = 0
    np.testing.assert_array_equal(loss.backward(), [[0.0, -1.0]])
    assert cr.CrossEntropy().forward(np.array([[0.0, 1.0]], dtype=np.float32),
                                     np.array([0])) == pytest.approx(87.3365, rel=1e-5)


def test_warns_when_softmax_is_applied_twice():
    loss = cr.SoftmaxCrossEntropy()
    with pytest.warns(UserWarning, match="softmax applied twice"):
        loss.forward(np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([1, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cr.SoftmaxCrossEntropy().forward(np.array([[2.0, -1.0]]), np.array([0]))


@given(classes=st.integers(2, 5000), shape=st.sampled_from(["one-hot", "uniform", "random"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_warns_for_every_kind_of_probability_row(classes, shape, dtype, seed):
    """The cheap Σ exp(z) window that gates the full test admits every probability row."""
    rng = np.random.default_rng(seed)
    if shape == "one-hot":
        rows = np.zeros((3, classes))
        rows[np.arange(3), rng.integers(0, classes, 3)] = 1
    elif shape == "uniform":
        rows = np.full((3, classes), 1 / classes)
    else:
        rows = rng.dirichlet(np.full(classes, 0.3), size=3)
    rows = rows.astype(dtype)
    with pytest.warns(UserWarning, match="softmax applied twice"):
        cr.SoftmaxCrossEntropy().forward(rows, rng.integers(0, classes, 3))


@pytest.mark.parametrize("dtype", [">i8", "<i4", "i1", "u2", ">u4"])
def test_labels_of_any_integer_dtype_and_byte_order(dtype):
    logits = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]])
    expected = cr.SoftmaxCrossEntropy().forward(logits, np.array([1, 2]))
    loss = cr.SoftmaxCrossEntropy()
    assert loss.forward(logits, np.array([1, 2], dtype=dtype)) == expected
    if np.dtype(dtype).kind == "i":
        with pytest.raises(ValueError, match="label -1 at index 1 is out of range"):
            loss.forward(logits, np.array([1, -1], dtype=dtype))
    with pytest.raises(ValueError, match="label 3 at index 0 is out of range"):
        loss.forward(logits, np.array([3, 0], dtype=dtype))


def test_option_validation():
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        cr.SoftmaxCrossEntropy(reduction="none")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        cr.SoftmaxCrossEntropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight has 2 entries for 3 classes"):
        cr.SoftmaxCrossEntropy(weight=[1, 2]).forward(np.zeros((1, 3)), np.array([0]))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        cr.MSELoss().backward()


def test_mse_values():
    loss = cr.MSELoss()
    assert loss.forward(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]])) == 2.5
    np.testing.assert_array_equal(loss.backward(), [[1.0, 2.0]])
    assert loss.forward(np.array([[1.0, 0.0]]), np.array([0])) == 0  # labels → one-hot


torch_cases = [
    ({}, False), ({}, True), ({"label_smoothing": 0.1}, False), ({"label_smoothing": 0.3}, True),
    ({"weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, False), ({"weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, True),
    ({"weight": [0.2, 1.0, 3.0, 0.5, 1.5], "label_smoothing": 0.2}, False),
    ({"ignore_index": 2}, False), ({"reduction": "sum", "label_smoothing": 0.1}, False),
]


@pytest.mark.parametrize(("options", "soft"), torch_cases)
def test_fused_and_nll_agree_with_torch(options, soft, rng):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    logits, target = make_case(rng, batch=8, classes=5, soft=soft)
    torch_options = {key: (torch.tensor(value, dtype=torch.float64) if key == "weight" else value)
                     for key, value in options.items()}
    leaf = torch.tensor(logits, requires_grad=True)
    expected = functional.cross_entropy(leaf, torch.tensor(target), **torch_options)
    expected.backward()
    loss = cr.SoftmaxCrossEntropy(**options)
    assert loss.forward(logits, target) == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), leaf.grad.numpy(), rtol=1e-10, atol=1e-15)
    if not soft and "label_smoothing" not in options:
        log_probs = cr.log_softmax(logits)
        leaf = torch.tensor(log_probs, requires_grad=True)
        expected = functional.nll_loss(leaf, torch.tensor(target), **torch_options)
        expected.backward()
        nll = cr.NLLLoss(**options)
        assert nll.forward(log_probs, target) == pytest.approx(expected.item(), rel=1e-12)
        np.testing.assert_allclose(nll.backward(), leaf.grad.numpy(), rtol=1e-12)


def test_mse_agrees_with_torch(rng):
    torch = pytest.importorskip("torch")
    output, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    leaf = torch.tensor(output, requires_grad=True)
    expected = torch.nn.functional.mse_loss(leaf, torch.tensor(target))
    expected.backward()
    loss = cr.MSELoss()
    assert loss.forward(output, target) == pytest.approx(expected.item(), rel=1e-13)
    np.testing.assert_allclose(loss.backward(), leaf.grad.numpy(), rtol=1e-13)
