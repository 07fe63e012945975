"""Samples at which central differences straddle a kink, so that they are not derivatives.

``ReLU`` has a kink at 0: for an input ``|x| <= h`` (``h`` the step of
:mod:`chainrule.check.numerical`) ``(relu(x + h) - relu(x - h)) / 2h`` lies between the
one-sided slopes 0 and 1 (exactly 1/2 at ``x = 0``) while the backward pass, correctly, gives
0 or 1. In a batch of a few hundred samples such an input is likely, and would fail a correct
network; :func:`straddling_rows` finds the samples that hold one, so that the check can
leave them out and say so. :func:`kinked_rows` does the same for the user's own layers, whose
kinks chainrule cannot know, wherever they lie: it probes their one-sided slopes at every input.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from chainrule.check.calls import UserCodeError
from chainrule.check.numerical import same_output, steps_for
from chainrule.check.wrapped import WrappedLayer
from chainrule.nn.layers import ReLU

__all__ = ["kinked_at", "kinked_rows", "straddling_rows"]

_ROUNDINGS = 64  # a difference of outputs within this many ulps of the row's largest is noise


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


def kinked_rows(layers: Sequence[object], inputs: Sequence[np.ndarray],
                eps: float | None) -> tuple[np.ndarray, list[str]]:
    """``(B,)`` booleans, and the layers' names: the rows in which one of the user's
    shape-keeping layers (a ``WrappedLayer``) has a kink within one step of an input
    (:func:`kinked_at`). ``inputs[k]`` is the ``(B, n)`` input of ``layers[k]`` and
    ``inputs[k + 1]`` its output."""
    rows, names = np.zeros(len(inputs[0]), dtype=bool), []
    for layer, x, y in zip(layers, inputs, inputs[1:], strict=False):
        if isinstance(layer, WrappedLayer) and x.shape == y.shape:
            kinked = kinked_at(layer, x, eps)
            if kinked.any():
                rows |= kinked
                names.append(layer.label)
    return rows, names


def kinked_at(layer: object, x: np.ndarray, eps: float | None) -> np.ndarray:
    """``(B,)`` booleans: the rows of ``x`` in which the shape-keeping ``layer``'s one-sided
    slopes over one step differ at some entry, a kink (ReLU's at 0, ReLU6's at 6, hard tanh's
    at ±1, ``abs``'s) that central differences would straddle.

    Every entry is moved by its own step down and up at once: for a smooth layer the two
    differences agree to ``O(h)`` relative, for a kink within the step they differ by the jump
    in slope. Differences below the rounding of the row's outputs (a saturated sigmoid) are no
    kink. The layer is probed on a copy, so its cache stays that of its last forward; a layer
    that cannot run on ``x`` moved, changes its shape, or is random (its differences are its
    mask's, which the check then names) has none."""
    steps = steps_for(x, eps)
    probe = copy.deepcopy(layer)
    try:
        down, centre, up, again = (np.asarray(probe.forward(x + sign * steps), dtype=np.float64)
                                   for sign in (-1.0, 0.0, 1.0, 0.0))
    except (UserCodeError, ValueError):
        return np.zeros(len(x), dtype=bool)
    if centre.shape != x.shape or not same_output(centre, again):
        return np.zeros(len(x), dtype=bool)  # random (a dropout mask): the check says so
    rise, fall = up - centre, centre - down  # over the same step on each side
    scale = np.max(np.abs(np.stack([down, centre, up])), axis=(0, 2), keepdims=True)[0]
    rounding = _ROUNDINGS * np.finfo(np.float64).eps * scale
    jump = np.abs(rise - fall) > 1e-3 * (np.abs(rise) + np.abs(fall)) + rounding
    return np.asarray(jump.any(axis=1))
