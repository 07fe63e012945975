"""``MLPClassifier``: a scikit-learn estimator over ``mlp`` + ``fit``.

It passes scikit-learn's own estimator checks, so it works in ``Pipeline``,
``GridSearchCV``, ``cross_val_score`` and ``clone``. Training is chainrule's: softmax
outputs trained with ``SoftmaxCrossEntropy`` (the fused gradient ``softmax(z) - onehot(y)``),
``Adam`` or ``SGD``, early stopping on validation *loss* with the best weights restored.
The trained ``Sequential`` is ``model_``: it predicts on raw inputs by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from chainrule.nn.functional import log_softmax
from chainrule.nn.losses import SoftmaxCrossEntropy
from chainrule.nn.network import ACTIVATIONS, mlp
from chainrule.nn.optimizers import SGD, Adam, Optimizer
from chainrule.nn.preprocessing import SCALINGS
from chainrule.nn.training import class_indices, fit

__all__ = ["MLPClassifier"]

SOLVERS = ("adam", "sgd")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained by chainrule's backpropagation.

    Parameter names follow scikit-learn's ``MLPClassifier`` where the meaning is the same.

    Parameters
    ----------
    hidden_layer_sizes : widths of the hidden layers, e.g. ``(100,)``; ``()`` gives a
        softmax (multinomial logistic) regression.
    activation : ``"relu"`` (He initialisation), ``"tanh"`` or ``"sigmoid"`` (Glorot).
    solver : ``"adam"`` (``Adam(learning_rate_init)``) or ``"sgd"``
        (``SGD(learning_rate_init, momentum=momentum)``).
    learning_rate_init : the optimizer's learning rate.
    momentum : SGD momentum (ignored by Adam).
    batch_size : rows per gradient step; ``"auto"`` = ``min(200, n_samples)``.
    max_iter : epochs that ``fit`` runs (fewer when early stopping ends it).
        Without early stopping exactly ``max_iter`` epochs run: there is no ``tol``.
    shuffle : reshuffle the rows every epoch.
    early_stopping : hold out ``validation_fraction`` of the training rows (stratified when
        every class has 2 rows or more), stop once their loss has not improved for more than
        ``n_iter_no_change`` epochs in a row, and keep the best epoch's weights.
        ``partial_fit`` never stops early.
    scaling : None (inputs used as given), ``"standard"`` or ``"minmax"``: a ``Scaler`` learnt
        on the training rows (by ``partial_fit``: on its first call's rows), recorded as
        ``model_.preprocessing`` and applied to every input to ``predict*``.
    random_state : int seed for initialisation, validation split and shuffling; None draws
        fresh entropy (not NumPy's global state).
    dtype : ``"float64"`` or ``"float32"``: parameters and computation.
    progress : show a per-epoch progress bar (on a terminal).

    Attributes
    ----------
    classes_ : the sorted class labels; ``predict`` returns values from it.
    n_features_in_ : input width seen by ``fit``.
    model_ : the trained ``Sequential`` (logits out; its ``classes`` are ``classes_``).
    loss_curve_ : mean training loss of every epoch, across ``fit`` and ``partial_fit`` calls.
    validation_scores_ : validation accuracy per epoch with early stopping, else None.
    n_iter_ : epochs run so far.
    history_ : the ``History`` of the last ``fit``/``partial_fit`` call.

    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier((16,), learning_rate_init=0.01, max_iter=100, scaling="standard",
    ...                     random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        learning_rate_init: float = 1e-3,
        momentum: float = 0.9,
        batch_size: int | str = "auto",
        max_iter: int = 200,
        shuffle: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        scaling: str | None = None,
        random_state: int | None = None,
        dtype: str = "float64",
        progress: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.scaling = scaling
        self.random_state = random_state
        self.dtype = dtype
        self.progress = progress

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLPClassifier:
        """Train a fresh network on ``X`` ``(N, n_features)`` and labels ``y`` ``(N,)``."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=self._dtype())
        check_classification_targets(y)
        classes = _sorted_classes(y)
        labels = _label_indices(classes, y)
        self._start(X.shape[1], classes)
        validation_data, patience = None, None
        if self.early_stopping:
            X, X_val, labels, labels_val = self._validation_split(X, labels)
            validation_data, patience = (X_val, labels_val), self.n_iter_no_change
        self._train(X, labels, self.max_iter, self.scaling, validation_data, patience)
        if self.early_stopping:
            self.validation_scores_ = list(self.history_.val_accuracy)
        return self

    def partial_fit(self, X: np.ndarray, y: np.ndarray,
                    classes: np.ndarray | None = None) -> MLPClassifier:
        """One epoch over ``X``, ``y``, continuing from the current weights and optimizer.

        The first call (before any ``fit``) needs ``classes``, every label that will ever
        be seen; each batch may hold any subset of them.
        """
        first_call = not hasattr(self, "classes_")
        if first_call:
            self._check_params()
            if classes is None:
                raise ValueError("MLPClassifier.partial_fit: the first call needs classes=, "
                                 "the list of every class label")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"MLPClassifier.partial_fit: classes={np.asarray(classes).tolist()}"
                             f" differs from the classes of the first call, "
                             f"{self.classes_.tolist()}")
        dtype = self._dtype() if first_call else self.model_.dtype
        X, y = validate_data(self, X, y, dtype=dtype, reset=first_call)
        check_classification_targets(y)
        all_classes = _sorted_classes(classes) if first_call else self.classes_
        labels = _label_indices(all_classes, y)
        if first_call:
            self._start(X.shape[1], all_classes)
        self._train(X, labels, 1, self.scaling if first_call else None)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``, columns in the order of ``classes_``."""
        X = self._check_input(X)
        return self.model_.predict_proba(X)

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        """``log predict_proba`` computed stably as ``log_softmax`` of the logits."""
        X = self._check_input(X)
        return log_softmax(self.model_.forward(self.model_.prepare(X)), axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class label for each row, from ``classes_``."""
        X = self._check_input(X)
        return self.model_.predict(X)

    def _check_params(self) -> None:
        """Validate the constructor parameters (scikit-learn validates in fit, not __init__)."""
        sizes = self._hidden_sizes()
        if not all(isinstance(size, Integral) and size >= 1 for size in sizes):
            raise ValueError("MLPClassifier: hidden_layer_sizes must be positive integers, "
                             f"got {self.hidden_layer_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLPClassifier: activation must be one of {sorted(ACTIVATIONS)},"
                             f" got {self.activation!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"MLPClassifier: solver must be one of {SOLVERS}, "
                             f"got {self.solver!r}")
        if not (isinstance(self.learning_rate_init, Real) and self.learning_rate_init > 0):
            raise ValueError("MLPClassifier: learning_rate_init must be > 0, "
                             f"got {self.learning_rate_init!r}")
        if not (isinstance(self.momentum, Real) and 0 <= self.momentum < 1):
            raise ValueError(f"MLPClassifier: momentum must be in [0, 1), got {self.momentum!r}")
        if self.batch_size != "auto" and not (
                isinstance(self.batch_size, Integral) and self.batch_size >= 1):
            raise ValueError("MLPClassifier: batch_size must be 'auto' or an integer >= 1, "
                             f"got {self.batch_size!r}")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if not (isinstance(value, Integral) and value >= 1):
                raise ValueError(f"MLPClassifier: {name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.validation_fraction, Real) and 0 < self.validation_fraction < 1):
            raise ValueError("MLPClassifier: validation_fraction must be in (0, 1), "
                             f"got {self.validation_fraction!r}")
        if self.scaling is not None and self.scaling not in SCALINGS:
            raise ValueError(f"MLPClassifier: scaling must be None or one of {SCALINGS}, "
                             f"got {self.scaling!r}")
        if self.random_state is not None and not isinstance(self.random_state, Integral):
            raise ValueError("MLPClassifier: random_state must be an int or None, "
                             f"got {self.random_state!r}")
        self._dtype()

    def _hidden_sizes(self) -> tuple:
        sizes = self.hidden_layer_sizes
        return (sizes,) if isinstance(sizes, Integral) else tuple(sizes)

    def _dtype(self) -> np.dtype:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype not in DTYPES:
            raise ValueError(f"MLPClassifier: dtype must be 'float32' or 'float64', "
                             f"got {self.dtype!r}")
        return dtype

    def _start(self, n_features: int, classes: np.ndarray) -> None:
        """Fresh network, optimizer and training record for ``classes`` (sorted labels)."""
        self.classes_ = classes
        self._rng = np.random.default_rng(self.random_state)
        self.model_ = mlp(n_features, self._hidden_sizes(), len(classes),
                          activation=self.activation, seed=self._next_seed(),
                          dtype=self._dtype())
        self.model_.classes = classes
        self._optimizer: Optimizer = (
            Adam(self.learning_rate_init) if self.solver == "adam"
            else SGD(self.learning_rate_init, momentum=self.momentum))
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = None
        self.n_iter_ = 0

    def _next_seed(self) -> int:
        return int(self._rng.integers(2**32))

    def _validation_split(self, X: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
        """``X_train, X_val, labels_train, labels_val`` holding out ``validation_fraction``.

        Stratified by class when every class has 2 rows and both parts can hold every class;
        on smaller data a plain random split (validation labels are class indices either way).
        """
        n_val = int(np.ceil(self.validation_fraction * len(X)))
        n_classes = len(self.classes_)
        stratify = (np.bincount(labels).min() >= 2
                    and n_classes <= n_val <= len(X) - n_classes)
        return train_test_split(X, labels, test_size=n_val,
                                stratify=labels if stratify else None,
                                random_state=self._next_seed())

    def _train(self, X: np.ndarray, labels: np.ndarray, epochs: int, scaling: str | None,
               validation_data: tuple[np.ndarray, np.ndarray] | None = None,
               patience: int | None = None) -> None:
        """Run ``chainrule.fit`` on class indices and record its history."""
        batch_size = min(200, len(X)) if self.batch_size == "auto" else self.batch_size
        history = fit(self.model_, SoftmaxCrossEntropy(), self._optimizer, X, labels,
                      epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                      shuffle=self.shuffle, seed=self._next_seed(), progress=self.progress,
                      patience=patience, scaling=scaling)
        # fit records the classes it saw (indices here); the model keeps the real labels.
        self.model_.classes = self.classes_
        self.history_ = history
        self.loss_curve_.extend(history.loss)
        self.n_iter_ += len(history.loss)

    def _check_input(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=self.model_.dtype, reset=False)


def _sorted_classes(labels: np.ndarray) -> np.ndarray:
    """The distinct labels, sorted; fewer than 2 is an error."""
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("MLPClassifier needs at least 2 classes, got "
                         f"{len(classes)} class(es): {classes.tolist()}")
    return classes


def _label_indices(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Positions of the labels ``y`` in ``classes``; any other label is an error."""
    try:
        return class_indices(classes, y)
    except ValueError as error:
        raise ValueError(f"MLPClassifier: {error}") from None
