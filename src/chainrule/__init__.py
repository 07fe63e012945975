"""chainrule: build, train and verify neural networks trained by backpropagation.

Every derivative is exposed: softmax with its full Jacobian and an O(C) vector-Jacobian
product, layers whose ``backward`` sits next to their ``forward``, losses on probabilities and
fused on logits, and a gradient checker that names the classic mistakes.
"""

from chainrule import gradcheck
from chainrule.estimator import MLPClassifier
from chainrule.explain import explain_backprop, explain_softmax_cross_entropy
from chainrule.functional import (
    log_softmax,
    logsumexp,
    sigmoid,
    softmax,
    softmax_jacobian,
    softmax_vjp,
)
from chainrule.gradcheck import (
    check_gradient,
    check_jacobian,
    check_layer,
    numerical_gradient,
    numerical_jacobian,
)
from chainrule.layers import Dense, Layer, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from chainrule.losses import CrossEntropy, Loss, MSELoss, NLLLoss, SoftmaxCrossEntropy
from chainrule.network import Sequential, mlp
from chainrule.optimizers import SGD, Adam, Optimizer
from chainrule.preprocessing import Scaler
from chainrule.serialization import load, save
from chainrule.training import History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "Adam",
    "CrossEntropy",
    "Dense",
    "History",
    "Layer",
    "LogSoftmax",
    "Loss",
    "MLPClassifier",
    "MSELoss",
    "NLLLoss",
    "Optimizer",
    "ReLU",
    "Scaler",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "__version__",
    "check_gradient",
    "check_jacobian",
    "check_layer",
    "evaluate",
    "explain_backprop",
    "explain_softmax_cross_entropy",
    "fit",
    "gradcheck",
    "load",
    "log_softmax",
    "logsumexp",
    "mlp",
    "numerical_gradient",
    "numerical_jacobian",
    "save",
    "sigmoid",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
]
