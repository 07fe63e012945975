"""The network: array functions, layers, losses, ``Sequential``, optimizers and training.

The lowest wing: it imports nothing from ``check``, ``explain`` or ``io``
(``Sequential.save`` and ``to_torch`` import ``chainrule.io`` when called).
"""

from chainrule.nn.canonical_losses import (
    CanonicalLoss,
    HalfPoissonDeviance,
    HalfSquaredError,
    SigmoidLogLoss,
    SoftmaxLogLoss,
)
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
from chainrule.nn.regularization import add_l2_gradient, l2_penalty
from chainrule.nn.sparse import SparseInputDense
from chainrule.nn.training import History, evaluate, fit

__all__ = [
    "SGD",
    "Adam",
    "CanonicalLoss",
    "CrossEntropy",
    "Dense",
    "HalfPoissonDeviance",
    "HalfSquaredError",
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
    "SigmoidLogLoss",
    "Softmax",
    "SoftmaxCrossEntropy",
    "SoftmaxLogLoss",
    "SparseInputDense",
    "Tanh",
    "add_l2_gradient",
    "evaluate",
    "fit",
    "l2_penalty",
    "log_softmax",
    "logsumexp",
    "mlp",
    "sigmoid",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
]
