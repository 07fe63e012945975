"""``MLPClassifier`` and ``MLPRegressor``: drop-ins for scikit-learn's, trained by chainrule.

Same constructor parameters, defaults, meanings and fitted attributes as
``sklearn.neural_network``'s estimators; the forward pass, the canonical losses and every
gradient are chainrule's (``chainrule.nn``), checked against finite differences and PyTorch.
Solvers: ``"adam"`` / ``"sgd"`` mini-batch epochs, ``"lbfgs"`` through SciPy's L-BFGS-B.
chainrule adds ``scaling``, ``dtype`` and ``progress``, and ``model_``: the trained network as
a ``Sequential`` to save, export or gradient-check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d, validate_data

from chainrule._mlp_base import BaseMLP
from chainrule.nn.functional import log_softmax, softmax
from chainrule.nn.layers import Dense
from chainrule.nn.network import Sequential
from chainrule.nn.training import class_indices

__all__ = ["MLPClassifier", "MLPRegressor"]


def _stochastic(estimator: BaseMLP) -> bool:
    """``partial_fit`` exists for the stochastic solvers only, as in scikit-learn."""
    if estimator.solver == "lbfgs":
        raise AttributeError("partial_fit is only available for stochastic optimizers "
                             "(solver='sgd' or 'adam'); lbfgs is not stochastic.")
    return True


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    """``log σ(z) = -softplus(-z)``, finite where ``σ(z)`` underflows."""
    return -(np.maximum(-z, 0) + np.log1p(np.exp(-np.abs(z))))


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, trained by chainrule.

    Outputs as in scikit-learn: softmax with log-loss for several classes, one logistic unit
    with binary log-loss for two, one logistic unit per label for multilabel ``y`` (an
    indicator matrix). The loss is ``E + α/(2S) Σ‖W‖²`` (``S``: summed sample weights).

    Parameters
    ----------
    hidden_layer_sizes : widths of the hidden layers, e.g. ``(100,)`` or ``50``.
    activation : ``"relu"``, ``"tanh"``, ``"logistic"`` (alias ``"sigmoid"``) or
        ``"identity"``.
    solver : ``"adam"``, ``"sgd"`` or ``"lbfgs"`` (L-BFGS-B on the flat parameter vector;
        good for small data).
    alpha : L2 strength.
    batch_size : rows per step (stochastic solvers); ``"auto"`` = ``min(200, n_samples)``.
    learning_rate : SGD schedule: ``"constant"``, ``"invscaling"``
        (``learning_rate_init / (t + 1) ** power_t``, t = samples seen) or ``"adaptive"``
        (divided by 5 on each plateau, until below 1e-6).
    learning_rate_init, power_t, momentum, nesterovs_momentum : SGD; ``beta_1``, ``beta_2``,
        ``epsilon``: Adam.
    max_iter : epochs (stochastic) or iterations (lbfgs), at most; ``max_fun``: lbfgs's
        limit on loss evaluations.
    tol, n_iter_no_change : stop when the training loss (or, with ``early_stopping``, the
        validation score) has not improved by ``tol`` for more than ``n_iter_no_change``
        epochs (``np.inf``: never); lbfgs uses ``tol`` as its gradient tolerance.
    early_stopping, validation_fraction : hold out that fraction (stratified for a binary
        problem), score it after each epoch, keep the best epoch's weights.
    shuffle, random_state (int, None or ``RandomState``), verbose, warm_start : as in
        scikit-learn.
    scaling : chainrule: None, ``"standard"`` or ``"minmax"``, learnt by the first fit and
        applied to every input (recorded in ``model_``).
    dtype : chainrule: None follows the input (float32 stays float32), or ``"float32"`` /
        ``"float64"``.
    progress : chainrule: a per-epoch progress bar on a terminal.

    Attributes
    ----------
    classes_, coefs_ (``(n_in, n_out)`` per layer), intercepts_, loss_, best_loss_,
    loss_curve_, validation_scores_, best_validation_score_, t_, n_iter_, n_layers_,
    n_outputs_, out_activation_, n_features_in_, feature_names_in_ : scikit-learn's.
    ``n_iter_`` counts the epochs of the last ``fit`` (``partial_fit`` adds one per call).
    model_ : the network as a chainrule ``Sequential`` (logits; two for a binary problem,
        ``[0, z]``, so that its softmax is ``predict_proba``), sharing ``coefs_``.

    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier((16,), solver="lbfgs", random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    def fit(self, X, y, sample_weight=None) -> MLPClassifier:
        """Train on ``X`` ``(N, n_features)`` (dense or sparse) and labels ``y`` ``(N,)`` or a
        label-indicator matrix ``(N, n_labels)``; ``sample_weight`` ``(N,)``."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None) -> MLPClassifier:
        """One epoch over ``X``, ``y``, continuing from the current weights and optimizer.

        The first call (before any ``fit``) needs ``classes``, every label that will ever
        be seen; each batch may hold any subset of them.
        """
        if not hasattr(self, "classes_"):
            self._check_params()
            if classes is None:
                raise ValueError("MLPClassifier.partial_fit: the first call needs classes=, "
                                 "the list of every class label")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(_sorted_classes(classes))
            try:
                self.classes_ = self._label_binarizer.classes_
                return self._fit(X, y, sample_weight, incremental=True)
            except ValueError:
                del self.classes_  # a failed first call leaves the estimator unfitted
                raise
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"MLPClassifier.partial_fit: classes={np.asarray(classes).tolist()}"
                             f" differs from the classes of the first call, "
                             f"{self.classes_.tolist()}")
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental: bool, reset: bool):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        elif self.warm_start and not incremental:
            classes = np.unique(y) if y.ndim == 1 else np.arange(y.shape[1])
            if set(classes.tolist()) != set(self.classes_.tolist()):
                raise ValueError("warm_start can only be used where `y` has the same classes "
                                 f"as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {classes}")
        elif y.ndim == 1:
            try:
                class_indices(self.classes_, y)
            except ValueError as error:
                raise ValueError(f"MLPClassifier: {error}") from None
        return X, self._label_binarizer.transform(y).astype(bool)

    def _output_activation(self, Y: np.ndarray) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _stratify(self, Y: np.ndarray) -> np.ndarray | None:
        return Y.astype(bool) if self.n_outputs_ == 1 else None

    def _validation_split(self, X, Y: np.ndarray, sample_weight: np.ndarray | None) -> tuple:
        try:
            return super()._validation_split(X, Y, sample_weight)
        except ValueError as error:
            if self.n_outputs_ != 1 or "least populated class" not in str(error):
                raise
            negative, positive = (self.classes_.tolist() * 2)[:2]
            raise ValueError(f"{error} (with early_stopping the validation split is stratified "
                             f"by y == {positive!r}: True, against {negative!r}: False)") from None

    def _validation_score(self, X, Y: np.ndarray, sample_weight: np.ndarray | None) -> float:
        """Accuracy (subset accuracy for multilabel) of the current weights; NaN when the
        outputs are not finite."""
        z = self._validation_output(X)
        if z is None:
            return float("nan")
        if self.out_activation_ == "softmax":
            correct = np.argmax(z, axis=1) == np.argmax(Y, axis=1)
        else:
            correct = np.all((z > 0) == (Y > 0.5), axis=1)
        return float(np.average(correct, weights=sample_weight))

    def predict(self, X) -> np.ndarray:
        """Class labels ``(N,)`` from ``classes_`` (multilabel: the indicator matrix)."""
        z = self._raw_output(self._check_input(X))
        if self.out_activation_ == "softmax":
            return self.classes_[np.argmax(z, axis=1)]
        decided = (z > 0).astype(int)
        return self._label_binarizer.inverse_transform(
            decided.ravel() if self.n_outputs_ == 1 else decided)

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities ``(N, n_classes)``, columns in the order of ``classes_``; multilabel:
        each label's own probability (rows need not sum to 1)."""
        z = self._raw_output(self._check_input(X))
        if self.out_activation_ == "softmax":
            return softmax(z, axis=1)
        probability = self._output(z)
        return np.hstack([1 - probability, probability]) if self.n_outputs_ == 1 else probability

    def predict_log_proba(self, X) -> np.ndarray:
        """``log predict_proba``, computed stably (``log_softmax``, ``log σ``): finite where
        the probability underflows to 0."""
        z = self._raw_output(self._check_input(X))
        if self.out_activation_ == "softmax":
            return log_softmax(z, axis=1)
        return np.hstack([_log_sigmoid(-z), _log_sigmoid(z)]) if self.n_outputs_ == 1 \
            else _log_sigmoid(z)

    @property
    def model_(self) -> Sequential:
        """The trained network as a chainrule ``Sequential``: raw inputs in (``scaling``
        recorded as its ``preprocessing``), logits out, ``classes`` recorded. A binary problem
        gets two logits ``[0, z]`` (a copy of the last layer), so that softmax gives
        ``predict_proba``; the other layers share the arrays of ``coefs_``/``intercepts_``."""
        network = super().model_
        if self.out_activation_ == "logistic" and len(self.classes_) == 2:
            last = network.layers[-1]
            weights, bias = last.params["W"], last.params["b"]
            network.layers[-1] = Dense.wrap(np.hstack([np.zeros_like(weights), weights]),
                                            np.concatenate([np.zeros_like(bias), bias]))
        if self.out_activation_ == "softmax" or self.n_outputs_ == 1:
            network.classes = self.classes_
        return network

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``, trained by chainrule.

    Identity outputs with half squared error (``loss="squared_error"``; ``loss_`` is
    scikit-learn's ``½ · mean over rows and outputs``) or exp outputs with half Poisson
    deviance (``loss="poisson"``, ``y >= 0``); ``y`` may have several columns. ``score`` is
    R². The other parameters and attributes are ``MLPClassifier``'s.

    >>> from sklearn.datasets import load_diabetes
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", alpha=1.0, max_iter=2000,
    ...                    scaling="standard", random_state=0).fit(X, y / 100)
    >>> reg.score(X, y / 100) > 0.55
    True
    """

    def __init__(
        self,
        loss: str = "squared_error",
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
        self.loss = loss
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
            max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            scaling=scaling, dtype=dtype, progress=progress)

    def fit(self, X, y, sample_weight=None) -> MLPRegressor:
        """Train on ``X`` ``(N, n_features)`` (dense or sparse) and targets ``y`` ``(N,)`` or
        ``(N, n_outputs)``; ``sample_weight`` ``(N,)``."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None) -> MLPRegressor:
        """One epoch over ``X``, ``y``, continuing from the current weights and optimizer."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _check_params(self) -> None:
        if self.loss not in ("squared_error", "poisson"):
            hint = ("" if isinstance(self.loss, str) else " (the first positional parameter is "
                    "loss, as in scikit-learn: pass hidden_layer_sizes= by name)")
            raise ValueError("MLPRegressor: loss must be 'squared_error' or 'poisson', "
                             f"got {self.loss!r}{hint}")
        super()._check_params()

    def _validate_input(self, X, y, incremental: bool, reset: bool):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("MLPRegressor: loss='poisson' needs targets y >= 0, got "
                             f"{float(np.min(y))}")
        return X, y.reshape(len(y), -1)

    def _output_activation(self, Y: np.ndarray) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _validation_score(self, X, Y: np.ndarray, sample_weight: np.ndarray | None) -> float:
        """R² of the current weights; NaN when the predictions are not finite."""
        z = self._validation_output(X)
        prediction = None if z is None else self._output(z)
        if prediction is None or not np.all(np.isfinite(prediction)):
            return float("nan")
        return float(r2_score(Y, prediction, sample_weight=sample_weight))

    def predict(self, X) -> np.ndarray:
        """Predictions ``(N,)``, or ``(N, n_outputs)`` for several targets."""
        prediction = self._output(self._raw_output(self._check_input(X)))
        return prediction.ravel() if prediction.shape[1] == 1 else prediction

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags


def _sorted_classes(labels) -> np.ndarray:
    """The distinct labels, sorted; none is an error."""
    classes = np.unique(labels)
    if len(classes) == 0:
        raise ValueError("MLPClassifier.partial_fit: classes= is empty; it must list every "
                         "class label")
    return classes
