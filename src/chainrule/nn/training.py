"""The training loop: mini-batch backpropagation with history, early stopping and progress."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from chainrule.nn.errors import NonFiniteError
from chainrule.nn.losses import Loss
from chainrule.nn.network import Sequential
from chainrule.nn.optimizers import Optimizer
from chainrule.nn.preprocessing import Scaler

__all__ = ["History", "class_indices", "encode_labels", "evaluate", "fit"]


@dataclass
class History:
    """Per-epoch metrics in Keras' layout: ``history.history["val_loss"]`` or ``history.val_loss``.

    ``val_*`` lists stay empty without validation data; ``accuracy`` is empty for targets that
    are not classes. ``best_epoch`` is the 0-based epoch whose weights the model ends with
    when early stopping restored them.
    """

    history: dict[str, list[float]] = field(default_factory=lambda: {
        "loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []})
    epoch: list[int] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    def __getattr__(self, name: str) -> list[float]:
        history = self.__dict__.get("history", {})
        if name in history:
            return history[name]
        raise AttributeError(name)


def encode_labels(y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to class indices: ``(indices, classes)`` with ``classes[indices] == y``.

    Integer labels already in ``0..n_classes-1`` map to themselves (``classes = arange``);
    anything else (strings, other integers) is mapped through its sorted unique values,
    which must number ``n_classes``.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.integer) and len(y) and 0 <= y.min() and y.max() < n_classes:
        return y.astype(np.int64), np.arange(n_classes)
    classes, indices = np.unique(y, return_inverse=True)
    if len(classes) != n_classes:
        raise ValueError(f"the network has {n_classes} outputs but the labels have "
                         f"{len(classes)} distinct values: {classes[:10]}")
    return indices.astype(np.int64), classes


# Divergence is detected and reported as one FloatingPointError (below), so NumPy's
# overflow/invalid warnings along the way would only be noise.
@np.errstate(over="ignore", invalid="ignore")
def fit(
    model: Sequential,
    loss: Loss,
    optimizer: Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    epochs: int = 10,
    batch_size: int = 32,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    progress: bool = True,
    patience: int | None = None,
    scaling: str | None = None,
) -> History:
    """Train ``model`` by mini-batch backpropagation; returns the per-epoch ``History``.

    ``X`` ``(N, n_in)``; ``y`` labels ``(N,)`` (any values: mapped to classes, recorded in
    ``model.classes``) or target rows ``(N, C)``. ``scaling="standard"|"minmax"`` fits a
    ``Scaler`` on ``X``, records it as ``model.preprocessing`` and trains on scaled inputs.
    ``patience=k`` stops when validation loss has not improved for k epochs and restores the
    best weights. Training follows the model's dtype. A non-finite loss raises
    ``FloatingPointError`` naming epoch and batch, with the model at finite parameters.

    >>> from chainrule import Dense, SGD, SoftmaxCrossEntropy
    >>> model = Sequential([Dense(2, 2, seed=0)])
    >>> X, y = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([0, 1])
    >>> history = fit(model, SoftmaxCrossEntropy(), SGD(0.5), X, y, epochs=50, progress=False)
    >>> history.accuracy[-1]
    1.0
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"fit: epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if patience is not None and validation_data is None:
        raise ValueError("fit: early stopping (patience) needs validation_data")
    start = time.perf_counter()
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"fit: X has {len(X)} rows and y has {len(y)}; need the same, > 0")
    if scaling is not None:
        model.preprocessing = Scaler.fit(X, scaling)
    X = model.prepare(X)
    if not np.isfinite(np.sum(X)):
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"fit: X[{row}, {col}] is {X[row, col]}; inputs must be finite")
    n_classes = model.output_width(X.shape[1])
    classes = y.ndim == 1
    if classes:
        y, model.classes = encode_labels(y, n_classes)
    validation = None
    if validation_data is not None:
        X_val = model.prepare(validation_data[0])
        y_val = np.asarray(validation_data[1])
        if classes:
            y_val = class_indices(model.classes, y_val, "the classes seen in training:")
        validation = (X_val, y_val)

    history = History()
    rng = np.random.default_rng(seed)
    order = np.arange(len(X))
    X_batch = np.empty((min(batch_size, len(X)), X.shape[1]), dtype=X.dtype)
    y_batch = np.empty((min(batch_size, len(X)), *y.shape[1:]), dtype=y.dtype)
    best_loss, best_weights, waited = np.inf, None, 0
    first_trainable = next((index for index, layer in enumerate(model.layers) if layer.params),
                           len(model.layers))
    for epoch in range(epochs):
        if shuffle:
            rng.shuffle(order)
        snapshot = model.get_weights()
        total_loss, correct = 0.0, 0
        batches, bar = range(0, len(X), batch_size), None
        if progress and sys.stderr.isatty():
            from tqdm.auto import tqdm  # imported only when a bar is drawn

            batches = bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                                 leave=False)
        for batch_index, begin in enumerate(batches):
            if shuffle:
                rows = order[begin:begin + batch_size]
                # Gather the batch into reused buffers instead of allocating a copy per batch;
                # mode="clip" (the rows are valid anyway) lets take write into `out` unbuffered.
                xb = np.take(X, rows, axis=0, out=X_batch[:len(rows)], mode="clip")
                yb = np.take(y, rows, axis=0, out=y_batch[:len(rows)], mode="clip")
            else:
                xb, yb = X[begin:begin + batch_size], y[begin:begin + batch_size]  # views
            try:
                output = model.forward(xb)
                batch_loss = loss.forward(output, yb)
            except NonFiniteError:
                batch_loss = np.nan  # X was checked finite up front: the training diverged
            if not np.isfinite(batch_loss):
                _diverged(model, snapshot, f"loss became {batch_loss} at epoch {epoch + 1}, "
                                           f"batch {batch_index + 1}")
            _backward_to_params(model, loss.backward(), first_trainable)
            optimizer.step(model)
            total_loss += batch_loss * len(xb) if loss.reduction == "mean" else batch_loss
            correct += _n_correct(output, yb)
            if bar is not None:
                bar.set_postfix_str(f"loss={total_loss / (begin + len(xb)):.4f}", refresh=False)
        if bar is not None:
            bar.close()
        if not _params_finite(model):
            _diverged(model, snapshot, f"parameters became non-finite in epoch {epoch + 1}")
        history.epoch.append(epoch)
        history.history["loss"].append(total_loss / len(X))
        if classes or y.ndim == 2:
            history.history["accuracy"].append(correct / len(X))
        if validation is not None:
            val_loss, val_accuracy = evaluate(model, loss, *validation, batch_size=1024)
            history.history["val_loss"].append(val_loss)
            history.history["val_accuracy"].append(val_accuracy)
            if patience is not None:
                if val_loss < best_loss:
                    best_loss, best_weights, waited = val_loss, model.get_weights(), 0
                    history.best_epoch = epoch
                else:
                    waited += 1
                    if waited > patience:
                        history.stopped_early = True
                        break
    if best_weights is not None:
        model.set_weights(best_weights)
    history.seconds = time.perf_counter() - start
    return history


def evaluate(model: Sequential, loss: Loss, X: np.ndarray, y: np.ndarray,
             batch_size: int = 1024) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``model`` on prepared inputs ``X`` and class indices ``y``."""
    total_loss, correct = 0.0, 0
    for begin in range(0, len(X), batch_size):
        output = model.forward(X[begin:begin + batch_size])
        target = y[begin:begin + batch_size]
        batch_loss = loss.forward(output, target)
        total_loss += batch_loss * len(output) if loss.reduction == "mean" else batch_loss
        correct += _n_correct(output, target)
    return total_loss / len(X), correct / len(X)


def class_indices(classes: np.ndarray, y: np.ndarray,
                  describe: str = "the classes") -> np.ndarray:
    """Positions of the labels ``y`` in ``classes`` (any order); an unknown label is an error
    ``"label 'owl' is not one of <describe> [...]"``.

    >>> class_indices(np.array(["dog", "cat"]), np.array(["cat", "cat", "dog"]))
    array([1, 1, 0])
    """
    classes, y = np.asarray(classes), np.asarray(y)
    order = np.argsort(classes, kind="stable")
    try:
        positions = np.clip(np.searchsorted(classes, y, sorter=order), 0, len(classes) - 1)
        indices = order[positions]
        unknown = classes[indices] != y
    except TypeError:  # labels that do not compare with the classes (ints against strings)
        known = set(classes.tolist())
        unknown = np.array([label not in known for label in y.tolist()])
    if np.any(unknown):
        label = y[np.flatnonzero(unknown)[0]].item()
        raise ValueError(f"label {label!r} is not one of {describe} {classes.tolist()[:10]}")
    return indices.astype(np.int64)


def _backward_to_params(model: Sequential, grad_out: np.ndarray, first_trainable: int) -> None:
    """``model.backward`` without the work nothing uses: no gradient is propagated below the
    first layer with parameters, and that layer skips its input gradient (for ``Dense``, one
    of its three GEMMs — the largest in an MNIST-sized MLP)."""
    for index in range(len(model.layers) - 1, first_trainable - 1, -1):
        layer = model.layers[index]
        try:
            if index > first_trainable:
                grad_out = layer.backward(grad_out)
            else:
                getattr(layer, "_backward_params", layer.backward)(grad_out)
        except ValueError as error:
            raise ValueError(f"layer {index}: {error}") from None


def _n_correct(output: np.ndarray, target: np.ndarray) -> int:
    predicted = np.argmax(output, axis=1)
    expected = target if target.ndim == 1 else np.argmax(target, axis=1)
    return int(np.count_nonzero(predicted == expected))


def _params_finite(model: Sequential) -> bool:
    return all(np.isfinite(np.sum(param)) for param in model.params.values())


def _diverged(model: Sequential, snapshot: dict[str, np.ndarray], what: str) -> None:
    """Raise ``FloatingPointError``, leaving the model at finite parameters.

    The current ones are kept when finite, else those from the start of the epoch.
    """
    restored = not _params_finite(model)
    if restored:
        model.set_weights(snapshot)
    where = "restored to the start of that epoch" if restored else "at its last parameters"
    raise FloatingPointError(f"fit: {what}; the model is {where}, all finite "
                             "(lower the learning rate?)")
