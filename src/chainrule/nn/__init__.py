"""The network: array functions, layers, losses, ``Sequential``, optimizers and training.

The lowest wing: it imports nothing from ``check``, ``explain`` or ``io``
(``Sequential.save`` and ``to_torch`` import ``chainrule.io`` when called).
"""

from chainrule.nn.errors import NonFiniteError
from chainrule.nn.functional import (
    log_softmax,
    logsumexp,
    sigmoid,
    softmax,
    softmax_jacobian,
    softmax_vjp,
)
from chainrule.nn.layers import Dense, Layer, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from chainrule.nn.losses import CrossEntropy, Loss, MSELoss, NLLLoss, SoftmaxCrossEntropy
from chainrule.nn.network import Sequential, mlp
from chainrule.nn.optimizers import SGD, Adam, Optimizer
from chainrule.nn.preprocessing import Scaler
from chainrule.nn.training import History, evaluate, fit

__all__ = [
    "SGD",
    "Adam",
    "CrossEntropy",
    "Dense",
    "History",
    "Layer",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "NLLLoss",
    "NonFiniteError",
    "Optimizer",
    "ReLU",
    "Scaler",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "evaluate",
    "fit",
    "log_softmax",
    "logsumexp",
    "mlp",
    "sigmoid",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
]
