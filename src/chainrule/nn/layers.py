"""Layers: each ``backward`` sits under its ``forward``, with ``jacobian`` as the explicit spec.

The layer protocol (anything following it can be put in a ``Sequential`` and checked by
``chainrule.check``):

- ``forward(x)``: ``x`` of shape ``(B, n_in)`` -> ``y`` of shape ``(B, n_out)``; caches what
  ``backward`` needs (and nothing more);
- ``backward(grad_out)``: ``∂L/∂y`` ``(B, n_out)`` -> ``∂L/∂x`` ``(B, n_in)``, overwriting
  ``grads`` with ``∂L/∂param`` for every entry of ``params``;
- ``jacobian(x)``: ``(B, n_out, n_in)`` with ``J[b, i, j] = ∂y_bi/∂x_bj``, built explicitly for
  inspection and checks, leaving the forward cache untouched;
- ``params`` / ``grads``: dicts name -> array; ``params`` are the live arrays.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.nn.errors import NonFiniteError
from chainrule.nn.functional import log_softmax, sigmoid, softmax, softmax_jacobian, softmax_vjp
from chainrule.nn.kernels import relu_backward

__all__ = ["Dense", "Layer", "LogSoftmax", "ReLU", "Sigmoid", "Softmax", "Tanh"]


def _shape(cached: np.ndarray | None) -> tuple | None:
    return None if cached is None else cached.shape


class Layer:
    """Base class: no parameters, shape checks, ``__call__`` = ``forward``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward_params(self, grad_out: np.ndarray) -> object:
        """``backward`` where ``∂L/∂x`` is not needed (``fit``'s first trainable layer): only
        ``grads`` must be filled. ``Dense`` overrides it to skip the input gradient's GEMM."""
        return self.backward(grad_out)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def output_width(self, input_width: int) -> int:
        """Width of the output for an input of ``input_width`` features."""
        return input_width

    def astype(self, dtype: np.typing.DTypeLike) -> Layer:
        """Convert every parameter to ``dtype`` (in place on the layer); returns the layer."""
        for name, value in self.params.items():
            self.params[name] = value.astype(dtype)
            self.grads[name] = np.zeros_like(self.params[name])
        return self

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{self!r}: expected input of shape (B, features), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{self!r}: empty batch (input shape {x.shape})")
        return x

    def _check_grad_out(self, grad_out: np.ndarray, output_shape: tuple | None) -> np.ndarray:
        """``grad_out`` must match the last forward output's shape (None: no forward yet)."""
        if output_shape is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        grad_out = np.asarray(grad_out)
        if grad_out.shape != output_shape:
            raise ValueError(
                f"{self!r}: backward expected grad_out of shape {output_shape} "
                f"(the forward output's), got {grad_out.shape}"
            )
        return grad_out


class Dense(Layer):
    """Affine layer ``y = x @ W + b`` with ``W`` ``(n_in, n_out)`` and ``b`` ``(n_out,)``.

    Initialised with Glorot-uniform ``W`` (``init="glorot"``, suits tanh/sigmoid/softmax) or
    He-uniform (``init="he"``, suits ReLU) and zero ``b``.

    >>> layer = Dense(3, 2, seed=0)
    >>> layer.forward(np.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        seed: int | np.random.Generator | None = None,
        dtype: np.typing.DTypeLike = np.float64,
        init: str = "glorot",
    ) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1:
            raise ValueError(f"Dense: n_in and n_out must be >= 1, got {n_in} and {n_out}")
        fan = {"glorot": (n_in + n_out) / 2, "he": n_in / 2}
        if init not in fan:
            raise ValueError(f"Dense: init must be 'glorot' or 'he', got {init!r}")
        limit = np.sqrt(3.0 / fan[init])
        rng = np.random.default_rng(seed)
        self.params["W"] = rng.uniform(-limit, limit, size=(n_in, n_out)).astype(dtype)
        self.params["b"] = np.zeros(n_out, dtype=dtype)
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.x: np.ndarray | None = None

    @classmethod
    def wrap(cls, weights: np.ndarray, bias: np.ndarray) -> Dense:
        """A ``Dense`` whose ``params`` ARE ``weights`` ``(n_in, n_out)`` and ``bias``
        ``(n_out,)`` (no copy: training updates them in place), e.g. scikit-learn's
        ``coefs_[i]`` and ``intercepts_[i]``.

        >>> W, b = np.zeros((3, 2)), np.ones(2)
        >>> Dense.wrap(W, b).params["W"] is W
        True
        """
        if (np.ndim(weights) != 2 or np.ndim(bias) != 1 or weights.shape[1] != bias.shape[0]
                or weights.dtype.kind != "f" or bias.dtype != weights.dtype):
            raise ValueError(f"Dense.wrap: needs float weights (n_in, n_out) and bias (n_out,) "
                             f"of one dtype, got {getattr(weights, 'dtype', '?')} "
                             f"{np.shape(weights)} and {getattr(bias, 'dtype', '?')} "
                             f"{np.shape(bias)}")
        layer = cls.__new__(cls)
        Layer.__init__(layer)
        layer.params = {"W": weights, "b": bias}
        layer.grads = {"W": np.zeros_like(weights), "b": np.zeros_like(bias)}
        layer.x = None
        return layer

    def __repr__(self) -> str:
        n_in, n_out = self.params["W"].shape
        return f"Dense({n_in}→{n_out})"

    def output_width(self, input_width: int) -> int:
        return self.params["W"].shape[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_finite(self._check_dense_input(x))
        self.x = x
        y = x @ self.params["W"]
        y += self.params["b"]
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``∂L/∂W = xᵀ g``, ``∂L/∂b = Σ_batch g``, ``∂L/∂x = g Wᵀ``."""
        grad_out = self._backward_params(grad_out)
        return grad_out @ self.params["W"].T

    def _backward_params(self, grad_out: np.ndarray) -> np.ndarray:
        """Fill ``grads`` (``xᵀ g`` and ``Σ_batch g``) and return the checked ``grad_out``."""
        output_shape = None if self.x is None else (len(self.x), self.params["W"].shape[1])
        grad_out = self._check_grad_out(grad_out, output_shape)
        np.matmul(self.x.T, grad_out, out=self.grads["W"])
        np.add.reduce(grad_out, axis=0, out=self.grads["b"])
        return grad_out

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """``J[b] = Wᵀ`` for every row: ``∂y_i/∂x_j = W[j, i]``."""
        x = self._check_finite(self._check_dense_input(x))
        weights_t = self.params["W"].T
        return np.broadcast_to(weights_t, (x.shape[0], *weights_t.shape)).copy()

    def _check_dense_input(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        n_in = self.params["W"].shape[0]
        if x.shape[1] != n_in:
            raise ValueError(f"{self!r}: expected input of shape (B, {n_in}), got {x.shape}")
        return x.astype(self.params["W"].dtype, copy=False)

    def _check_finite(self, x: np.ndarray) -> np.ndarray:
        # Σ x² (one BLAS dot, 2.5x faster than a sum) is NaN or inf when any entry is; the
        # exact search runs only when it fires (huge finite entries overflow it: a false alarm
        # costs only that search).
        if not math.isfinite(np.vdot(x, x)):
            bad = np.argwhere(~np.isfinite(x))
            if len(bad):
                row, col = bad[0]
                raise NonFiniteError(
                    f"{self!r}: input has {len(bad)} non-finite value(s), "
                    f"first {x[row, col]} at [{row}, {col}]"
                )
        return x


class _Elementwise(Layer):
    """An activation ``y = f(x)`` applied entry by entry; its Jacobian is diagonal.

    Subclasses give ``_function(x)`` and ``_derivative_from_output(y)`` (``f'`` written in
    terms of the output, which is what ``forward`` caches).
    """

    def __init__(self) -> None:
        super().__init__()
        self.y: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = self._function(self._check_input(x))
        return self.y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad_out = self._check_grad_out(grad_out, _shape(self.y))
        return grad_out * self._derivative_from_output(self.y)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """Diagonal ``(B, n, n)`` with ``f'(x_j)`` on the diagonal."""
        local = self._derivative_from_output(self._function(self._check_input(x)))
        jac = np.zeros((*local.shape, local.shape[-1]), dtype=local.dtype)
        np.einsum("bii->bi", jac)[...] = local
        return jac

    def _function(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _derivative_from_output(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Sigmoid(_Elementwise):
    """``y = σ(x)``; ``dy/dx = y (1 - y)`` — from the cached output, not the input."""

    def _function(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x)

    def _derivative_from_output(self, y: np.ndarray) -> np.ndarray:
        return y * (1 - y)


class Tanh(_Elementwise):
    """``y = tanh(x)``; ``dy/dx = 1 - y²``."""

    def _function(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def _derivative_from_output(self, y: np.ndarray) -> np.ndarray:
        return 1 - y * y


class ReLU(_Elementwise):
    """``y = max(x, 0)``; ``dy/dx = 1`` where x > 0, else 0 (0 at the kink x = 0, like PyTorch)."""

    def _function(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)

    def _derivative_from_output(self, y: np.ndarray) -> np.ndarray:
        return (y > 0).astype(y.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``g ⊙ [y > 0]``, 0 where the unit is off even for inf/NaN ``g`` (a fused kernel)."""
        return relu_backward(self._check_grad_out(grad_out, _shape(self.y)), self.y)


class _SoftmaxBase(Layer):
    """Logit checks of Softmax and LogSoftmax: ``-inf`` masks a class, NaN or +inf is an error."""

    def _check_logits(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        row_max = np.max(x, axis=-1)
        if not np.all(np.isfinite(row_max)):
            bad_row = int(np.flatnonzero(~np.isfinite(row_max))[0])
            row = x[bad_row]
            if np.isnan(row).any():
                problem = f"NaN at [{bad_row}, {int(np.flatnonzero(np.isnan(row))[0])}]"
            elif np.isposinf(row).any():
                problem = f"+inf at [{bad_row}, {int(np.flatnonzero(np.isposinf(row))[0])}]"
            else:
                problem = f"row {bad_row} is -inf everywhere (every class masked)"
            raise NonFiniteError(f"{self!r}: invalid logits: {problem}")
        return x


class Softmax(_SoftmaxBase):
    """``a = softmax(x)`` row-wise; backward is the O(C) product ``a ⊙ (g - ⟨g, a⟩)``.

    ``-inf`` logits are masks: probability 0 and zero gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.a = softmax(self._check_logits(x))
        return self.a

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``∂L/∂z = Jᵀ g`` with ``J = diag(a) - a aᵀ`` — never built (see ``softmax_vjp``)."""
        return softmax_vjp(self.a, self._check_grad_out(grad_out, _shape(self.a)))

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """``J[b, i, j] = a_i (δ_ij - a_j)`` evaluated at ``a = softmax(x)`` (not at x)."""
        return softmax_jacobian(softmax(self._check_logits(x)))


class LogSoftmax(_SoftmaxBase):
    """``y = log softmax(x)``; backward ``g - softmax(x) Σ_i g_i`` from the cached output."""

    def __init__(self) -> None:
        super().__init__()
        self.y: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = log_softmax(self._check_logits(x))
        return self.y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad_out = self._check_grad_out(grad_out, _shape(self.y))
        return grad_out - np.exp(self.y) * np.sum(grad_out, axis=-1, keepdims=True)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """``J[b, i, j] = δ_ij - a_j`` with ``a = softmax(x)``."""
        a = softmax(self._check_logits(x))
        jac = np.broadcast_to(-a[:, None, :], (*a.shape, a.shape[-1])).copy()
        np.einsum("bii->bi", jac)[...] += 1
        return jac
