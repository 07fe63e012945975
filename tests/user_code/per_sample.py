"""One sample at a time: x is a vector (features,)."""

import numpy as np


class Neuron:
    def __init__(self, n_in, n_out):
        rng = np.random.default_rng(3)
        self.w = rng.standard_normal((n_out, n_in))
        self.b = np.zeros(n_out)

    def forward(self, x):
        self.x = x
        self.z = self.w @ x + self.b
        return np.tanh(self.z)

    def backward(self, grad):
        dz = grad * (1 - np.tanh(self.z) ** 2)
        self.dw = np.outer(dz, self.x)
        self.db = dz
        return self.w.T @ dz
