"""The solvers behind ``MLPClassifier`` / ``MLPRegressor``: mini-batch epochs with scikit-learn's
learning-rate schedules and stopping rules, and L-BFGS on the flat parameter vector.

Both work on an estimator whose ``coefs_`` / ``intercepts_`` ARE the parameters of the
``network`` they are given (``Dense.wrap``), and get loss and gradient from the estimator's
``_loss_and_grads`` (chainrule's forward, canonical loss and backward, plus the L2 term).
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np

from chainrule.nn.errors import NonFiniteError
from chainrule.nn.network import Sequential
from chainrule.nn.optimizers import SGD, Adam, Optimizer
from chainrule.nn.progress import in_jupyter, is_terminal, tqdm_class

if TYPE_CHECKING:
    from chainrule._mlp_base import BaseMLP, Network

__all__ = ["ScheduledOptimizer", "fit_lbfgs", "fit_stochastic"]

# scikit-learn's "adaptive" schedule divides the rate by 5 on each plateau until it is this small.
SMALLEST_ADAPTIVE_RATE = 1e-6


class ScheduledOptimizer:
    """chainrule's ``SGD`` or ``Adam`` with scikit-learn's learning-rate schedule.

    ``learning_rate`` is the current rate (the optimizer's ``lr``). With ``"invscaling"`` it
    becomes ``learning_rate_init / (t + 1) ** power_t`` after each epoch, ``t`` the samples
    seen; with ``"adaptive"`` a plateau divides it by 5 instead of stopping, until it is below
    1e-6. Schedules apply to SGD only, as in scikit-learn.
    """

    def __init__(self, rule: Optimizer, learning_rate_init: float, schedule: str = "constant",
                 power_t: float = 0.5) -> None:
        self.rule = rule
        self.learning_rate_init = learning_rate_init
        self.schedule = schedule if isinstance(rule, SGD) else "constant"
        self.power_t = power_t

    @property
    def learning_rate(self) -> float:
        return self.rule.lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        # scikit-learn's momentum accumulates steps already scaled by the rate, v ← μv - ηg;
        # chainrule's SGD (PyTorch's rule) accumulates gradients, b ← μb + g, and scales at
        # the step. With v = -ηb they agree while η is constant; rescaling b by η_old / η_new
        # when η changes keeps scikit-learn's steps exactly.
        if isinstance(self.rule, SGD) and self.rule.momentum and value != self.rule.lr:
            for state in self.rule.state.values():
                state["velocity"] *= self.rule.lr / value
        self.rule.lr = value

    def step(self, network: Sequential) -> None:
        self.rule.step(network)

    def iteration_ends(self, samples_seen: int) -> None:
        """End of an epoch: the ``"invscaling"`` rate for ``samples_seen`` so far."""
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (samples_seen + 1) ** self.power_t

    def trigger_stopping(self, message: str, verbose: bool) -> bool:
        """A plateau: True to stop; ``"adaptive"`` first lowers the rate and goes on."""
        if self.schedule != "adaptive":
            if verbose:
                print(message + " Stopping.")
            return True
        if self.learning_rate <= SMALLEST_ADAPTIVE_RATE:
            if verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(message + f" Setting learning rate to {self.learning_rate:f}")
        return False


def new_optimizer(estimator: BaseMLP) -> ScheduledOptimizer:
    """The estimator's ``solver`` ("sgd" or "adam") with its parameters."""
    if estimator.solver == "sgd":
        rule: Optimizer = SGD(estimator.learning_rate_init, momentum=estimator.momentum,
                              nesterov=bool(estimator.nesterovs_momentum and estimator.momentum))
    else:
        rule = Adam(estimator.learning_rate_init, betas=(estimator.beta_1, estimator.beta_2),
                    eps=estimator.epsilon)
    return ScheduledOptimizer(rule, estimator.learning_rate_init, estimator.learning_rate,
                              estimator.power_t)


def fit_stochastic(estimator: BaseMLP, network: Network, X, Y: np.ndarray,
                   sample_weight: np.ndarray | None, incremental: bool) -> None:
    """Mini-batch epochs until ``max_iter``, a plateau (``tol`` / ``n_iter_no_change``) or, for
    ``partial_fit``, one epoch. Records ``loss_curve_``, ``n_iter_``, ``t_`` and the stopping
    state as scikit-learn does; with ``early_stopping`` the best validation epoch's weights
    are kept."""
    est = estimator
    if not incremental or not hasattr(est, "_optimizer"):
        est._optimizer = new_optimizer(est)
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    validation = None
    if est.early_stopping:
        X, Y, sample_weight, validation = est._validation_split(X, Y, sample_weight)
    n_samples = X.shape[0]
    if est.batch_size == "auto":
        batch_size = min(200, n_samples)
    else:
        if est.batch_size > n_samples:
            warnings.warn(f"batch_size={est.batch_size} is larger than the {n_samples} "
                          "training rows: using batches of all of them", stacklevel=4)
        batch_size = min(est.batch_size, n_samples)
    if not incremental:
        est.n_iter_ = 0
    bar = None
    if est.progress and (in_jupyter() or is_terminal(sys.stderr)):
        bar = tqdm_class()(total=est.max_iter if not incremental else 1, unit="epoch",
                           leave=False)
    try:
        _epochs(est, network, X, Y, sample_weight, incremental, validation, batch_size, bar)
    finally:
        if bar is not None:
            bar.close()
    if validation is not None:
        _restore_best(est)


def _epochs(est: BaseMLP, network: Network, X, Y: np.ndarray,
            sample_weight: np.ndarray | None, incremental: bool, validation: tuple | None,
            batch_size: int, bar) -> None:
    """The epoch loop of ``fit_stochastic`` (``bar``: a progress bar to advance, or None)."""
    n_samples = X.shape[0]
    order = np.arange(n_samples)
    for _ in range(est.max_iter):
        if est.shuffle:
            est._random_state.shuffle(order)
        accumulated = 0.0
        for begin in range(0, n_samples, batch_size):
            rows = (order[begin:begin + batch_size] if est.shuffle
                    else slice(begin, begin + batch_size))
            weights = None if sample_weight is None else sample_weight[rows]
            batch_loss = _batch_loss(est, network, X[rows], Y[rows], weights)
            if not np.isfinite(batch_loss):
                _diverged(est, validation, f"epoch {est.n_iter_ + 1}, batch "
                                           f"{begin // batch_size + 1}", batch_loss)
                return
            accumulated += batch_loss * (min(begin + batch_size, n_samples) - begin)
            est._optimizer.step(network.sequential)
        est.n_iter_ += 1
        est.loss_ = accumulated / n_samples
        est.t_ += n_samples
        est.loss_curve_.append(est.loss_)
        if bar is not None:
            bar.update()
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        _update_no_improvement_count(est, validation)
        est._optimizer.iteration_ends(est.t_)
        if est._no_improvement_count > est.n_iter_no_change:
            watched = "Validation score" if validation else "Training loss"
            message = (f"{watched} did not improve more than tol={est.tol:f} for "
                       f"{est.n_iter_no_change} consecutive epochs.")
            if est._optimizer.trigger_stopping(message, est.verbose):
                break
            est._no_improvement_count = 0
        if incremental:
            break
        if est.n_iter_ == est.max_iter:
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=5)


def _batch_loss(est: BaseMLP, network: Network, X, Y: np.ndarray,
                weights: np.ndarray | None) -> float:
    """The reported loss (``loss_``'s definition) of one batch, leaving the objective's
    gradients in the network; NaN when the forward pass met non-finite values."""
    try:
        return est._loss_and_grads(network, X, Y, weights)[1]
    except NonFiniteError:
        return np.nan


def _diverged(est: BaseMLP, validation: tuple | None, where: str, loss: float) -> None:
    """A non-finite loss: stop. With early stopping the best epoch's weights are kept and the
    last validation score is NaN; without, the fit fails (scikit-learn's message)."""
    est.n_iter_ += 1
    est.loss_ = float(loss)
    est.loss_curve_.append(est.loss_)
    if validation is not None:
        est.validation_scores_.append(float("nan"))
        _restore_best(est)
        return
    raise ValueError("Solver produced non-finite parameter weights. The input data may contain "
                     f"large values and need to be preprocessed. (The loss became {loss} at "
                     f"{where}; training stopped there.)")


def _restore_best(est: BaseMLP) -> None:
    """Copies of the best epoch's weights become ``coefs_`` / ``intercepts_`` (copies: a later
    warm-started fit trains them in place and must not alter the record of the best)."""
    est.coefs_ = [coef.copy() for coef in est._best_coefs]
    est.intercepts_ = [bias.copy() for bias in est._best_intercepts]


def _update_no_improvement_count(est: BaseMLP, validation: tuple | None) -> None:
    """scikit-learn's plateau rule: an epoch that does not beat the best by ``tol`` counts."""
    if validation is not None:
        score = est._validation_score(*validation)
        est.validation_scores_.append(score)
        if est.verbose:
            print(f"Validation score: {score:f}")
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est._best_coefs = [coef.copy() for coef in est.coefs_]
            est._best_intercepts = [intercept.copy() for intercept in est.intercepts_]
    else:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])


def fit_lbfgs(estimator: BaseMLP, network: Network, X, Y: np.ndarray,
              sample_weight: np.ndarray | None) -> None:
    """``scipy.optimize.minimize(method="L-BFGS-B")`` over all parameters as one vector
    (``coefs_`` then ``intercepts_``, each flattened), with ``maxiter=max_iter``,
    ``maxfun=max_fun`` and ``gtol=tol``; a run that did not converge warns."""
    from scipy.optimize import minimize

    est = estimator
    params = est.coefs_ + est.intercepts_

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        _unpack(theta, params)
        try:
            objective, _ = est._loss_and_grads(network, X, Y, sample_weight)
        except NonFiniteError:
            return np.inf, np.zeros_like(theta)
        return objective, _pack(est._parameter_grads(network))

    def report(intermediate_result) -> None:
        print(f"Iteration {report.count}, loss = {intermediate_result.fun:.8f}")
        report.count += 1

    report.count = 1
    with np.errstate(over="ignore", invalid="ignore"):
        result = minimize(loss_and_gradient, _pack(params), method="L-BFGS-B", jac=True,
                          callback=report if est.verbose else None,
                          options={"maxfun": est.max_fun, "maxiter": est.max_iter,
                                   "gtol": est.tol})
    if result.status != 0:
        from sklearn.exceptions import ConvergenceWarning

        message = result.message.decode() if isinstance(result.message, bytes) else result.message
        warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) "
                      f"(status={result.status}): {message}. Increase max_iter (now "
                      f"{est.max_iter}) or max_fun (now {est.max_fun}), or scale the data.",
                      ConvergenceWarning, stacklevel=4)
    est.n_iter_ = min(int(result.nit), est.max_iter)
    _unpack(result.x, params)
    try:
        est.loss_ = float(est._loss_and_grads(network, X, Y, sample_weight)[1])
    except NonFiniteError:
        est.loss_ = float("nan")


def _pack(arrays: list[np.ndarray]) -> np.ndarray:
    """Every array flattened into one float64 vector, in order."""
    return np.concatenate([np.ravel(array) for array in arrays]).astype(np.float64, copy=False)


def _unpack(theta: np.ndarray, arrays: list[np.ndarray]) -> None:
    """Write ``theta`` back into ``arrays`` in place (the inverse of ``_pack``)."""
    end = 0
    for array in arrays:
        begin, end = end, end + array.size
        array[...] = theta[begin:end].reshape(array.shape)
