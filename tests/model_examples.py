"""Models shared by the model-file and inference tests: every savable layer, and raw iris."""

from __future__ import annotations

import numpy as np

from chainrule import (
    SGD,
    Dense,
    Layer,
    LogSoftmax,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    fit,
    mlp,
)
from chainrule.io.datasets import load as load_dataset

OUTPUTS = {"logits": None, "softmax": Softmax, "log_softmax": LogSoftmax}


def every_layer_model(output: type[Layer] | None = None, dtype=np.float64) -> Sequential:
    """Dense → Sigmoid → Dense → Tanh → Dense → ReLU → Dense [→ output]: every savable layer."""
    layers: list[Layer] = [Dense(4, 6, seed=1, dtype=dtype), Sigmoid(),
                           Dense(6, 5, seed=2, dtype=dtype), Tanh(),
                           Dense(5, 4, seed=3, dtype=dtype), ReLU(),
                           Dense(4, 3, seed=4, dtype=dtype)]
    if output is not None:
        layers.append(output())
    model = Sequential(layers)
    rng = np.random.default_rng(5)
    for param in model.parameters():
        param[...] = rng.normal(size=param.shape)  # nonzero biases too
    return model


def train_iris_model() -> tuple[Sequential, np.ndarray, np.ndarray]:
    """A model trained on RAW iris with standard scaling and string class labels."""
    X, y = load_dataset("iris")
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = mlp(4, [8], 3, activation="tanh", seed=0)
    fit(model, SoftmaxCrossEntropy(), SGD(0.1, momentum=0.9), X, names, epochs=15,
        verbose=0, seed=0, scaling="standard")
    return model, X, names
