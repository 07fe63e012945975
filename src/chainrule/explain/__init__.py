"""Explaining derivatives: the chain rule written out with the user's numbers, and pictures.

``backprop`` builds derivations, ``derivation`` holds and renders them (text, Markdown, LaTeX,
HTML), ``plots`` draws them (matplotlib, imported when a picture is drawn). Imports
``chainrule.nn`` (and may import ``chainrule.check``).
"""

from chainrule.explain.backprop import explain_backprop, explain_softmax_cross_entropy
from chainrule.explain.derivation import Derivation, Step

__all__ = ["Derivation", "Step", "explain_backprop", "explain_softmax_cross_entropy"]
