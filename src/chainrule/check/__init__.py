"""Checking derivatives: central differences, layer and network checks, diagnoses, reports.

Imports ``chainrule.nn`` only. ``numerical`` computes derivatives; ``functions`` checks a
Jacobian or a gradient, ``layercheck`` one layer, ``network`` a whole ``Sequential``;
``diagnosis`` names the classic mistakes, ``report`` holds and prints the verdicts, and
``usercode`` loads a user's ``FILE.py:NAME``.
"""

from chainrule.check.diagnosis import CATALOGUE
from chainrule.check.functions import check_gradient, check_jacobian
from chainrule.check.layercheck import check_layer
from chainrule.check.network import gradcheck
from chainrule.check.numerical import numerical_gradient, numerical_jacobian
from chainrule.check.report import Report

__all__ = [
    "CATALOGUE",
    "Report",
    "check_gradient",
    "check_jacobian",
    "check_layer",
    "gradcheck",
    "numerical_gradient",
    "numerical_jacobian",
]
