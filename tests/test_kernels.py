"""Every compiled kernel equals its NumPy reference (``chainrule.nn.kernels``).

Each kernel is called through its public function twice, once dispatched to the numba loops
and once to the NumPy reference, in float32 and float64, on odd shapes and non-contiguous
views. Element-wise kernels and optimizer steps must agree exactly; kernels that reorder a
sum agree to the dtype's rounding. The numba half skips when numba is not installed.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.nn import kernels
from numba_marks import BACKENDS, HAS_NUMBA, needs_numba, use_kernels

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (7, 13), (33, 3), (2, 257)]


def both(monkeypatch, function, *args_factory):
    """``function(*args)`` on the NumPy reference, then on numba; fresh arguments each time."""
    results = []
    for backend in ("numpy", "numba"):
        use_kernels(monkeypatch, backend, any_size=True)
        args = [make() for make in args_factory]
        results.append((function(*args), args))
    return results


def _layouts(array: np.ndarray) -> list[np.ndarray]:
    """The array as it is, as a column-sliced view, and as a transposed (Fortran) copy's view."""
    wide = np.repeat(array, 2, axis=1)
    return [array, wide[:, ::2], np.asfortranarray(array)]


def _tolerance(dtype, n_summed: int) -> dict:
    eps = np.finfo(dtype).eps
    return {"rtol": 4 * n_summed * eps, "atol": 4 * n_summed * eps}


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 7, 784])
@pytest.mark.parametrize("n_rows", [0, 1, 7, 8, 9, 17, 64])  # around the groups of eight
def test_gather_rows_copies_the_rows_exactly(dtype, width, n_rows, rng):
    source = rng.normal(size=(40, width)).astype(dtype)
    rows = rng.integers(0, 40, n_rows)  # repeats included
    rows[:1] = 39  # the last row
    out = np.full((n_rows, width), np.nan, dtype)
    assert kernels._compile().gather_rows(source, rows, out)  # the loops ran, not the reference
    np.testing.assert_array_equal(out, source[rows])


@needs_numba
@settings(max_examples=40, deadline=None)
@given(n_source=st.integers(1, 50), width=st.integers(1, 40), data=st.data())
def test_gather_rows_equals_take(n_source, width, data):
    rows = np.array(data.draw(st.lists(st.integers(0, n_source - 1), max_size=30)), np.intp)
    source = np.arange(n_source * width, dtype=np.float32).reshape(n_source, width)
    out = np.zeros((len(rows), width), np.float32)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_kernels(monkeypatch, "numba")
        assert kernels.gather_rows(source, rows, out, large=True) is out
    np.testing.assert_array_equal(out, np.take(source, rows, axis=0))


@needs_numba
@pytest.mark.parametrize("bad_row", [-1, 40, 2**62])
def test_gather_rows_loops_decline_rows_out_of_range_before_writing(bad_row, rng):
    """They index without bounds checks, so they check the rows first, and write nothing."""
    source = rng.normal(size=(40, 9))
    rows = np.array([3, 5, 7, 11, 13, 17, 19, 23, bad_row])
    out = np.zeros((9, 9))
    assert not kernels._compile().gather_rows(source, rows, out)
    assert not out.any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["plain", "sliced source", "Fortran source", "strided out",
                                  "int32 rows"])
def test_gather_rows_takes_any_layout(backend, case, rng, monkeypatch):
    """What the loops were not written for goes to the reference, with the same answer."""
    use_kernels(monkeypatch, backend, any_size=True)
    source = rng.normal(size=(30, 11)).astype(np.float32)
    rows = rng.integers(0, 30, 12)
    out = np.empty((12, 11), np.float32)
    if case == "sliced source":
        source = np.repeat(source, 2, axis=1)[:, ::2]
    elif case == "Fortran source":
        source = np.asfortranarray(source)
    elif case == "strided out":
        out = np.empty((12, 22), np.float32)[:, ::2]
    elif case == "int32 rows":
        rows = rows.astype(np.int32)
    kernels.gather_rows(source, rows, out, large=True)
    np.testing.assert_array_equal(out, source[rows])


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", [0, 1, 2])
def test_relu_backward_equals_reference(dtype, shape, layout, rng, monkeypatch):
    output = np.maximum(rng.normal(size=shape), 0).astype(dtype)
    grad_out = rng.normal(size=shape).astype(dtype)
    grad_out.flat[::3] = np.inf  # inf/NaN upstream: 0 where the unit is off, never NaN
    grad_out.flat[1::5] = np.nan
    output, grad_out = _layouts(output)[layout], _layouts(grad_out)[layout]
    (reference, _), (compiled, _) = both(monkeypatch, kernels.relu_backward,
                                         lambda: grad_out, lambda: output)
    assert compiled.dtype == dtype and compiled.shape == shape
    np.testing.assert_array_equal(compiled, reference)
    np.testing.assert_array_equal(compiled, np.where(output > 0, grad_out, 0))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", [0, 1, 2])
def test_bias_relu_equals_reference_and_dense_then_relu(dtype, shape, layout, rng, monkeypatch):
    z = rng.normal(size=shape).astype(dtype)
    z.flat[::4] = np.nan  # stays NaN, as np.maximum leaves it
    z.flat[1::7] = -np.inf
    bias = rng.normal(size=shape[1]).astype(dtype)
    results = both(monkeypatch, kernels.bias_relu, lambda: _layouts(z.copy())[layout],
                   lambda: bias.copy())
    (_, (reference, _)), (_, (compiled, _)) = results  # updated in place, views included
    np.testing.assert_array_equal(compiled, reference)
    np.testing.assert_array_equal(compiled, cr.ReLU().forward(z + bias))  # the layers' math
    assert not np.signbit(compiled[compiled == 0]).any()  # max(-0.0, 0) is +0, as in NumPy


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", [0, 1, 2])
def test_relu_backward_bias_grad_equals_reference(dtype, shape, layout, rng, monkeypatch):
    output = np.maximum(rng.normal(size=shape), 0).astype(dtype)
    grad_out = rng.normal(size=shape).astype(dtype)
    grad_out.flat[::5] = np.inf  # where the unit is off: 0, not NaN
    grad_out, output = _layouts(grad_out)[layout], _layouts(output)[layout]
    results = both(monkeypatch, kernels.relu_backward_bias_grad, lambda: grad_out,
                   lambda: output, lambda: np.full(shape, 7, dtype),
                   lambda: np.full(shape[1], 7, dtype))
    (_, (_, _, reference, reference_bias)), (_, (_, _, compiled, compiled_bias)) = results
    np.testing.assert_array_equal(compiled, reference)
    np.testing.assert_array_equal(compiled, np.where(output > 0, grad_out, 0))
    # The same sum, row after row, as np.add.reduce over the batch: equal to the bit.
    np.testing.assert_array_equal(compiled_bias, reference_bias)
    np.testing.assert_array_equal(compiled_bias, np.add.reduce(compiled, axis=0))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [*SHAPES, (13,), (3, 4, 5)])
@pytest.mark.parametrize("sliced", [False, True])
def test_softmax_vjp_equals_reference(dtype, shape, sliced, rng, monkeypatch):
    a = cr.softmax(rng.normal(scale=3, size=shape)).astype(dtype)
    g = rng.normal(size=shape).astype(dtype)
    if sliced:  # every other entry of a wider array: strided, not contiguous
        a, g = np.stack([a, a], axis=-1)[..., 0], np.stack([g, g], axis=-1)[..., 0]
        assert g.size == 1 or not g.flags.c_contiguous
    (reference, _), (compiled, _) = both(monkeypatch, kernels.softmax_vjp, lambda: a, lambda: g)
    assert compiled.dtype == dtype and compiled.shape == shape
    np.testing.assert_allclose(compiled, reference, **_tolerance(dtype, shape[-1]))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", ["plain", "large", "masked", "sliced", "uint8 labels"])
def test_softmax_cross_entropy_equals_reference(dtype, shape, case, rng, monkeypatch):
    scale = {"large": 3e3}.get(case, 3.0)  # large: the reference shifts too, no overflow
    logits = (rng.normal(size=shape) * scale).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    if case == "masked" and shape[1] > 1:
        logits[:, 0] = -np.inf
        labels = np.maximum(labels, 1)
    if case == "sliced":
        logits = np.repeat(logits, 2, axis=1)[:, ::2]
    if case == "uint8 labels":
        labels = labels.astype(np.uint8)
    norm = shape[0]
    (reference, _), (compiled, _) = both(monkeypatch, kernels.softmax_cross_entropy,
                                         lambda: logits, lambda: labels, lambda: norm)
    tolerance = _tolerance(dtype, shape[1])
    for ours, expected in zip(compiled, reference, strict=True):
        assert ours.dtype == dtype and ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, **tolerance)
    np.testing.assert_allclose(compiled[0], cr.log_softmax(logits)[np.arange(norm), labels],
                               **tolerance)


@needs_numba
@pytest.mark.parametrize("n_classes", [127, 128, 300, 1024, 1025, 4096, 10000])
@pytest.mark.parametrize("low", [-86.9, -87.1, -np.inf])
def test_float32_softmax_cross_entropy_in_one_pass_is_within_ulps_of_exact(n_classes, low, rng,
                                                                           monkeypatch):
    """The one-pass float32 loops (their own exp, for C ≥ 128, in chunks of 1024 classes)
    and the path below them, against the softmax computed in float64: within a few float32
    ulps of each entry's scale. Logits below -87 (not -inf) are handed to the reference; here
    they sit in the first chunk and in the last."""
    logits = (rng.normal(size=(6, n_classes)) * 8).astype(np.float32)
    logits[:, [1, -2]] = low  # tiny or masked classes
    labels = rng.integers(2, n_classes - 2, 6)
    labels[0] = n_classes - 1  # a label in the last chunk
    use_kernels(monkeypatch, "numba", any_size=True)
    picked, grad = kernels.softmax_cross_entropy(logits, labels, 6)
    exact = cr.softmax(logits.astype(np.float64))
    exact_grad = exact.copy()
    exact_grad[np.arange(6), labels] -= 1
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(grad, exact_grad / 6, rtol=8 * eps, atol=8 * eps / 6)
    np.testing.assert_allclose(picked, np.log(exact[np.arange(6), labels]), rtol=8 * eps,
                               atol=8 * eps)
    if low == -np.inf:  # a masked class: probability exactly 0
        assert not grad[:, [1, -2]].any()


@needs_numba
@settings(max_examples=30, deadline=None)
@given(n_rows=st.integers(1, 5), n_classes=st.integers(128, 3100), strided=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_one_pass_softmax_cross_entropy_equals_reference_across_chunks(n_rows, n_classes,
                                                                       strided, seed):
    """Any row width from the one-pass kernel's smallest up to three chunks and a bit, on
    contiguous and strided logits: the reference's loss and gradient, to float32 rounding."""
    rng = np.random.default_rng(seed)
    wide = (rng.normal(size=(n_rows, 2 * n_classes)) * 4).astype(np.float32)
    logits = wide[:, ::2] if strided else np.ascontiguousarray(wide[:, :n_classes])
    labels = rng.integers(0, n_classes, n_rows)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_kernels(monkeypatch, "numba", any_size=True)
        picked, grad = kernels.softmax_cross_entropy(logits, labels, n_rows)
    reference_picked, reference_grad = kernels._softmax_cross_entropy_numpy(logits, labels,
                                                                            n_rows)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(grad, reference_grad, rtol=16 * eps, atol=16 * eps / n_rows)
    np.testing.assert_allclose(picked, reference_picked, rtol=16 * eps, atol=16 * eps)


@needs_numba
@pytest.mark.parametrize("bad", [np.nan, np.inf, "row of -inf", "nan after the max"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [5, 3000])  # 3000: the bad entry in the third chunk
def test_softmax_cross_entropy_declines_rows_without_a_finite_max(bad, dtype, n_classes, rng,
                                                                 monkeypatch):
    logits = rng.normal(size=(4, n_classes)).astype(dtype)
    if bad == "row of -inf":
        logits[2] = -np.inf
    elif bad == "nan after the max":
        logits[1, 0], logits[1, -2] = 9.0, np.nan
    else:
        logits[1, -2] = bad
    labels = np.array([0, 1, 2, 3])
    for result, _ in both(monkeypatch, kernels.softmax_cross_entropy, lambda: logits,
                          lambda: labels, lambda: 4):
        assert result is None


def _sgd_options():
    return [dict(momentum=0.0, nesterov=False, weight_decay=0.0),
            dict(momentum=0.9, nesterov=False, weight_decay=0.0),
            dict(momentum=0.9, nesterov=True, weight_decay=0.01),
            dict(momentum=0.5, nesterov=False, weight_decay=0.1)]


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 13), (3, 1, 5)])
@pytest.mark.parametrize("options", _sgd_options())
def test_sgd_step_equals_reference_exactly(dtype, shape, options, rng, monkeypatch):
    param0 = rng.normal(size=shape).astype(dtype)
    grads = [rng.normal(size=shape).astype(dtype) for _ in range(3)]
    finals = []
    for backend in ("numpy", "numba"):
        use_kernels(monkeypatch, backend, any_size=True)
        param, state = param0.copy(), cr.SGD(0.1, **options)._new_state(param0)
        for grad in grads:
            kernels.sgd_step(param, grad, state, 0.1, **options)
        finals.append((param, state["velocity"]))
    np.testing.assert_array_equal(finals[1][0], finals[0][0])
    np.testing.assert_array_equal(finals[1][1], finals[0][1])


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 13), (3, 1, 5)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_step_equals_reference_exactly(dtype, shape, weight_decay, rng, monkeypatch):
    param0 = rng.normal(size=shape).astype(dtype)
    grads = [rng.normal(size=shape).astype(dtype) for _ in range(4)]
    finals = []
    for backend in ("numpy", "numba"):
        use_kernels(monkeypatch, backend, any_size=True)
        param, state = param0.copy(), cr.Adam()._new_state(param0)
        for grad in grads:
            kernels.adam_step(param, grad, state, 0.01, (0.9, 0.999), 1e-8, weight_decay)
        finals.append((param, state["m"], state["v"], int(state["t"])))
    for ours, expected in zip(finals[1], finals[0], strict=True):
        np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_steps_on_non_contiguous_parameters_update_them_in_place(backend, rng, monkeypatch):
    use_kernels(monkeypatch, backend, any_size=True)
    storage = rng.normal(size=(6, 8))
    param = storage[:, ::2]  # a strided view: the compiled loop hands it to the reference
    expected = param - 0.1 * np.ones_like(param)
    kernels.sgd_step(param, np.ones_like(param), cr.SGD(0.1)._new_state(param), 0.1, 0.0,
                     False, 0.0)
    np.testing.assert_allclose(storage[:, ::2], expected, rtol=1e-15)


@needs_numba
@pytest.mark.parametrize("make", [
    lambda: cr.SGD(0.05, momentum=0.9, weight_decay=0.01),
    lambda: cr.SGD(0.05, momentum=0.9, nesterov=True), lambda: cr.Adam(0.01)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_per_parameter_steps_equal_numpys_flat_path(make, dtype, rng, monkeypatch):
    """numba's one pass per parameter against the NumPy flat-vector path (small model)."""
    X, y = rng.normal(size=(64, 5)).astype(dtype), rng.integers(0, 3, 64)
    models = []
    for backend in ("numpy", "numba"):
        use_kernels(monkeypatch, backend, any_size=True)
        model, optimizer = cr.mlp(5, [7, 6], 3, seed=0, dtype=dtype), make()
        if backend == "numba":
            optimizer._FLAT_LIMIT = 0  # a model this small is otherwise optimised flat
        cr.fit(model, cr.SoftmaxCrossEntropy(), optimizer, X, y, epochs=3, batch_size=16,
               seed=1, verbose=0)
        assert (optimizer._flat is not None) == (backend == "numpy")
        models.append(model)
    eps = np.finfo(dtype).eps  # the loss's kernel rounds its sums differently: a few ulps
    for key, value in models[0].params.items():
        np.testing.assert_allclose(models[1].params[key], value, rtol=1e3 * eps,
                                   atol=1e3 * eps)


def _run(code: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **environment})


def test_numba_is_imported_on_the_first_large_kernel_call_only():
    code = ("import sys, numpy as np, chainrule as cr; from chainrule.nn import kernels; "
            "print('numba' in sys.modules); "
            "small = np.ones((2, kernels.SMALLEST_COMPILED // 2 - 1)); "
            "cr.fit(cr.mlp(600, [4], 2), cr.SoftmaxCrossEntropy(), cr.Adam(), np.ones((64, 600)), "
            "np.arange(64) % 2, epochs=2, batch_size=32, verbose=0); "  # batches of 19,200
            "kernels.relu_backward(small, small); print('numba' in sys.modules); "
            "large = np.ones((2, kernels.SMALLEST_COMPILED // 2)); "
            "kernels.relu_backward(large, large); "
            "print('numba' in sys.modules, kernels.backend())")
    result = _run(code, CHAINRULE_KERNELS="")  # the default: numba when installed
    expected = "True numba" if HAS_NUMBA else "False numpy"
    assert result.stdout.split("\n")[:3] == ["False", "False", expected], result.stderr


@pytest.mark.parametrize("size", [kernels.SMALLEST_COMPILED - 1, kernels.SMALLEST_COMPILED])
def test_both_sides_of_the_size_threshold_agree(size, rng):
    """Left to dispatch itself: NumPy below the threshold, numba (when installed) from it."""
    a = cr.softmax(rng.normal(size=(1, size)))
    g = rng.normal(size=(1, size))
    np.testing.assert_allclose(kernels.softmax_vjp(a, g), kernels._softmax_vjp_numpy(a, g),
                               **_tolerance(np.float64, size))


def test_a_model_is_large_from_the_size_threshold():
    assert not kernels.is_large(kernels.SMALLEST_COMPILED - 1)
    assert kernels.is_large(kernels.SMALLEST_COMPILED)
    assert not kernels.is_large(cr.mlp(64, [64], 10).n_params)  # 4,810
    assert kernels.is_large(cr.mlp(784, [256, 128], 10).n_params)  # 235,146


def test_chainrule_kernels_numpy_forces_the_reference():
    code = ("import sys, numpy as np, chainrule as cr; from chainrule.nn import kernels; "
            "kernels.relu_backward(np.ones((2, 2)), np.ones((2, 2))); "
            "print('numba' in sys.modules, kernels.backend())")
    assert _run(code, CHAINRULE_KERNELS="numpy").stdout.strip() == "False numpy"
    bad = _run(code, CHAINRULE_KERNELS="cuda")
    assert "CHAINRULE_KERNELS must be 'numba' or 'numpy', got 'cuda'" in bad.stderr


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step_divides_by_zero_like_numpy(dtype, monkeypatch):
    """eps = 0 and a zero gradient: 0/0 is NaN in both, never a ZeroDivisionError."""
    finals = []
    for backend in ("numpy", "numba"):
        use_kernels(monkeypatch, backend, any_size=True)
        param, grad = np.ones(5, dtype), np.array([0, 1, 0, -2, 0], dtype)
        state = cr.Adam()._new_state(param)
        with np.errstate(invalid="ignore"):
            kernels.adam_step(param, grad, state, 0.01, (0.9, 0.999), 0.0, 0.0)
        finals.append(param)
    assert np.isnan(finals[0]).sum() == 3
    np.testing.assert_array_equal(finals[1], finals[0])


@needs_numba
def test_kernels_compile_without_a_writable_cache_folder(monkeypatch, rng):
    """Where numba finds no folder to cache in, the kernels compile uncached, not fail."""
    from numba.core import caching

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    compiled = kernels._compile.__wrapped__()
    assert isinstance(compiled.relu_backward._cache, caching.NullCache)
    grad, output = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    grad_in = np.empty_like(grad)
    compiled.relu_backward(grad, output, grad_in)
    np.testing.assert_array_equal(grad_in, np.where(output > 0, grad, 0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_at_the_overflow_bound_stays_finite(backend, dtype, monkeypatch):
    """Every logit at the unshifted path's bound, rounded to the dtype: neither a row sum nor
    it times B may overflow (it did: the sums times B), so every loss term is -log C and the
    gradient (1/C - onehot) / B; and just above the bound (the shifted path), the same."""
    use_kernels(monkeypatch, backend, any_size=True)
    n_classes = 10
    bound = kernels._exp_limits(np.dtype(dtype), n_classes * 4)[0]
    logits = np.full((4, n_classes), bound, dtype=dtype)
    expected = np.full((4, n_classes), 1 / n_classes / 4)
    expected[np.arange(4), np.arange(4)] -= 1 / 4
    for shift in (0, 2):
        picked, grad = kernels.softmax_cross_entropy(logits + dtype(shift), np.arange(4), 4)
        np.testing.assert_allclose(picked, -np.log(n_classes), rtol=1e-5)
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
