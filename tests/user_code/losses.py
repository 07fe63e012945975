"""Losses written the way course material and tutorials write them: classes that return or
store their gradient, softmax and cross-entropy in one, a function returning the loss and its
gradient, a loss function beside its derivative. Each is correct or carries one mistake."""

import numpy as np


class Loss:
    def calculate(self, output, y):
        return np.mean(self.forward(output, y))


class Loss_CategoricalCrossentropy(Loss):
    """forward returns the per-sample losses; backward(dvalues, y_true) stores dinputs."""

    def forward(self, y_pred, y_true):
        clipped = np.clip(y_pred, 1e-7, 1 - 1e-7)
        if y_true.ndim == 1:
            correct = clipped[range(len(y_pred)), y_true]
        else:
            correct = np.sum(clipped * y_true, axis=1)
        return -np.log(correct)

    def backward(self, dvalues, y_true):
        if y_true.ndim == 1:
            y_true = np.eye(dvalues.shape[1])[y_true]
        self.dinputs = -y_true / dvalues / len(dvalues)


class CrossEntropyWithTheShortcut(Loss_CategoricalCrossentropy):
    """Returns A - T, the gradient of softmax and cross-entropy together, on probabilities."""

    def backward(self, dvalues, y_true):
        self.dinputs = dvalues.copy()
        self.dinputs[range(len(dvalues)), y_true] -= 1
        self.dinputs = self.dinputs / len(dvalues)


class CrossEntropyStoresNothing(Loss_CategoricalCrossentropy):
    def backward(self, dvalues, y_true):
        dinputs = -1 / dvalues  # noqa: F841 - the mistake under test


class SoftmaxWithLoss:
    """Softmax and cross-entropy in one; backward(dout=1) uses what forward kept."""

    def forward(self, x, t):
        shifted = np.exp(x - x.max(axis=1, keepdims=True))
        self.y, self.t = shifted / shifted.sum(axis=1, keepdims=True), t
        return -np.mean(np.log(self.y[np.arange(len(x)), t]))

    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dx * dout / len(self.t)


class MeanSquaredError:
    """Targets first, as in many tutorials: loss(y_true, y_pred), gradient(y_true, y_pred)."""

    def loss(self, y_true, y_pred):
        return np.mean((y_true - y_pred) ** 2)

    def gradient(self, y_true, y_pred):
        return 2 * (y_pred - y_true) / y_true.size


class MeanSquaredErrorSignFlipped(MeanSquaredError):
    def gradient(self, y_true, y_pred):
        return 2 * (y_true - y_pred) / y_true.size


def softmax_loss(x, y):
    """loss, dx = softmax_loss(x, y), the assignments' style."""
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(x)), y].mean()
    dx = np.exp(log_probs)
    dx[np.arange(len(x)), y] -= 1
    return loss, dx / len(x)


def softmax_loss_summed_gradient(x, y):
    """The loss is a mean, the gradient a sum."""
    loss, dx = softmax_loss(x, y)
    return loss, dx * len(x)


def mse(y_true, y_pred):
    return np.mean(np.power(y_true - y_pred, 2))


def mse_prime(y_true, y_pred):
    return 2 * (y_pred - y_true) / y_true.size
