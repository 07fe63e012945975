"""Fused kernels for the training path: a plain NumPy reference and a numba version of each.

Each public function here dispatches: to its numba version when numba is installed (the
``chainrule[fast]`` extra) and the array has at least ``SMALLEST_COMPILED`` entries, else to
its NumPy reference; ``CHAINRULE_KERNELS=numpy`` forces the reference. numba is imported on
the first call that uses it, never by ``import chainrule``.

The numba versions are the plain loops below each reference, compiled serially
(``parallel=False``: on a few cores numba's thread pool fights OpenBLAS's for them) and cached
on disk. They run only on arrays they were written for — one float dtype, in-place targets
contiguous — and hand anything else to the reference, so every input gets an answer. Each is
tested equal to its reference (``tests/test_kernels.py``): exactly for the element-wise ones
and the optimizer steps, to rounding where a sum is reordered.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

__all__ = ["adam_step", "adam_updater", "backend", "bias_relu", "gather_rows", "is_large",
           "relu_backward", "relu_backward_bias_grad", "sgd_step", "sgd_updater",
           "softmax_cross_entropy", "softmax_vjp"]


def backend() -> str:
    """``"numba"`` when the compiled kernels are in use (for arrays of at least
    ``SMALLEST_COMPILED`` entries), else ``"numpy"``. Loads numba if it is installed."""
    return "numpy" if _compiled() is None else "numba"


# Arrays smaller than this stay on the NumPy reference even with numba installed: there a
# NumPy call costs microseconds, while loading numba costs ~0.5 s per process (and compiling
# the kernels ~1-2 s once after installing), which a small model such as `chainrule train`'s
# digits network never earns back. Every kernel is tested on both sides of it.
SMALLEST_COMPILED = 1 << 14


def is_large(n_params: int) -> bool:
    """Whether a model of ``n_params`` parameters runs all its kernels compiled, small arrays
    included (its weight arrays load numba anyway): the ``large`` argument of the kernels."""
    return n_params >= SMALLEST_COMPILED


# --- a shuffled batch: out[i] = X[rows[i]] ---------------------------------------------------

def gather_rows(source: np.ndarray, rows: np.ndarray, out: np.ndarray,
                large: bool = False) -> np.ndarray:
    """``out[i] ← source[rows[i]]`` and ``out``: the batch of ``rows`` (``(B,)`` integers in
    ``[0, N)``, already validated) of ``source`` ``(N, D)``, into ``out`` ``(B, D)``.
    Compiled only for a ``large`` model (as for ``bias_relu``), whatever ``out``'s size: the
    microseconds a batch saves never pay for loading numba by themselves."""
    compiled = _compiled() if large else None
    if (compiled is None or source.ndim != 2 or not _in_place_ok(out)
            or out.dtype != source.dtype or not source.flags.c_contiguous
            or out.shape != (len(rows), source.shape[1]) or rows.dtype != np.intp
            or not compiled.gather_rows(source, rows, out)):
        # mode="clip" (the rows are valid anyway) lets take write into `out` unbuffered.
        np.take(source, rows, axis=0, out=out, mode="clip")
    return out


def _gather_rows_loops(source, rows, out):
    """False, with nothing written, when a row is outside ``[0, N)``. Eight rows at a time,
    column by column: a row of ``source`` is usually a cache miss to memory, and eight streams
    in flight copy 1.4-1.7x faster than one row after another (``np.take``)."""
    n_rows, width = source.shape
    count = rows.shape[0]
    for index in range(count):
        if not 0 <= rows[index] < n_rows:
            return False
    one = np.uint64(1)
    first = 0
    # The eight rows written out: an inner loop over them is not vectorised, and ran 1.5-2x
    # slower than np.take.
    while first + 8 <= count:
        # Unsigned indices: numba then skips its negative-index wraparound, a branch per
        # entry that stops LLVM vectorising the loop.
        r0, r1, r2, r3 = rows[first], rows[first + 1], rows[first + 2], rows[first + 3]
        r4, r5, r6, r7 = rows[first + 4], rows[first + 5], rows[first + 6], rows[first + 7]
        r0, r1, r2, r3 = np.uint64(r0), np.uint64(r1), np.uint64(r2), np.uint64(r3)
        r4, r5, r6, r7 = np.uint64(r4), np.uint64(r5), np.uint64(r6), np.uint64(r7)
        at = np.uint64(first)
        for col in range(width):
            c = np.uint64(col)
            out[at, c] = source[r0, c]
            out[at + one, c] = source[r1, c]
            out[at + 2 * one, c] = source[r2, c]
            out[at + 3 * one, c] = source[r3, c]
            out[at + 4 * one, c] = source[r4, c]
            out[at + 5 * one, c] = source[r5, c]
            out[at + 6 * one, c] = source[r6, c]
            out[at + 7 * one, c] = source[r7, c]
        first += 8
    for index in range(first, count):
        row, at = np.uint64(rows[index]), np.uint64(index)
        for col in range(width):
            out[at, np.uint64(col)] = source[row, np.uint64(col)]
    return True


# --- ReLU backward: ∂L/∂x = g where y > 0, else 0 ------------------------------------------

def relu_backward(grad_out: np.ndarray, output: np.ndarray) -> np.ndarray:
    """``g ⊙ [y > 0]`` for ReLU's output ``y``; 0 where the unit is off, even for inf/NaN ``g``."""
    compiled = _compiled_for(grad_out)
    if compiled is None or not _same_float_dtype(grad_out, output) or grad_out.ndim != 2:
        return _relu_backward_numpy(grad_out, output)
    grad_in = np.empty_like(grad_out, order="C")
    compiled.relu_backward(grad_out, output, grad_in)
    return grad_in


def _relu_backward_numpy(grad_out: np.ndarray, output: np.ndarray,
                         out: np.ndarray | None = None) -> np.ndarray:
    # Multiplying by the mask is 3x faster than np.where, but ±inf or NaN times an off unit's
    # 0 would be NaN where the gradient is 0: those rare inputs (found by one BLAS dot, Σ g²)
    # take np.where.
    if math.isfinite(np.vdot(grad_out, grad_out)):
        return np.multiply(grad_out, output > 0, out=out)
    masked = np.where(output > 0, grad_out, grad_out.dtype.type(0))
    if out is None:
        return masked
    out[...] = masked
    return out


def _relu_backward_loops(grad_out, output, grad_in):
    for row in range(grad_out.shape[0]):
        for col in range(grad_out.shape[1]):
            grad_in[row, col] = grad_out[row, col] if output[row, col] > 0 else 0


# --- Dense then ReLU, fused (``chainrule.nn.fused``'s training step) -------------------------

def bias_relu(z: np.ndarray, bias: np.ndarray, large: bool = False) -> None:
    """In place: ``z ← max(z + b, 0)`` with ``b`` ``(n,)`` added to every row of ``z``
    ``(B, n)``, as ``Dense`` then ``ReLU`` compute it (NaN stays NaN, like ``np.maximum``).
    ``large``: the model is large enough for the compiled loops whatever ``z``'s size."""
    compiled = _compiled_for(z, large)
    if compiled is None or not _in_place_ok(z) or bias.dtype != z.dtype:
        z += bias
        np.maximum(z, 0, out=z)
        return
    compiled.bias_relu(z, bias)


def _bias_relu_loops(z, bias):
    for row in range(z.shape[0]):
        for col in range(z.shape[1]):
            value = z[row, col] + bias[col]
            z[row, col] = value if value > 0 or value != value else 0


def relu_backward_bias_grad(grad_out: np.ndarray, output: np.ndarray, grad_in: np.ndarray,
                            bias_grad: np.ndarray, large: bool = False) -> None:
    """``grad_in ← g ⊙ [y > 0]`` (``relu_backward``) and ``bias_grad ← Σ_rows grad_in``: ReLU's
    backward and the bias gradient of the ``Dense`` below it, in one pass. All ``(B, n)``
    but ``bias_grad`` ``(n,)``; the sum runs down the rows in order, as ``np.add.reduce``."""
    compiled = _compiled_for(grad_out, large)
    if (compiled is None or not _in_place_ok(grad_in, grad_out, output)
            or not _in_place_ok(bias_grad) or bias_grad.dtype != grad_in.dtype):
        _relu_backward_numpy(grad_out, output, out=grad_in)
        np.add.reduce(grad_in, axis=0, out=bias_grad)
        return
    compiled.relu_backward_bias_grad(grad_out, output, grad_in, bias_grad)


def _relu_backward_bias_grad_loops(grad_out, output, grad_in, bias_grad):
    bias_grad[:] = 0
    for row in range(grad_out.shape[0]):
        for col in range(grad_out.shape[1]):
            value = grad_out[row, col] if output[row, col] > 0 else 0
            grad_in[row, col] = value
            bias_grad[col] += value


# --- softmax VJP: (Jᵀ g)_j = a_j (g_j - Σ_i g_i a_i) --------------------------------------

def softmax_vjp(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``a ⊙ (g - ⟨g, a⟩)`` row by row (classes on the last axis), ``(..., C)``."""
    a, g = np.asarray(a), np.asarray(g)
    compiled = _compiled_for(a)
    if compiled is None or not _same_float_dtype(a, g) or a.shape != g.shape or a.ndim == 0:
        return _softmax_vjp_numpy(a, g)
    if a.ndim == 2:  # the layers' case: no reshaping (each costs a few tenths of a µs)
        grad = np.empty(a.shape, dtype=a.dtype)
        compiled.softmax_vjp(a, g, grad)
        return grad
    a_rows, g_rows = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
    grad = np.empty(a_rows.shape, dtype=a.dtype)
    compiled.softmax_vjp(a_rows, g_rows, grad)
    return grad.reshape(a.shape)


def _softmax_vjp_numpy(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    # ⟨g, a⟩ per row as a batch of (1, C) @ (C, 1) products: BLAS, no (..., C) temporary.
    row_dot = (g[..., None, :] @ a[..., :, None])[..., 0]
    grad = g - row_dot
    grad *= a
    return grad


def _softmax_vjp_loops(a, g, grad):
    for row in range(a.shape[0]):
        row_dot = a.dtype.type(0)
        for col in range(a.shape[1]):
            row_dot += g[row, col] * a[row, col]
        for col in range(a.shape[1]):
            grad[row, col] = a[row, col] * (g[row, col] - row_dot)


# --- softmax cross-entropy on hard labels ---------------------------------------------------

def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, norm: float,
                          large: bool = False,
                          out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(log p_{b,y_b} per row, (p - onehot(y)) / norm)`` with ``p = softmax(logits)``.

    ``logits`` ``(B, C)`` float, ``labels`` ``(B,)`` in ``[0, C)`` (already validated). Returns
    None when some row's max is not finite (NaN, +inf, or every logit -inf): the caller
    reports it. A ``-inf`` logit is a masked class: ``p = 0``, and ``-inf`` when picked.
    ``large``: as for ``bias_relu``. ``out``: an array like ``logits`` (C-contiguous) for the
    gradient, else a new one.
    """
    compiled = _compiled_for(logits, large)
    if compiled is None or logits.dtype not in _FLOATS:
        return _softmax_cross_entropy_numpy(logits, labels, norm, out)
    # The reference's unshifted case (see there), compiled: rows the loops cannot take that
    # way (a logit large enough to overflow a row sum, NaN, +inf, a row sum out of range) make
    # them decline, and the reference, which shifts by the row max, answers instead.
    n_classes = logits.shape[1]
    picked = np.empty(len(logits), dtype=logits.dtype)
    labels = labels.astype(np.intp, copy=False)
    typed_norm, inverse_norm, largest_logit, smallest_sum, largest_sum = _loop_scalars(
        logits.dtype, n_classes, norm)
    if logits.dtype == np.float32 and n_classes >= _ONE_PASS_SMALLEST:  # exp included
        grad = np.empty(logits.shape, dtype=np.float32) if out is None else out
        chunk = min(n_classes, _ONE_PASS_CHUNK)
        scale_bits = np.empty(chunk, dtype=np.int32)
        done = compiled.softmax_cross_entropy_float32(
            logits, labels, grad, picked, np.empty(chunk, np.float32), scale_bits,
            scale_bits.view(np.float32), typed_norm, inverse_norm, largest_logit, smallest_sum)
    else:  # NumPy's vectorised exp, then one pass per row for the rest
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            grad = np.exp(logits, out=out)
        done = compiled.normalise_minus_onehot(logits, labels, grad, picked, typed_norm,
                                               inverse_norm, smallest_sum, largest_sum)
    if done:
        return picked, grad
    return _softmax_cross_entropy_numpy(logits, labels, norm, out)


def _softmax_cross_entropy_numpy(logits: np.ndarray, labels: np.ndarray, norm: float,
                                 out: np.ndarray | None = None
                                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference, two passes cheaper than shifting when it is safe not to.

    First ``p = exp(z) / Σ exp(z)`` as it stands: when no logit exceeds ``log(max / C)``
    nothing can overflow, and when every row sum is above ``tiny / eps`` what underflowed is
    below the sum's precision, so this is as accurate as shifting by the row max. Otherwise
    (large or very negative logits, NaN, ±inf) ``z - max z`` is used.
    """
    rows = _arange(len(labels))
    ones = _ones(logits.shape[1], logits.dtype)
    largest_logit, smallest_sum = _exp_limits(logits.dtype, logits.shape[1] * norm)
    unshifted = False
    # NaN fails the first test; +inf and rows all -inf fail one of the two.
    if np.maximum.reduce(logits, axis=None) <= largest_logit:
        probs = np.exp(logits, out=out)  # cannot overflow, nor can the row sums
        sums = probs @ ones  # BLAS: 5x faster than a sum over the rows
        unshifted = np.minimum.reduce(sums) >= smallest_sum
    if unshifted:
        picked = logits[rows, labels]
    else:
        row_max = np.maximum.reduce(logits, axis=1)
        if not np.isfinite(row_max).all():
            return None
        probs = np.subtract(logits, row_max[:, None], out=out)
        picked = probs[rows, labels]
        np.exp(probs, out=probs)
        sums = probs @ ones
    picked -= np.log(sums)
    sums *= norm
    probs /= sums[:, None]
    probs[rows, labels] -= 1 / norm
    return picked, probs


# float32 exp(x) = 2ⁿ · exp(r): n = round(x / ln 2) (adding and subtracting 1.5 · 2²³ rounds),
# r = x - n ln 2 in [-ln2/2, ln2/2] with ln 2 split in two so that n · ln2_hi is exact (Cody
# and Waite), exp(r) by Cephes' expf polynomial, 2ⁿ from its exponent bits. Within 1 ulp
# (NumPy's float32 exp: 2), for x from -87 (2ⁿ normal) up. Written out with its constants:
# in this form LLVM vectorises it.
_F32 = np.float32
_LOG2_E, _ROUND, _LN2_HI, _LN2_LO = (_F32(1.4426950408889634), _F32(1.5 * 2**23),
                                     _F32(0.693359375), _F32(-2.12194440e-4))
_P0, _P1, _P2, _P3, _P4, _P5 = map(_F32, (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_LOWEST, _ZERO, _ONE = _F32(-87.0), _F32(0.0), _F32(1.0)
# The one-pass loops run on rows of at least this many classes (measured at B = 256): on
# narrower ones they gain less than their extra arguments cost.
_ONE_PASS_SMALLEST = 128
# They take a row in chunks of this many classes: the chunk's exps and scales (8 KB) stay in
# the first-level cache between the passes over it, however wide the row (whole rows of
# 10,000 classes did not, and ran 1.6x slower).
_ONE_PASS_CHUNK = 1024


def _softmax_cross_entropy_float32_loops(logits, labels, grad, picked, exps, scale_bits,
                                         scales, norm, inverse_norm, largest_logit,
                                         smallest_sum):
    """Per row, in chunks of ``len(exps)`` classes: ``e = exp(z)`` (``-inf``: 0) into
    ``grad``, with ``s = Σ e``; then ``picked = z_y - log s``, ``grad = e / (s · norm)`` minus
    ``1/norm`` at the label. ``scales`` is ``scale_bits`` viewed as float32. False, with
    nothing promised about ``grad``, when a logit is NaN, +inf, above ``largest_logit`` or
    finite below -87, or a row sum is below ``smallest_sum``."""
    n_classes, chunk = logits.shape[1], exps.shape[0]
    for row in range(logits.shape[0]):
        bad, total = False, _ZERO
        for begin in range(0, n_classes, chunk):
            count = min(chunk, n_classes - begin)
            for index in range(count):
                # Unsigned: numba then skips its negative-index wraparound, a branch per
                # entry that stops LLVM vectorising the loop.
                x = logits[row, np.uint64(begin + index)]
                usable = x >= _LOWEST  # False for NaN and -inf
                bad |= (x != x) | (x > largest_logit) | ((x < _LOWEST) & (x != -np.inf))
                x = x if usable else _LOWEST
                n = (x * _LOG2_E + _ROUND) - _ROUND
                r = (x - n * _LN2_HI) - n * _LN2_LO
                polynomial = (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r
                              + _P5) * (r * r)
                exps[index] = polynomial + r + _ONE if usable else _ZERO
                scale_bits[index] = (np.int32(n) + np.int32(127)) << np.int32(23)
            total += _scaled_chunk_sum(exps, scales, grad, row, begin, count)
        if bad:
            return False
        if not total >= smallest_sum:
            return False
        label = labels[row]
        picked[row] = logits[row, label] - np.log(total)
        inverse = _ONE / (total * norm)
        for col in range(n_classes):
            grad[row, col] *= inverse
        grad[row, label] -= inverse_norm
    return True


def _scaled_chunk_sum(exps, scales, grad, row, begin, count):
    """``grad[row, begin:begin + count] ← exps ⊙ scales`` (the first ``count``) and their sum.
    Compiled with reassociation, which vectorises the sum, apart from the loops above (where
    it would undo the split of ln 2)."""
    total = exps.dtype.type(0)
    for index in range(count):
        term = exps[index] * scales[index]
        grad[row, np.uint64(begin + index)] = term
        total += term
    return total


def _normalise_minus_onehot_loops(logits, labels, exps, picked, norm, inverse_norm,
                                  smallest_sum, largest_sum):
    """Per row: ``s = Σ exps`` (False unless ``smallest_sum <= s <= largest_sum``),
    ``picked = z_y - log s``, ``exps ← exps / (s · norm)`` minus ``1/norm`` at the label."""
    for row in range(exps.shape[0]):
        total = exps.dtype.type(0)
        for col in range(exps.shape[1]):
            total += exps[row, col]
        if not smallest_sum <= total <= largest_sum:  # also False for NaN
            return False
        picked[row] = logits[row, labels[row]] - np.log(total)
        scale = total * norm  # at most the dtype's max, checked above
        for col in range(exps.shape[1]):
            exps[row, col] /= scale
        exps[row, labels[row]] -= inverse_norm
    return True


# --- optimizer steps, one parameter in place -------------------------------------------------

def sgd_step(param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], lr: float,
             momentum: float, nesterov: bool, weight_decay: float) -> None:
    """SGD in place: ``g ← g + λ p``; ``v ← μ v + g``; ``p ← p - lr·v`` (Nesterov: ``p ← p -
    lr·(g + μ v)``); without momentum ``p ← p - lr·g``. ``state`` from ``SGD._new_state``."""
    sgd_updater(param, grad, state, lr, momentum, nesterov, weight_decay)()


def sgd_updater(param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], lr: float,
                momentum: float, nesterov: bool, weight_decay: float,
                large: bool = False) -> Callable[[], None]:
    """``sgd_step`` with these arguments as a function of nothing: dispatch, checks and flat
    views done once, for a loop that updates the same arrays many times (``fit``'s fused
    step, which keeps the arrays). ``large``: as for ``bias_relu``."""
    compiled = _compiled_for(param, large)
    if compiled is None or not _in_place_ok(param, grad, state["velocity"]):
        return functools.partial(_sgd_step_numpy, param, grad, state, lr, momentum, nesterov,
                                 weight_decay)
    scalar = param.dtype.type
    return functools.partial(compiled.sgd_step, param.reshape(-1), grad.reshape(-1),
                             state["velocity"].reshape(-1), scalar(lr), scalar(momentum),
                             nesterov, scalar(weight_decay))


def _sgd_step_numpy(param, grad, state, lr, momentum, nesterov, weight_decay) -> None:
    param -= sgd_direction(_decayed(grad, param, weight_decay, state["scratch"]), state, lr,
                           momentum, nesterov)


def sgd_direction(grad: np.ndarray, state: dict[str, np.ndarray], lr: float, momentum: float,
                  nesterov: bool) -> np.ndarray:
    """The SGD step ``Δ`` written into ``state["update"]`` (NumPy; also the flat-vector path)."""
    update = state["update"]
    if not momentum:
        return np.multiply(grad, lr, out=update)
    velocity = state["velocity"]
    velocity *= momentum
    velocity += grad
    if nesterov:
        np.multiply(velocity, momentum, out=update)
        update += grad
        update *= lr
        return update
    return np.multiply(velocity, lr, out=update)


def _sgd_step_loops(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    for index in range(param.size):
        gradient = grad[index]
        if weight_decay:
            gradient = param[index] * weight_decay + gradient
        if not momentum:
            param[index] -= gradient * lr
            continue
        velocity[index] = velocity[index] * momentum + gradient
        if nesterov:
            param[index] -= (velocity[index] * momentum + gradient) * lr
        else:
            param[index] -= velocity[index] * lr


def adam_step(param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], lr: float,
              betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """Adam in place (``t`` advanced first): ``m ← β1 m + (1-β1) g``, ``v ← β2 v + (1-β2) g²``,
    ``p ← p - lr/(1-β1ᵗ) · m / (√v / √(1-β2ᵗ) + eps)``. ``state`` from ``Adam._new_state``."""
    adam_updater(param, grad, state, lr, betas, eps, weight_decay)()


def adam_updater(param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], lr: float,
                 betas: tuple[float, float], eps: float, weight_decay: float,
                 large: bool = False) -> Callable[[], None]:
    """``adam_step`` with these arguments as a function of nothing (see ``sgd_updater``)."""
    compiled = _compiled_for(param, large)
    if compiled is None or not _in_place_ok(param, grad, state["m"], state["v"]):
        return functools.partial(_adam_step_numpy, param, grad, state, lr, betas, eps,
                                 weight_decay)
    scalar = param.dtype.type
    arrays = (param.reshape(-1), grad.reshape(-1), state["m"].reshape(-1),
              state["v"].reshape(-1), scalar(weight_decay))

    def step() -> None:
        state["t"] += 1
        compiled.adam_step(*arrays, *_adam_scalars(int(state["t"]), lr, betas, eps, scalar))

    return step


def _adam_step_numpy(param, grad, state, lr, betas, eps, weight_decay) -> None:
    param -= adam_direction(_decayed(grad, param, weight_decay, state["scratch"]), state, lr,
                            betas, eps)


def adam_direction(grad: np.ndarray, state: dict[str, np.ndarray], lr: float,
                   betas: tuple[float, float], eps: float) -> np.ndarray:
    """The Adam step ``Δ`` written into ``state["update"]`` (NumPy; also the flat path)."""
    state["t"] += 1
    beta1, rest1, beta2, rest2, bias2_sqrt, eps, step_size = _adam_scalars(
        int(state["t"]), lr, betas, eps, float)
    m, v, update = state["m"], state["v"], state["update"]
    # Every step is an in-place ufunc into the state or ``update``: no temporaries.
    m *= beta1
    m += np.multiply(grad, rest1, out=update)
    v *= beta2
    np.multiply(grad, grad, out=update)
    update *= rest2
    v += update
    np.sqrt(v, out=update)
    update /= bias2_sqrt
    update += eps
    np.divide(m, update, out=update)
    update *= step_size
    return update


def _adam_scalars(t: int, lr: float, betas: tuple[float, float], eps: float,
                  scalar: type) -> tuple:
    """``(β1, 1-β1, β2, 1-β2, √(1-β2ᵗ), eps, lr/(1-β1ᵗ))`` as ``scalar`` (the parameters'
    float type: every operation then rounds as NumPy's in-place ufuncs with Python scalars)."""
    beta1, beta2 = betas
    return (scalar(beta1), scalar(1 - beta1), scalar(beta2), scalar(1 - beta2),
            scalar(math.sqrt(1 - beta2**t)), scalar(eps), scalar(lr / (1 - beta1**t)))


def _adam_step_loops(param, grad, m, v, weight_decay, beta1, rest1, beta2, rest2, bias2_sqrt,
                     eps, step_size):
    for index in range(param.size):
        gradient = grad[index]
        if weight_decay:
            gradient = param[index] * weight_decay + gradient
        m[index] = m[index] * beta1 + gradient * rest1
        v[index] = v[index] * beta2 + gradient * gradient * rest2
        denominator = np.sqrt(v[index]) / bias2_sqrt + eps
        param[index] -= m[index] / denominator * step_size


def _decayed(grad: np.ndarray, param: np.ndarray, weight_decay: float,
             out: np.ndarray) -> np.ndarray:
    """``g + λ p`` (L2 weight decay) in ``out``; ``g`` itself when λ = 0."""
    if not weight_decay:
        return grad
    np.multiply(param, weight_decay, out=out)
    out += grad
    return out


# --- dispatch --------------------------------------------------------------------------------

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _same_float_dtype(first: np.ndarray, second: np.ndarray) -> bool:
    return first.dtype in _FLOATS and second.dtype == first.dtype


def _in_place_ok(param: np.ndarray, *others: np.ndarray) -> bool:
    """The compiled steps walk flat memory: every array one float dtype, one shape, contiguous
    (and ``param`` writeable). Plain checks, no generators: this runs per parameter per step."""
    dtype, shape = param.dtype, param.shape
    if dtype not in _FLOATS or not (param.flags.c_contiguous and param.flags.writeable):
        return False
    for other in others:
        if other.dtype != dtype or other.shape != shape or not other.flags.c_contiguous:
            return False
    return True


def _compiled_for(array: np.ndarray, large: bool = False) -> SimpleNamespace | None:
    """The compiled loops for a kernel call on ``array``: None when it is small (there the
    reference's few microseconds match a compiled call's Python-side checks anyway), unless
    the caller says the model is ``large`` (numba is then loaded for its other arrays)."""
    return None if array.size < SMALLEST_COMPILED and not large else _compiled()


@functools.cache
def _compiled() -> SimpleNamespace | None:
    """The numba-compiled loops, or None (numba missing, or ``CHAINRULE_KERNELS=numpy``)."""
    choice = os.environ.get("CHAINRULE_KERNELS", "").strip().lower()
    if choice not in ("", "numba", "numpy"):
        raise ValueError(f"CHAINRULE_KERNELS must be 'numba' or 'numpy', got {choice!r}")
    if choice == "numpy":
        return None
    try:
        return _compile()
    except ImportError:
        if choice == "numba":
            raise ImportError("CHAINRULE_KERNELS=numba, but numba is not installed: "
                              "pip install 'chainrule[fast]'") from None
        return None


@functools.cache
def _compile() -> SimpleNamespace:
    """Wrap the loops with ``numba.njit``: each compiles on its first call per dtype and
    layout, into numba's on-disk cache (later processes load it), or without a cache where no
    folder for it is writable. ImportError without numba."""
    import numba
    import numba.extending

    # Callable from the compiled loops, with its own fastmath flags (see the function).
    numba.extending.register_jitable(fastmath={"reassoc"})(_scaled_chunk_sum)

    def jit(loops, **options):
        # error_model="numpy": x / 0 is ±inf or NaN as in NumPy, not a ZeroDivisionError.
        options = {"nogil": True, "error_model": "numpy", **options}
        try:
            return numba.njit(cache=True, **options)(loops)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(**options)(loops)

    # Reassociating the row sums lets LLVM vectorise them; they then round like any
    # reordered sum (tested against the reference to float rounding).
    summing = {"fastmath": {"reassoc"}}
    return SimpleNamespace(
        gather_rows=jit(_gather_rows_loops),
        relu_backward=jit(_relu_backward_loops),
        bias_relu=jit(_bias_relu_loops),
        relu_backward_bias_grad=jit(_relu_backward_bias_grad_loops),
        softmax_vjp=jit(_softmax_vjp_loops, **summing),
        softmax_cross_entropy_float32=jit(_softmax_cross_entropy_float32_loops,
                                          fastmath={"contract"}),
        normalise_minus_onehot=jit(_normalise_minus_onehot_loops, **summing),
        sgd_step=jit(_sgd_step_loops),
        adam_step=jit(_adam_step_loops),
    )


@functools.lru_cache(maxsize=32)
def _arange(length: int) -> np.ndarray:
    """A read-only ``arange(length)``: the row indices of a batch."""
    rows = np.arange(length)
    rows.flags.writeable = False
    return rows


@functools.lru_cache(maxsize=32)
def _ones(length: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of ones: ``probs @ ones`` sums rows with BLAS."""
    ones = np.ones(length, dtype)
    ones.flags.writeable = False
    return ones


@functools.lru_cache(maxsize=64)
def _loop_scalars(dtype: np.dtype, n_classes: int, norm: float) -> tuple[np.generic, ...]:
    """The compiled loss loops' scalars in ``dtype``: ``norm``, ``1 / norm``, ``_exp_limits``
    for ``C · norm`` terms, and the largest row sum ``max / norm``. Cached: every batch of a
    run has the same, but a shorter last one."""
    scalar = dtype.type
    largest_logit, smallest_sum = _exp_limits(dtype, n_classes * norm)
    return (scalar(norm), scalar(1 / norm), scalar(largest_logit), scalar(smallest_sum),
            scalar(np.finfo(dtype).max / norm))


@functools.lru_cache(maxsize=64)
def _exp_limits(dtype: np.dtype, terms: int) -> tuple[float, float]:
    """``(log(max / terms) - 1, tiny / eps)`` of ``dtype``: with every logit at most the first,
    neither ``exp(z)`` nor a row sum of ``C`` of them times the normaliser (``terms = C·N``)
    overflows (the margin of 1 covers the bound's own rounding to ``dtype``); row sums at
    least the second lost nothing to underflow that their precision could hold."""
    limits = np.finfo(dtype)
    return float(np.log(limits.max / terms)) - 1, float(limits.tiny / limits.eps)
