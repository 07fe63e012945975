"""Whole networks written as one class that computes its loss and its gradients, the way the
classic assignments and from-scratch tutorials write them. Each is correct or carries one
mistake."""

import numpy as np


class TwoLayerNet:
    """params dict; loss(X, y=None) returns the scores, or the loss and a dict of gradients."""

    def __init__(self, input_size, hidden_size, output_size, std=0.5, reg=0.1):
        rng = np.random.default_rng(0)
        self.params = {"W1": std * rng.standard_normal((input_size, hidden_size)),
                       "b1": np.full(hidden_size, 0.1),
                       "W2": std * rng.standard_normal((hidden_size, output_size)),
                       "b2": np.zeros(output_size)}
        self.reg = reg

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[key] for key in ("W1", "b1", "W2", "b2"))
        hidden = np.maximum(0, X @ W1 + b1)
        scores = hidden @ W2 + b2
        if y is None:
            return scores
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        N = len(X)
        loss = -np.log(probs[np.arange(N), y]).mean()
        loss += self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        dscores = probs.copy()
        dscores[np.arange(N), y] -= 1
        dscores /= N
        grads = {"W2": hidden.T @ dscores + 2 * self.reg * W2, "b2": dscores.sum(axis=0)}
        dhidden = (dscores @ W2.T) * (hidden > 0)
        grads["W1"] = X.T @ dhidden + 2 * self.reg * W1
        grads["b1"] = dhidden.sum(axis=0)
        return loss, grads


class TwoLayerNetForgetsTheMean(TwoLayerNet):
    """Divides the loss by N but not dscores: every data gradient N times too large."""

    def loss(self, X, y=None):
        if y is None:
            return super().loss(X)
        loss, grads = super().loss(X, y)
        N = len(X)
        for key in ("W1", "W2"):
            grads[key] = (grads[key] - 2 * self.reg * self.params[key]) * N \
                + 2 * self.reg * self.params[key]
        grads["b1"], grads["b2"] = grads["b1"] * N, grads["b2"] * N
        return loss, grads


class NeuralNetwork:
    """Attributes W1, b1, W2, b2; forward(X) caches z1, a1, z2, a2; compute_loss(y_true,
    y_pred); backward(X, y) stores dz2, dW2, ... (dz2 beside the cached z2: not a parameter)."""

    def __init__(self, n_in, n_hidden, n_out):
        rng = np.random.default_rng(1)
        self.W1 = rng.standard_normal((n_in, n_hidden)) * 0.5
        self.b1 = np.zeros((1, n_hidden))
        self.W2 = rng.standard_normal((n_hidden, n_out)) * 0.5
        self.b2 = np.zeros((1, n_out))

    def forward(self, X):
        self.z1 = X @ self.W1 + self.b1
        self.a1 = np.tanh(self.z1)
        self.z2 = self.a1 @ self.W2 + self.b2
        exp = np.exp(self.z2 - self.z2.max(axis=1, keepdims=True))
        self.a2 = exp / exp.sum(axis=1, keepdims=True)
        return self.a2

    def compute_loss(self, y_true, y_pred):
        return -np.mean(np.sum(y_true * np.log(y_pred), axis=1))

    def backward(self, X, y):
        m = len(X)
        self.dz2 = self.a2 - y
        self.dW2 = self.a1.T @ self.dz2 / m
        self.db2 = self.dz2.sum(axis=0, keepdims=True) / m
        self.dz1 = (self.dz2 @ self.W2.T) * (1 - self.a1 ** 2)
        self.dW1 = X.T @ self.dz1 / m
        self.db1 = self.dz1.sum(axis=0, keepdims=True) / m


class NeuralNetworkSigmoidDerivative(NeuralNetwork):
    """Uses the sigmoid's derivative a(1 - a) for a tanh hidden layer."""

    def backward(self, X, y):
        super().backward(X, y)
        m = len(X)
        self.dz1 = (self.dz2 @ self.W2.T) * self.a1 * (1 - self.a1)
        self.dW1 = X.T @ self.dz1 / m
        self.db1 = self.dz1.sum(axis=0, keepdims=True) / m


class NetworkThatUpdatesItself(NeuralNetwork):
    """backward(X, y, learning_rate) applies the update, as many tutorials' train loops do."""

    def backward(self, X, y, learning_rate):
        super().backward(X, y)
        self.W1 = self.W1 - learning_rate * self.dW1  # rebinds
        self.b1 -= learning_rate * self.db1  # in place
        self.W2 -= learning_rate * self.dW2
        self.b2 -= learning_rate * self.db2


class NetworkForgetsToUpdateB2(NetworkThatUpdatesItself):
    def backward(self, X, y, learning_rate):
        b2 = self.b2.copy()
        super().backward(X, y, learning_rate)
        self.b2 = b2
