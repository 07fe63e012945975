"""chainrule's MLPClassifier / MLPRegressor against scikit-learn's, number by number.

Same initialisation and random draws, so the objective, its gradient and whole SGD training
runs agree to rounding; Adam to ~1e-5 (ε is added to the bias-corrected √v̂, PyTorch's rule).
"""

from __future__ import annotations

import itertools
import pickle
import re
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neural_network as sk
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import chainrule as cr
from conftest import central_differences

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
X_MULTI, Y_MULTI = make_multilabel_classification(n_samples=60, n_classes=4, random_state=0)
X_REG, Y_REG = make_regression(n_samples=80, n_features=5, n_targets=3, random_state=0)
Y_REG = Y_REG / 100


def _fit_quietly(estimator, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **fit_params)


def _sklearn_objective(estimator, theta, X, Y, sample_weight):
    """scikit-learn's private ``_loss_grad_lbfgs`` with the work buffers it needs."""
    units = [X.shape[1], *[c.shape[1] for c in estimator.coefs_]]
    activations = [X] + [None] * (len(units) - 1)
    deltas = [None] * (len(units) - 1)
    coef_grads = [np.empty(pair) for pair in itertools.pairwise(units)]
    intercept_grads = [np.empty(b) for b in units[1:]]
    return estimator._loss_grad_lbfgs(theta, X, Y, sample_weight, activations, deltas,
                                      coef_grads, intercept_grads)


CASES = {
    "multiclass": (sk.MLPClassifier, cr.MLPClassifier, {}, X_IRIS, Y_IRIS),
    "binary": (sk.MLPClassifier, cr.MLPClassifier, {}, X_IRIS, Y_IRIS == 1),
    "multilabel": (sk.MLPClassifier, cr.MLPClassifier, {}, X_MULTI, Y_MULTI),
    "regression 3 outputs": (sk.MLPRegressor, cr.MLPRegressor, {}, X_REG, Y_REG),
    "poisson": (sk.MLPRegressor, cr.MLPRegressor, {"loss": "poisson"}, X_REG,
                np.exp(Y_REG[:, 0])),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("activation", ["relu", "logistic", "identity"])
def test_objective_and_gradient_equal_scikit_learns(case, weighted, activation):
    sklearn_class, chainrule_class, extra, X, y = CASES[case]
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(X)) if weighted else None
    params = {"hidden_layer_sizes": (7, 5), "activation": activation, "solver": "lbfgs",
              "alpha": 0.3, "max_iter": 1, "random_state": 0, **extra}
    theirs = _fit_quietly(sklearn_class(**params), X, y, sample_weight=weights)
    ours = _fit_quietly(chainrule_class(**params), X, y, sample_weight=weights)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_outputs_ == theirs.n_outputs_ and ours.n_layers_ == theirs.n_layers_
    theta = np.concatenate([a.ravel() for a in theirs.coefs_ + theirs.intercepts_])
    Y = (theirs._label_binarizer.transform(y) if hasattr(theirs, "classes_")
         else y.reshape(len(y), -1)).astype(float)
    expected_loss, expected_grad = _sklearn_objective(theirs, theta.copy(), X, Y, weights)
    loss, grad = ours._loss_grad_lbfgs(theta.copy(), X, Y, weights)
    assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)
    if ours.out_activation_ == "identity":
        # scikit-learn's value takes the mean over the outputs of the squared error (and so
        # is not the function whose gradient it returns); ours is the sum, like the gradient.
        penalty = params["alpha"] * sum(np.vdot(c, c) for c in theirs.coefs_) / 2 / (
            len(X) if weights is None else weights.sum())
        expected_loss = (expected_loss - penalty) * Y.shape[1] + penalty
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-10)  # the reported value


@pytest.mark.parametrize("case", ["regression 3 outputs", "multilabel"])
def test_the_lbfgs_objective_is_the_function_whose_gradient_it_returns(case):
    _, chainrule_class, extra, X, y = CASES[case]
    ours = _fit_quietly(chainrule_class(hidden_layer_sizes=(4,), solver="lbfgs", alpha=0.5,
                                        max_iter=1, random_state=0, **extra), X[:12], y[:12])
    Y = y[:12].reshape(12, -1).astype(float)
    theta = np.concatenate([a.ravel() for a in ours.coefs_ + ours.intercepts_])
    _, grad = ours._loss_grad_lbfgs(theta.copy(), X[:12], Y)
    numeric = central_differences(lambda t: ours._loss_grad_lbfgs(t, X[:12], Y)[0], theta)
    assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("params", [
    {"solver": "sgd"},
    {"solver": "sgd", "nesterovs_momentum": False, "learning_rate": "invscaling"},
    {"solver": "sgd", "learning_rate": "adaptive", "tol": 0.05, "max_iter": 200},
    {"solver": "sgd", "early_stopping": True},
], ids=["sgd", "invscaling", "adaptive", "early-stopping"])
def test_sgd_training_follows_scikit_learn_to_rounding(params):
    params = {"hidden_layer_sizes": (8,), "random_state": 0, "learning_rate_init": 0.05,
              "batch_size": 20, "max_iter": 30, **params}
    theirs = _fit_quietly(sk.MLPClassifier(**params), X_IRIS, Y_IRIS)
    ours = _fit_quietly(cr.MLPClassifier(**params), X_IRIS, Y_IRIS)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    assert ours.validation_scores_ == theirs.validation_scores_
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate,
                                                          rel=1e-14)
    for mine, reference in zip(ours.coefs_ + ours.intercepts_,
                               theirs.coefs_ + theirs.intercepts_, strict=True):
        assert_allclose(mine, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_regression_follows_scikit_learn(solver):
    params = {"hidden_layer_sizes": (8,), "solver": solver, "max_iter": 20, "random_state": 0}
    theirs = _fit_quietly(sk.MLPRegressor(**params), X_REG, Y_REG)
    ours = _fit_quietly(cr.MLPRegressor(**params), X_REG, Y_REG)
    # loss_ is scikit-learn's: ½ · mean over rows AND outputs, plus the L2 term.
    tolerance = {"adam": 1e-5, "sgd": 1e-10}[solver]
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=tolerance)
    assert_allclose(ours.predict(X_REG), theirs.predict(X_REG), rtol=tolerance * 10, atol=1e-9)
    assert ours.score(X_REG, Y_REG) == pytest.approx(theirs.score(X_REG, Y_REG), rel=1e-4)


def test_lbfgs_regression_converges_where_scikit_learns_does():
    # Several outputs: L-BFGS here minimises the objective whose gradient it is given, so
    # its path differs from scikit-learn's (see test_objective_and_gradient_...); one
    # output: the same objective, the same path to rounding.
    params = {"hidden_layer_sizes": (8,), "solver": "lbfgs", "max_iter": 200, "tol": 1e-6,
              "random_state": 0}
    theirs = _fit_quietly(sk.MLPRegressor(**params), X_REG, Y_REG)
    ours = _fit_quietly(cr.MLPRegressor(**params), X_REG, Y_REG)
    assert ours.score(X_REG, Y_REG) > 0.999 and theirs.score(X_REG, Y_REG) > 0.999
    params["max_iter"] = 15
    theirs = _fit_quietly(sk.MLPRegressor(**params), X_REG, Y_REG[:, 0])
    ours = _fit_quietly(cr.MLPRegressor(**params), X_REG, Y_REG[:, 0])
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)


def test_adam_agrees_with_scikit_learn_up_to_where_epsilon_is_added():
    params = {"hidden_layer_sizes": (16,), "learning_rate_init": 0.01, "max_iter": 40,
              "random_state": 3}
    theirs = _fit_quietly(sk.MLPClassifier(**params), X_IRIS, Y_IRIS)
    ours = _fit_quietly(cr.MLPClassifier(**params), X_IRIS, Y_IRIS)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    assert_array_equal(ours.predict(X_IRIS), theirs.predict(X_IRIS))


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csc_array])
def test_sparse_inputs_train_like_dense_ones(solver, container):
    X = np.where(np.abs(X_IRIS) > 0.8, X_IRIS, 0.0)
    params = {"hidden_layer_sizes": (6,), "solver": solver, "max_iter": 15, "random_state": 0}
    dense = _fit_quietly(cr.MLPClassifier(**params), X, Y_IRIS)
    sparse = _fit_quietly(cr.MLPClassifier(**params), container(X), Y_IRIS)
    for a, b in zip(dense.coefs_ + dense.intercepts_, sparse.coefs_ + sparse.intercepts_,
                    strict=True):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert_allclose(sparse.predict_proba(container(X)), dense.predict_proba(X), rtol=1e-9)


def test_float32_input_keeps_float32_and_forced_dtype_wins():
    X32 = X_IRIS.astype(np.float32)
    clf = _fit_quietly(cr.MLPClassifier((8,), max_iter=20, random_state=0), X32, Y_IRIS)
    assert {a.dtype for a in clf.coefs_ + clf.intercepts_} == {np.dtype(np.float32)}
    assert clf.predict_proba(X32).dtype == np.float32
    reg = _fit_quietly(cr.MLPRegressor(max_iter=5, random_state=0), X_REG.astype(np.float32),
                       Y_REG[:, 0])
    assert reg.predict(X_REG.astype(np.float32)).dtype == np.float32
    forced = _fit_quietly(cr.MLPClassifier((8,), max_iter=5, dtype="float64", random_state=0),
                          X32, Y_IRIS)
    assert forced.coefs_[0].dtype == np.float64


def test_random_state_takes_a_random_state_object_like_scikit_learn():
    by_int = _fit_quietly(cr.MLPClassifier((4,), max_iter=5, random_state=7), X_IRIS, Y_IRIS)
    by_object = _fit_quietly(cr.MLPClassifier((4,), max_iter=5,
                                              random_state=np.random.RandomState(7)),
                             X_IRIS, Y_IRIS)
    assert_array_equal(by_int.coefs_[0], by_object.coefs_[0])


def test_warm_start_continues_from_the_fitted_weights():
    # A warm fit starts from the fitted weights with a fresh optimizer, as scikit-learn's.
    params = {"hidden_layer_sizes": (8,), "solver": "sgd", "max_iter": 10, "random_state": 0,
              "tol": 0.0, "warm_start": True}
    ours, theirs = cr.MLPClassifier(**params), sk.MLPClassifier(**params)
    for _ in range(2):
        _fit_quietly(ours, X_IRIS, Y_IRIS)
        _fit_quietly(theirs, X_IRIS, Y_IRIS)
    assert ours.n_iter_ == theirs.n_iter_ == 10  # the epochs of the last fit
    assert len(ours.loss_curve_) == 20 and ours.loss_curve_[10] < ours.loss_curve_[0]
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-10)


def test_warnings_and_refusals_are_scikit_learns():
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        cr.MLPClassifier((4,), solver="sgd", max_iter=3).fit(X_IRIS, Y_IRIS)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 2 iteration"):
        cr.MLPClassifier((4,), solver="lbfgs", max_iter=2).fit(X_IRIS, Y_IRIS)
    assert not hasattr(cr.MLPRegressor(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        cr.MLPRegressor(early_stopping=True).partial_fit(X_REG, Y_REG)
    message = re.escape("Classes with too few members are: ['True'] (with early_stopping the "
                        "validation split is stratified by y == 'b': True, against 'a': False)")
    with pytest.raises(ValueError, match=message):
        cr.MLPClassifier(early_stopping=True).fit(np.eye(4), ["a", "a", "a", "b"])


def test_verbose_prints_scikit_learns_lines(capsys):
    params = {"hidden_layer_sizes": (4,), "solver": "sgd", "max_iter": 3, "random_state": 0,
              "verbose": True}
    _fit_quietly(sk.MLPClassifier(**params), X_IRIS, Y_IRIS)
    expected = capsys.readouterr().out
    _fit_quietly(cr.MLPClassifier(**params), X_IRIS, Y_IRIS)
    assert capsys.readouterr().out == expected
    assert expected.startswith("Iteration 1, loss = ")


def test_pickled_estimator_continues_training_identically():
    clf = cr.MLPRegressor(hidden_layer_sizes=(8,), solver="adam", random_state=0)
    clf.partial_fit(X_REG, Y_REG)
    copy = pickle.loads(pickle.dumps(clf))
    for _ in range(3):
        clf.partial_fit(X_REG, Y_REG)
        copy.partial_fit(X_REG, Y_REG)
    assert_array_equal(copy.coefs_[0], clf.coefs_[0])
    assert copy.n_iter_ == clf.n_iter_ == 4  # partial_fit adds one epoch per call


def test_model_is_a_sequential_giving_the_same_probabilities():
    binary = _fit_quietly(cr.MLPClassifier((6,), max_iter=30, random_state=0),
                          X_IRIS, np.where(Y_IRIS == 1, "yes", "no"))
    model = binary.model_
    assert_allclose(model.predict_proba(X_IRIS), binary.predict_proba(X_IRIS), rtol=1e-12)
    assert_array_equal(model.predict(X_IRIS), binary.predict(X_IRIS))
    assert model.params["0.W"] is binary.coefs_[0]  # shared, not copied
    report = cr.gradcheck(model, cr.SoftmaxCrossEntropy(), X_IRIS[:5],
                          np.array([0, 1, 0, 1, 1]))
    assert report.passed


def test_a_warm_fit_that_never_beats_the_best_returns_the_best_weights():
    # Setosa against the rest: the first fit reaches validation accuracy 1.0, which no later
    # epoch can beat, so the warm fit must end on exactly the weights the first one kept.
    y = Y_IRIS == 0
    clf = cr.MLPClassifier((8,), learning_rate_init=0.01, max_iter=40, early_stopping=True,
                           warm_start=True, random_state=0)
    _fit_quietly(clf, X_IRIS, y)
    assert clf.best_validation_score_ == 1.0
    kept = [array.copy() for array in clf.coefs_ + clf.intercepts_]
    epochs_before = len(clf.validation_scores_)
    clf.set_params(max_iter=20)
    _fit_quietly(clf, X_IRIS, y)
    assert len(clf.validation_scores_) > epochs_before  # it did train on
    for now, before in zip(clf.coefs_ + clf.intercepts_, kept, strict=True):
        assert_array_equal(now, before)


def test_random_state_none_leaves_numpys_global_state_alone():
    np.random.seed(0)  # noqa: NPY002 (the legacy global state is what this test watches)
    expected_next = np.random.RandomState(0).random_sample()
    first = _fit_quietly(cr.MLPClassifier((4,), max_iter=2), X_IRIS, Y_IRIS)
    second = _fit_quietly(cr.MLPClassifier((4,), max_iter=2), X_IRIS, Y_IRIS)
    assert np.random.random_sample() == expected_next  # noqa: NPY002 (nothing drawn from it)
    assert not np.array_equal(first.coefs_[0], second.coefs_[0])  # fresh entropy each fit


@settings(max_examples=15)
@given(hidden=st.lists(st.integers(1, 4), min_size=0, max_size=2),
       activation=st.sampled_from(["identity", "logistic", "tanh", "relu"]),
       case=st.sampled_from(list(CASES)), alpha=st.sampled_from([0.0, 0.7]),
       weighted=st.booleans(), seed=st.integers(0, 2**16))
def test_the_objective_gradient_is_verified_for_any_architecture(hidden, activation, case,
                                                                  alpha, weighted, seed):
    # Any depth (none included), activation, output and weighting: the gradient L-BFGS gets
    # is the derivative of the objective it gets (central differences, float64).
    _, chainrule_class, extra, X, y = CASES[case]
    rows = np.random.default_rng(seed).choice(len(X), 9, replace=False)
    X, y = X[rows], y[rows]
    weights = np.random.default_rng(seed).uniform(0.1, 2.0, 9) if weighted else None
    estimator = chainrule_class(hidden_layer_sizes=hidden, activation=activation, alpha=alpha,
                                solver="lbfgs", max_iter=1, random_state=seed, **extra)
    _fit_quietly(estimator, X, y, sample_weight=weights)
    Y = (estimator._label_binarizer.transform(y) if hasattr(estimator, "classes_")
         else y.reshape(9, -1)).astype(float)
    theta = np.concatenate([a.ravel() for a in estimator.coefs_ + estimator.intercepts_])
    # (ReLU's kink: weights and intercepts are continuous draws, so no pre-activation sits
    # within the 1e-6 step of 0 but with probability ~1e-6 per unit and row.)
    _, grad = estimator._loss_grad_lbfgs(theta.copy(), X, Y, weights)
    numeric = central_differences(
        lambda t: estimator._loss_grad_lbfgs(t, X, Y, weights)[0], theta, eps=1e-6)
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_sparse_input_is_never_densified():
    # 200 x 100,000 at 0.1% density: 153 MiB dense, 0.2 MiB as CSR. Training and predicting
    # allocate the weights (100,000 x 4), their gradients and Adam's state, never the dense X.
    X = sp.random(200, 100_000, density=0.001, format="csr", random_state=0)
    y = np.arange(200) % 2
    # One fit of this size first: kernels compiled or loaded on first use (numba, for arrays
    # this large) allocate Python objects too.
    _fit_quietly(cr.MLPClassifier((4,), max_iter=1, random_state=0), X, y)
    tracemalloc.start()
    try:
        clf = _fit_quietly(cr.MLPClassifier((4,), max_iter=3, random_state=0), X, y)
        clf.predict_proba(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    weights = 100_000 * 4 * 8
    assert peak < 12 * weights < X.shape[0] * X.shape[1] * 8 / 3
