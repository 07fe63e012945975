"""Assertions for pytest files and autograders: a wrong derivative fails with the diagnosis.

Each function runs the matching check and raises ``AssertionError`` whose message is the
report (the table, the claimed and numeric values side by side, the mistake and its fix).

>>> import numpy as np
>>> from chainrule.nn.layers import Tanh
>>> assert_layer_correct(Tanh(), np.array([[0.5, -1.0, 2.0]]))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chainrule.check.functional_style import check_functions
from chainrule.check.functions import check_jacobian
from chainrule.check.layercheck import check_layer
from chainrule.check.losscheck import check_loss
from chainrule.check.modelcheck import check_model
from chainrule.check.network import gradcheck
from chainrule.check.report import Report

__all__ = ["assert_functions_correct", "assert_jacobian_correct", "assert_layer_correct",
           "assert_loss_correct", "assert_model_correct", "assert_network_correct"]


def _require(report: Report) -> None:
    __tracebackhide__ = True  # pytest shows the caller's line, then the report
    if not report.passed:
        raise AssertionError("\n" + str(report))


def assert_layer_correct(layer: object, x: np.ndarray, **options: object) -> None:
    """``check_layer(layer, x, **options)`` must pass (any layer convention; see there)."""
    __tracebackhide__ = True
    _require(check_layer(layer, x, **options))


def assert_jacobian_correct(f: Callable[[np.ndarray], np.ndarray],
                            jacobian_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                            **options: object) -> None:
    """``check_jacobian(f, jacobian_fn, x, **options)`` must pass (``elementwise=True`` for
    an element-wise derivative)."""
    __tracebackhide__ = True
    _require(check_jacobian(f, jacobian_fn, x, **options))


def assert_functions_correct(forward_fn: Callable, backward_fn: Callable, *inputs: np.ndarray,
                             **options: object) -> None:
    """``check_functions(forward_fn, backward_fn, *inputs, **options)`` must pass."""
    __tracebackhide__ = True
    _require(check_functions(forward_fn, backward_fn, *inputs, **options))


def assert_loss_correct(loss: object, output: np.ndarray, y: np.ndarray,
                        **options: object) -> None:
    """``check_loss(loss, output, y, **options)`` must pass: chainrule's loss or your own
    (a class, softmax and cross-entropy in one, ``loss, dx = f(x, y)``, or
    ``gradient=f_prime``)."""
    __tracebackhide__ = True
    _require(check_loss(loss, output, y, **options))


def assert_model_correct(model: object, X: np.ndarray, y: np.ndarray,
                         **options: object) -> None:
    """``check_model(model, X, y, **options)`` must pass: your network object that computes
    its loss and gradients (``loss, grads = model.loss(X, y)``, or forward, a loss method and
    backward)."""
    __tracebackhide__ = True
    _require(check_model(model, X, y, **options))


def assert_network_correct(model: object, loss: object, X: np.ndarray, y: np.ndarray,
                           **options: object) -> None:
    """``gradcheck(model, loss, X, y, **options)`` must pass: a ``Sequential``, or a list of
    layers, your own among them (the message names the layer that is wrong)."""
    __tracebackhide__ = True
    _require(gradcheck(model, loss, X, y, **options))
