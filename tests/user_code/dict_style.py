"""Parameters and gradients in dicts, backward(dout) returns dx."""

import numpy as np


class Affine:
    def __init__(self, n_in, n_out):
        rng = np.random.default_rng(4)
        self.params = {"w": rng.standard_normal((n_in, n_out)), "b": np.zeros(n_out)}
        self.grads = {}

    def forward(self, x):
        self.cache = x
        return x @ self.params["w"] + self.params["b"]

    def backward(self, dout):
        x = self.cache
        self.grads["w"] = x.T @ dout
        self.grads["b"] = np.sum(dout, axis=0)
        return dout @ self.params["w"].T
