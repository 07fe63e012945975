"""Column style, as in video tutorials: samples are columns (features, B); backward takes the
learning rate and updates the parameters itself."""

import numpy as np


class Dense:
    def __init__(self, input_size, output_size):
        rng = np.random.default_rng(2)
        self.weights = rng.standard_normal((output_size, input_size))
        self.bias = rng.standard_normal((output_size, 1))

    def forward(self, input):
        self.input = input
        return np.dot(self.weights, self.input) + self.bias

    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * np.sum(output_gradient, axis=1, keepdims=True)
        return input_gradient


class DenseSignFlipped(Dense):
    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights += learning_rate * weights_gradient
        self.bias -= learning_rate * np.sum(output_gradient, axis=1, keepdims=True)
        return input_gradient


class Sigmoid:
    def forward(self, input):
        self.input = input
        return 1 / (1 + np.exp(-input))

    def backward(self, output_gradient, learning_rate):
        s = 1 / (1 + np.exp(-self.input))
        return np.multiply(output_gradient, s * (1 - s))


class Softmax:
    """One column vector (n, 1) at a time."""

    def forward(self, input):
        tmp = np.exp(input)
        self.output = tmp / np.sum(tmp)
        return self.output

    def backward(self, output_gradient, learning_rate):
        n = np.size(self.output)
        return np.dot((np.identity(n) - self.output.T) * self.output, output_gradient)


class SoftmaxAtInput(Softmax):
    """The Jacobian formula applied to the input instead of the output."""

    def forward(self, input):
        self.input = input
        return super().forward(input)

    def backward(self, output_gradient, learning_rate):
        n = np.size(self.input)
        return np.dot((np.identity(n) - self.input.T) * self.input, output_gradient)
