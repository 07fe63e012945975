"""Using a trained model on raw data: its loss and accuracy on a labelled set, and its
predictions as CSV.

Inputs are RAW, as read by ``datasets.load`` or ``datasets.load_inputs``: the model applies
its recorded preprocessing itself.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from chainrule.nn.layers import LogSoftmax, Softmax
from chainrule.nn.losses import CrossEntropy, Loss, NLLLoss, SoftmaxCrossEntropy
from chainrule.nn.network import Sequential
from chainrule.nn.training import evaluate

__all__ = ["evaluate_model", "predictions_csv"]


def evaluate_model(model: Sequential, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on RAW inputs ``X`` ``(N, D)``.

    Labels ``y`` ``(N,)`` are values of ``model.classes`` (class indices when it has none).
    The loss follows the output layer: ``SoftmaxCrossEntropy`` on logits, ``NLLLoss`` after
    ``LogSoftmax``, ``CrossEntropy`` after ``Softmax`` — the same number in each case.
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"evaluate: need one label per input row, got {len(X)} rows and "
                         f"labels of shape {y.shape}")
    last = model.layers[-1]
    loss: Loss = (CrossEntropy() if isinstance(last, Softmax) else
                  NLLLoss() if isinstance(last, LogSoftmax) else SoftmaxCrossEntropy())
    return evaluate(model, loss, X, y)


def predictions_csv(model: Sequential, X: np.ndarray) -> str:
    """CSV text: a header ``label,proba_<class>...``, then per RAW input row its predicted
    label and the probability of each class."""
    probabilities = model.predict_proba(X)
    labels = model.predict(X)
    classes = range(probabilities.shape[1]) if model.classes is None else model.classes
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["label", *(f"proba_{label}" for label in classes)])
    for label, row in zip(labels.tolist(), probabilities.tolist(), strict=True):
        writer.writerow([label, *(repr(p) for p in row)])
    return text.getvalue()
