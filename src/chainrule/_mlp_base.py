"""What ``MLPClassifier`` and ``MLPRegressor`` share: parameters, their checks, initialisation,
the network over ``coefs_`` / ``intercepts_``, and the loss and gradient both solvers use."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, validate_data

from chainrule._mlp_solvers import fit_lbfgs, fit_stochastic
from chainrule.nn.canonical_losses import (
    CanonicalLoss,
    HalfPoissonDeviance,
    HalfSquaredError,
    SigmoidLogLoss,
    SoftmaxLogLoss,
)
from chainrule.nn.errors import NonFiniteError
from chainrule.nn.layers import Dense, Layer, ReLU, Sigmoid, Tanh
from chainrule.nn.network import Sequential
from chainrule.nn.preprocessing import SCALINGS, Scaler
from chainrule.nn.regularization import add_l2_gradient, l2_penalty
from chainrule.nn.sparse import SparseInputDense, is_sparse

# "identity" has no layer: Dense followed by Dense. "sigmoid" is chainrule's name for logistic.
HIDDEN_ACTIVATIONS: dict[str, type[Layer] | None] = {
    "identity": None, "logistic": Sigmoid, "sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}
OUTPUT_LOSSES: dict[str, type[CanonicalLoss]] = {
    "softmax": SoftmaxLogLoss, "logistic": SigmoidLogLoss, "identity": HalfSquaredError,
    "exp": HalfPoissonDeviance}
SOLVERS = ("lbfgs", "sgd", "adam")
SCHEDULES = ("constant", "invscaling", "adaptive")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Network:
    """The network over the live ``coefs_`` / ``intercepts_``, its ``Dense`` layers in order,
    and the canonical loss of its output (one object: it caches the last gradient)."""

    sequential: Sequential
    dense: list[Dense]
    loss: CanonicalLoss


class BaseMLP(BaseEstimator):
    """The shared machinery; see ``MLPClassifier`` for the parameters."""

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        max_fun: int = 15000,
        scaling: str | None = None,
        dtype: str | None = None,
        progress: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.scaling = scaling
        self.dtype = dtype
        self.progress = progress

    # --- fitting ---------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, incremental: bool):
        """Validate, initialise on the first pass, run the solver, check the weights."""
        self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        dtype = self._dtype() or (X.dtype if first_pass else self.coefs_[0].dtype)
        X = X.astype(dtype, copy=False)
        if is_sparse(X):
            X = X.tocsr()
        sample_weight = self._check_sample_weight(sample_weight, X.shape[0])
        self._random_state = self._new_random_state()
        if first_pass:
            self.scaler_ = None
            if self.scaling is not None:
                if is_sparse(X):
                    raise ValueError(f"{type(self).__name__}: scaling={self.scaling!r} needs "
                                     "dense X; sparse X is used as given (scaling=None)")
                self.scaler_ = Scaler.fit(X, self.scaling)
            self._initialize(Y, [X.shape[1], *self._hidden_sizes(), Y.shape[1]], dtype)
        else:
            self.coefs_ = [np.asarray(coef, dtype=dtype) for coef in self.coefs_]
            self.intercepts_ = [np.asarray(bias, dtype=dtype) for bias in self.intercepts_]
        if getattr(self, "scaler_", None) is not None:
            X = self.scaler_.transform(X).astype(dtype, copy=False)
        Y = Y.astype(dtype)
        network = self._network(sparse=is_sparse(X))
        with np.errstate(over="ignore", invalid="ignore"):
            if self.solver == "lbfgs":
                fit_lbfgs(self, network, X, Y, sample_weight)
            else:
                fit_stochastic(self, network, X, Y, sample_weight, incremental)
        if not all(np.isfinite(array).all() for array in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _initialize(self, Y: np.ndarray, layer_units: list[int], dtype: np.dtype) -> None:
        """Fresh weights and training record. Weights are Glorot-uniform with bound
        ``sqrt(6 / (fan_in + fan_out))`` (``sqrt(2 / ...)`` for logistic), intercepts too, drawn
        from ``random_state`` layer by layer: scikit-learn's initialisation."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation(Y)
        factor = 2.0 if self.activation in ("logistic", "sigmoid") else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in itertools.pairwise(layer_units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out))
                               .astype(dtype, copy=False))
            self.intercepts_.append(self._random_state.uniform(-bound, bound, fan_out)
                                    .astype(dtype, copy=False))
        self._best_coefs = [coef.copy() for coef in self.coefs_]
        self._best_intercepts = [bias.copy() for bias in self.intercepts_]
        if self.solver != "lbfgs":
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _network(self, sparse: bool = False) -> Network:
        """``Dense → activation → … → Dense`` over the LIVE ``coefs_`` / ``intercepts_`` arrays
        (no copy: the solvers update them through it); raw outputs ``z``, no output function.
        Built anew for every call, so coefficients set by hand are always the ones used."""
        activation = HIDDEN_ACTIVATIONS[self.activation]
        layers: list[Layer] = []
        dense: list[Dense] = []
        for index, (coef, bias) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            dense.append((SparseInputDense if index == 0 and sparse else Dense).wrap(coef, bias))
            layers.append(dense[-1])
            if index < len(self.coefs_) - 1 and activation is not None:
                layers.append(activation())
        return Network(Sequential(layers), dense, OUTPUT_LOSSES[self.out_activation_]())

    def _loss_and_grads(self, network: Network, X, Y: np.ndarray,
                        sample_weight: np.ndarray | None) -> tuple[float, float]:
        """``(objective, loss_)`` on rows ``X``, ``Y``, with the objective's gradient in every
        parameter's ``grads``. The objective is ``E + α/(2S) Σ‖W‖²``: ``E`` the canonical loss,
        ``S`` the summed sample weights (the row count without weights). ``loss_`` is the
        value scikit-learn reports: the same, except that for squared error its ``E`` is the
        mean over the outputs, ``E / n_outputs``. (scikit-learn also hands that value to
        L-BFGS with the gradient of ``E``, inconsistent for several outputs; here L-BFGS gets
        the objective whose gradient it is given.)"""
        layers = network.sequential.layers
        data_loss = network.loss.forward(network.sequential.forward(X), Y, sample_weight)
        grad = network.loss.backward()
        for index in range(len(layers) - 1, 0, -1):
            grad = layers[index].backward(grad)
        layers[0]._backward_params(grad)  # no gradient for the inputs
        reported_data_loss = (data_loss / self.n_outputs_ if self.out_activation_ == "identity"
                              else data_loss)
        total_weight = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        if not self.alpha or total_weight == 0:
            return data_loss, reported_data_loss
        strength = self.alpha / total_weight
        add_l2_gradient((layer.grads["W"] for layer in network.dense),
                        (layer.params["W"] for layer in network.dense), strength)
        penalty = strength * l2_penalty(layer.params["W"] for layer in network.dense)
        return data_loss + penalty, reported_data_loss + penalty

    def _parameter_grads(self, network: Network) -> list[np.ndarray]:
        """Gradients in the order of ``coefs_ + intercepts_``."""
        return ([layer.grads["W"] for layer in network.dense]
                + [layer.grads["b"] for layer in network.dense])

    def _loss_grad_lbfgs(self, packed_parameters: np.ndarray, X, Y: np.ndarray,
                         sample_weight: np.ndarray | None = None,
                         *work_buffers: object) -> tuple[float, np.ndarray]:
        """``(objective, gradient)`` at the flat vector ``coefs_ + intercepts_``, what L-BFGS
        sees (see ``_loss_and_grads``), with scikit-learn's private signature; its work
        buffers are not needed."""
        from chainrule._mlp_solvers import _pack, _unpack

        _unpack(packed_parameters, self.coefs_ + self.intercepts_)
        network = self._network(sparse=is_sparse(X))
        with np.errstate(over="ignore", invalid="ignore"):
            objective, _ = self._loss_and_grads(network, X, np.asarray(Y).reshape(len(Y), -1),
                                                sample_weight)
        return objective, _pack(self._parameter_grads(network))

    def _validation_split(self, X, Y: np.ndarray, sample_weight: np.ndarray | None) -> tuple:
        """``X_train, Y_train, weights_train, (X_val, Y_val, weights_val)`` holding out
        ``validation_fraction``, stratified for single-output classification (as in
        scikit-learn, whose error a class of one row raises)."""
        stratify = self._stratify(Y)
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, Y_train, Y_val = parts[:4]
        weights_train, weights_val = parts[4:] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X_train, Y_train, weights_train, (X_val, Y_val, weights_val)

    def _stratify(self, Y: np.ndarray) -> np.ndarray | None:
        return None

    # --- prediction --------------------------------------------------------------------------

    def _raw_output(self, X) -> np.ndarray:
        """The network's raw outputs ``z`` ``(N, n_outputs_)`` for validated inputs."""
        if getattr(self, "scaler_", None) is not None:
            X = self.scaler_.transform(X)
        X = X.astype(self.coefs_[0].dtype, copy=False)
        network = self._network(sparse=is_sparse(X))
        with np.errstate(over="ignore", invalid="ignore"):
            return network.sequential.forward(X)

    def _validation_output(self, X) -> np.ndarray | None:
        """Raw outputs on the held-out rows, or None when they are not finite (the training
        diverged: scikit-learn scores that epoch NaN)."""
        try:
            z = self._raw_output(X)
        except NonFiniteError:  # a hidden layer overflowed
            return None
        return z if np.all(np.isfinite(z)) else None

    def _output(self, z: np.ndarray) -> np.ndarray:
        """The output function ``h(z)`` of ``out_activation_`` (softmax, σ, identity, exp)."""
        return OUTPUT_LOSSES[self.out_activation_]().output(z)

    def _check_input(self, X):
        check_is_fitted(self)
        return validate_data(self, X, accept_sparse=["csr", "csc"],
                             dtype=(np.float64, np.float32), reset=False)

    @property
    def model_(self) -> Sequential:
        """The trained network as a chainrule ``Sequential`` on raw inputs (the ``scaling``
        recorded as its ``preprocessing``), raw outputs ``z``; its ``Dense`` layers share the
        arrays of ``coefs_`` / ``intercepts_``. Save it, export it, check it."""
        check_is_fitted(self)
        network = self._network().sequential
        network.preprocessing = getattr(self, "scaler_", None)
        return network

    # --- parameters ------------------------------------------------------------------------

    def _check_params(self) -> None:
        """Validate the constructor parameters (scikit-learn validates in fit, not __init__)."""
        name = type(self).__name__
        sizes = self._hidden_sizes()
        if not all(isinstance(size, Integral) and size >= 1 for size in sizes):
            raise ValueError(f"{name}: hidden_layer_sizes must be positive integers, "
                             f"got {self.hidden_layer_sizes!r}")
        choices = {"activation": tuple(HIDDEN_ACTIVATIONS), "solver": SOLVERS,
                   "learning_rate": SCHEDULES}
        for parameter, allowed in choices.items():
            if getattr(self, parameter) not in allowed:
                raise ValueError(f"{name}: {parameter} must be one of {allowed}, "
                                 f"got {getattr(self, parameter)!r}")
        positive = {"learning_rate_init": self.learning_rate_init, "epsilon": self.epsilon}
        non_negative = {"alpha": self.alpha, "tol": self.tol, "power_t": self.power_t}
        unit = {"momentum": self.momentum, "beta_1": self.beta_1, "beta_2": self.beta_2}
        for parameter, value in positive.items():
            if not (isinstance(value, Real) and value > 0):
                raise ValueError(f"{name}: {parameter} must be > 0, got {value!r}")
        for parameter, value in non_negative.items():
            if not (isinstance(value, Real) and value >= 0):
                raise ValueError(f"{name}: {parameter} must be >= 0, got {value!r}")
        for parameter, value in unit.items():
            if not (isinstance(value, Real) and 0 <= value < 1):
                raise ValueError(f"{name}: {parameter} must be in [0, 1), got {value!r}")
        if self.batch_size != "auto" and not (
                isinstance(self.batch_size, Integral) and self.batch_size >= 1):
            raise ValueError(f"{name}: batch_size must be 'auto' or an integer >= 1, "
                             f"got {self.batch_size!r}")
        for parameter in ("max_iter", "max_fun"):
            value = getattr(self, parameter)
            if not (isinstance(value, Integral) and value >= 1):
                raise ValueError(f"{name}: {parameter} must be an integer >= 1, got {value!r}")
        patience = self.n_iter_no_change
        if not ((isinstance(patience, Integral) and patience >= 1) or patience == np.inf):
            raise ValueError(f"{name}: n_iter_no_change must be an integer >= 1 or np.inf, "
                             f"got {patience!r}")
        if not (isinstance(self.validation_fraction, Real) and 0 < self.validation_fraction < 1):
            raise ValueError(f"{name}: validation_fraction must be in (0, 1), "
                             f"got {self.validation_fraction!r}")
        if self.scaling is not None and self.scaling not in SCALINGS:
            raise ValueError(f"{name}: scaling must be None or one of {SCALINGS}, "
                             f"got {self.scaling!r}")
        if not (self.random_state is None or isinstance(self.random_state, Integral)
                or isinstance(self.random_state, np.random.RandomState)):
            raise ValueError(f"{name}: random_state must be an int, None or a "
                             f"numpy.random.RandomState, got {self.random_state!r}")
        self._dtype()

    def _new_random_state(self) -> np.random.RandomState:
        """The stream for initialisation, splitting and shuffling: ``random_state`` itself
        when it is a ``RandomState`` (advanced, as scikit-learn does), seeded by an int, or
        seeded from fresh OS entropy for None (never NumPy's global state)."""
        if isinstance(self.random_state, np.random.RandomState):
            return self.random_state
        return np.random.RandomState(self.random_state)

    def _hidden_sizes(self) -> tuple:
        sizes = self.hidden_layer_sizes
        return (sizes,) if isinstance(sizes, Integral) else tuple(sizes)

    def _dtype(self) -> np.dtype | None:
        """The forced dtype, or None to follow the input (float32 stays float32)."""
        if self.dtype is None:
            return None
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype not in DTYPES:
            raise ValueError(f"{type(self).__name__}: dtype must be None, 'float32' or "
                             f"'float64', got {self.dtype!r}")
        return dtype

    def _check_sample_weight(self, sample_weight, n_rows: int) -> np.ndarray | None:
        """None, or ``(n_rows,)`` finite non-negative float64 weights (a scalar is broadcast)."""
        if sample_weight is None:
            return None
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.ndim == 0:
            weights = np.full(n_rows, float(weights))
        if weights.shape != (n_rows,):
            raise ValueError(f"{type(self).__name__}: sample_weight must have shape "
                             f"({n_rows},), one weight per row of X, got {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(f"{type(self).__name__}: sample_weight must be finite and "
                             "non-negative")
        if not np.any(weights > 0):
            raise ValueError(f"{type(self).__name__}: sample_weight is zero everywhere; at "
                             "least one row needs a positive weight")
        return weights

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self.scaling is None  # scaling needs dense inputs
        return tags
