"""Checking derivatives: central differences, layer and network checks, diagnoses, reports.

Imports ``chainrule.nn`` only. ``numerical`` computes derivatives; ``functions`` checks a
Jacobian or a gradient, ``layercheck`` one layer, ``losscheck`` a loss (chainrule's or the
user's), ``network`` a whole ``Sequential`` or list of layers, ``modelcheck`` a user's network
object that computes its own loss and gradients;
``diagnosis`` names the classic mistakes (``fixes`` says what to change), ``report`` holds
and prints the verdicts, and ``usercode`` loads a user's ``FILE.py:NAME``. A user's layer in
any common convention is mapped by ``adapters`` (or explicitly by ``wrapped.wrap_layer``);
``functional_style`` and ``autograd`` check functions and ``torch.autograd.Function``
subclasses; ``calls`` reports an exception in the user's code as theirs.
"""

from chainrule.check.adapters import ConventionError
from chainrule.check.autograd import check_autograd_function
from chainrule.check.calls import UserCodeError
from chainrule.check.diagnosis import CATALOGUE
from chainrule.check.functional_style import check_functions
from chainrule.check.functions import check_gradient, check_jacobian
from chainrule.check.layercheck import check_layer
from chainrule.check.losscheck import check_loss
from chainrule.check.modelcheck import check_model
from chainrule.check.network import gradcheck
from chainrule.check.numerical import numerical_gradient, numerical_jacobian
from chainrule.check.report import Report
from chainrule.check.wrapped import wrap_layer

__all__ = [
    "CATALOGUE",
    "ConventionError",
    "Report",
    "UserCodeError",
    "check_autograd_function",
    "check_functions",
    "check_gradient",
    "check_jacobian",
    "check_layer",
    "check_loss",
    "check_model",
    "gradcheck",
    "numerical_gradient",
    "numerical_jacobian",
    "wrap_layer",
]
