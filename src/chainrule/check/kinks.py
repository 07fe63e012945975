"""Samples at which central differences straddle a kink, so that they are not derivatives.

``ReLU`` has a kink at 0: for an input ``|x| <= h`` (``h`` the step of
:mod:`chainrule.check.numerical`) ``(relu(x + h) - relu(x - h)) / 2h`` lies between the
one-sided slopes 0 and 1 (exactly 1/2 at ``x = 0``) while the backward pass, correctly, gives
0 or 1. In a batch of a few hundred samples such an input is likely, and would fail a correct
network; :func:`straddling_rows` finds the samples that hold one, so that the check can
leave them out and say so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chainrule.check.numerical import steps_for
from chainrule.nn.layers import ReLU

__all__ = ["straddling_rows"]


def straddling_rows(layers: Sequence[object], inputs: Sequence[np.ndarray],
                    eps: float | None) -> np.ndarray:
    """``(B,)`` booleans: the rows in which some ``ReLU`` layer's input lies within one
    central-difference step (``eps``, or the default per-entry step) of its kink at 0.

    ``inputs[k]`` is the ``(B, n)`` input of ``layers[k]``.
    """
    rows = np.zeros(len(inputs[0]), dtype=bool)
    for layer, x in zip(layers, inputs, strict=False):
        if isinstance(layer, ReLU):
            rows |= np.any(np.abs(x) <= steps_for(x, eps), axis=1)
    return rows
