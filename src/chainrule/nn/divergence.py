"""Telling divergence from training: non-finite values, runaway loss, what to report.

``fit`` calls these; each divergence becomes one ``FloatingPointError`` naming where it
happened and what went wrong, with the model left at finite weights.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.nn.network import Sequential

__all__ = ["RUNAWAY_FACTOR", "diverged", "loss_problem", "non_finite_params",
           "overflow_before_training", "params_finite"]

# A batch loss above RUNAWAY_FACTOR times the first epoch's mean batch loss (taken as at
# least 1) is runaway divergence, as is one beyond float32's range: healthy training moves
# within a few orders of magnitude of where it starts (digits: 2.3 down to 5e-8, back up to 9).
RUNAWAY_FACTOR = 1e6
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def loss_problem(batch_loss: float, reference: float | None) -> str | None:
    """What is wrong with ``batch_loss`` (non-finite or runaway), or None.

    ``reference``: the first epoch's mean batch loss (during it, of its batches so far; None
    before the first batch).
    """
    if not math.isfinite(batch_loss):
        return f"the loss became {batch_loss}"
    if batch_loss > _FLOAT32_MAX:
        return f"the loss reached {batch_loss:.3g}, beyond float32's range (runaway)"
    if reference is not None and batch_loss > RUNAWAY_FACTOR * max(reference, 1.0):
        return (f"the loss reached {batch_loss:.3g}, over {RUNAWAY_FACTOR:.0e} times the "
                f"first epoch's mean batch loss {reference:.3g} (taken as at least 1): "
                "runaway")
    return None


def params_finite(model: Sequential) -> bool:
    # A sum is NaN or inf when any entry is (or, rarely, when huge entries overflow it).
    return all(np.isfinite(np.sum(param)) or np.isfinite(param).all()
               for param in model.params.values())


def non_finite_params(model: Sequential) -> str:
    return ", ".join(key for key, param in model.params.items() if not np.isfinite(param).all())


def overflow_before_training(model: Sequential, xb: np.ndarray, problem: str) -> None:
    """The first batch's forward pass is not finite before any update: the inputs or the
    initial weights are too large, which is no divergence but a ``ValueError``."""
    largest_param = max((float(np.abs(param).max()) for param in model.params.values()),
                        default=0.0)
    raise ValueError(f"fit: the first batch gives a non-finite result before any update "
                     f"({problem}); largest |input| {np.abs(xb).max():.3g}, largest |parameter| "
                     f"{largest_param:.3g}: scale the inputs (scaling='standard')")


def diverged(model: Sequential, what: str, history: object,
             best_weights: dict[str, np.ndarray] | None, snapshot: dict[str, np.ndarray],
             epoch: int) -> None:
    """Raise ``FloatingPointError`` naming ``what`` (with ``.history``), leaving the model at
    finite weights: ``best_weights`` (of ``history.best_epoch``) when tracked, else
    ``snapshot``, those from the start of ``epoch`` (0-based)."""
    bad = non_finite_params(model)
    if bad and "parameters" not in what:
        what += f"; non-finite parameters: {bad}"
    if best_weights is not None:
        model.set_weights(best_weights)
        where = f"restored to its best weights (epoch {history.best_epoch + 1})"
    else:
        model.set_weights(snapshot)
        where = f"restored to its weights from the start of epoch {epoch + 1}"
    error = FloatingPointError(f"fit: training diverged at {what}; the model is {where}, all "
                               "finite (lower the learning rate?)")
    error.history = history
    raise error
