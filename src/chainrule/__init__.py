"""chainrule: build, train and verify neural networks trained by backpropagation.

Every derivative is exposed: softmax with its full Jacobian and an O(C) vector-Jacobian
product, layers whose ``backward`` sits next to their ``forward``, losses on probabilities and
fused on logits, and a gradient checker that names the classic mistakes.

The package has four wings, each a subpackage: ``nn`` (the network), ``check`` (checking
derivatives), ``explain`` (derivations and plots) and ``io`` (datasets, model files, export);
``estimator``, ``experiment`` and ``cli`` sit on top. ``import chainrule`` imports none of
scikit-learn, SciPy, matplotlib, tqdm, torch or onnx: each is imported where it is used.
"""

from typing import TYPE_CHECKING

from chainrule._version import __version__
from chainrule.check import (
    UserCodeError,
    check_autograd_function,
    check_functions,
    check_gradient,
    check_jacobian,
    check_layer,
    check_loss,
    check_model,
    gradcheck,
    numerical_gradient,
    numerical_jacobian,
    wrap_layer,
)
from chainrule.explain import explain_backprop, explain_softmax_cross_entropy
from chainrule.io import datasets, load, save
from chainrule.nn import (
    SGD,
    Adam,
    CrossEntropy,
    Dense,
    History,
    Layer,
    LogSoftmax,
    Loss,
    MSELoss,
    NLLLoss,
    Optimizer,
    ReLU,
    Scaler,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    evaluate,
    fit,
    log_softmax,
    logsumexp,
    mlp,
    sigmoid,
    softmax,
    softmax_jacobian,
    softmax_vjp,
)

if TYPE_CHECKING:
    from chainrule.estimator import MLPClassifier, MLPRegressor

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
    "MLPRegressor",
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
    "UserCodeError",
    "__version__",
    "check_autograd_function",
    "check_functions",
    "check_gradient",
    "check_jacobian",
    "check_layer",
    "check_loss",
    "check_model",
    "datasets",
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
    "wrap_layer",
]

# Names whose modules import scikit-learn: loaded on first use (PEP 562), not by `import chainrule`.
_LAZY = {"MLPClassifier": "chainrule.estimator", "MLPRegressor": "chainrule.estimator"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chainrule' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
