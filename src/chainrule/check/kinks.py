"""Samples at which central differences straddle a kink, so that they are not derivatives.

``ReLU`` has a kink at 0: for an input ``|x| <= h`` (``h`` the step of
:mod:`chainrule.check.numerical`) ``(relu(x + h) - relu(x - h)) / 2h`` lies between the
one-sided slopes 0 and 1 (exactly 1/2 at ``x = 0``) while the backward pass, correctly, gives
0 or 1. In a batch of a few hundred samples such an input is likely, and would fail a correct
network; :func:`straddling_rows` finds the samples that hold one, so that the check can
leave them out and say so. :func:`kinked_rows` does the same for the user's own layers, whose
kinks chainrule cannot know: it probes their one-sided slopes at inputs near 0.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from chainrule.check.calls import UserCodeError
from chainrule.check.numerical import steps_for
from chainrule.check.wrapped import WrappedLayer
from chainrule.nn.layers import ReLU

__all__ = ["kinked_at", "kinked_rows", "straddling_rows"]


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
    """``(B,)`` booleans: the rows of ``x`` with an entry within one step of 0 where the
    shape-keeping ``layer``'s one-sided slopes differ, a kink (ReLU's, leaky ReLU's,
    ``abs``'s) that central differences would straddle. Smooth layers' slopes differ there by
    ``O(h)`` only. The layer is probed on a copy, so its cache stays that of its last forward;
    a layer that cannot run on those rows alone, or changes their shape, has none."""
    rows = np.zeros(len(x), dtype=bool)
    steps = steps_for(x, eps)
    near = np.abs(x) <= steps
    candidates = np.flatnonzero(near.any(axis=1))
    if not candidates.size:
        return rows
    move = np.where(near[candidates], steps[candidates], 0.0)
    probe = copy.deepcopy(layer)
    try:
        down, centre, up = (np.asarray(probe.forward(x[candidates] + sign * move),
                                       dtype=np.float64) for sign in (-1.0, 0.0, 1.0))
    except (UserCodeError, ValueError):
        return rows
    if centre.shape != move.shape:
        return rows
    rise, fall = up - centre, centre - down  # over the same step on each side
    jump = np.abs(rise - fall) > 1e-3 * (np.abs(rise) + np.abs(fall)) + 1e-300
    rows[candidates[np.any(jump & near[candidates], axis=1)]] = True
    return rows
