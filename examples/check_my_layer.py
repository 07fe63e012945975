"""Check a softmax layer written the way course notes write it, then the fixed one.

``forward`` stores ``self.output``, ``backward`` stores ``self.dinputs``; chainrule works the
convention out. The first backward uses the softmax + cross-entropy shortcut ``A - T`` in a
standalone softmax layer, which the check names (``fused_shortcut``) with the fix. Then the
same softmax in a small network of layers written the same way: ``gradcheck`` takes them as a
list and traces the failure to the softmax layer.

Run: python examples/check_my_layer.py
"""

import numpy as np

import chainrule as cr


class Activation_Softmax:
    def forward(self, inputs):
        exp_values = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
        self.output = exp_values / np.sum(exp_values, axis=1, keepdims=True)

    def backward(self, dvalues):
        self.dinputs = self.output - dvalues


class Layer_Dense:
    def __init__(self, n_inputs, n_neurons):
        self.weights = 0.1 * np.random.default_rng(0).standard_normal((n_inputs, n_neurons))
        self.biases = np.zeros((1, n_neurons))

    def forward(self, inputs):
        self.inputs = inputs
        self.output = inputs @ self.weights + self.biases

    def backward(self, dvalues):
        self.dweights = self.inputs.T @ dvalues
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = dvalues @ self.weights.T


class Activation_Softmax_Fixed(Activation_Softmax):
    def backward(self, dvalues):
        a = self.output
        self.dinputs = a * (dvalues - (dvalues * a).sum(axis=1, keepdims=True))


x = np.array([[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]])
print(cr.check_layer(Activation_Softmax(), x))
print()
print(cr.check_layer(Activation_Softmax_Fixed(), x).summary())

X, y = np.random.default_rng(1).normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
for softmax in (Activation_Softmax(), Activation_Softmax_Fixed()):
    report = cr.gradcheck([Layer_Dense(4, 3), softmax], cr.CrossEntropy(), X, y)
    print()
    print(f"network with {type(softmax).__name__}: failing layer {report.failing_layer}")
    print(report.summary())
