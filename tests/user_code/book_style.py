"""Book style: forward stores self.output and returns None, backward stores self.dinputs,
self.dweights, self.dbiases. Inputs are (B, features)."""

import numpy as np


class Layer_Dense:
    def __init__(self, n_inputs, n_neurons):
        rng = np.random.default_rng(0)
        self.weights = 0.1 * rng.standard_normal((n_inputs, n_neurons))
        self.biases = rng.standard_normal((1, n_neurons))

    def forward(self, inputs):
        self.inputs = inputs
        self.output = np.dot(inputs, self.weights) + self.biases

    def backward(self, dvalues):
        self.dweights = np.dot(self.inputs.T, dvalues)
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = np.dot(dvalues, self.weights.T)


class Layer_Dense_Averaged(Layer_Dense):
    """Divides the weight gradient by the batch size inside the layer."""

    def backward(self, dvalues):
        self.dweights = np.dot(self.inputs.T, dvalues) / len(dvalues)
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = np.dot(dvalues, self.weights.T)


class Activation_ReLU:
    def forward(self, inputs):
        self.inputs = inputs
        self.output = np.maximum(0, inputs)

    def backward(self, dvalues):
        self.dinputs = dvalues.copy()
        self.dinputs[self.inputs <= 0] = 0


class Activation_Softmax:
    def forward(self, inputs):
        exp_values = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
        self.output = exp_values / np.sum(exp_values, axis=1, keepdims=True)

    def backward(self, dvalues):
        self.dinputs = np.empty_like(dvalues)
        pairs = zip(self.output, dvalues, strict=True)
        for index, (single_output, single_dvalues) in enumerate(pairs):
            single_output = single_output.reshape(-1, 1)
            jacobian_matrix = np.diagflat(single_output) - np.dot(single_output, single_output.T)
            self.dinputs[index] = np.dot(jacobian_matrix, single_dvalues)


class Activation_Softmax_Shortcut(Activation_Softmax):
    """Uses the softmax + cross-entropy shortcut in the softmax layer alone."""

    def backward(self, dvalues):
        self.dinputs = self.output - dvalues


class Activation_Softmax_PlusCross(Activation_Softmax):
    """Cross terms with the wrong sign."""

    def backward(self, dvalues):
        self.dinputs = np.empty_like(dvalues)
        pairs = zip(self.output, dvalues, strict=True)
        for index, (single_output, single_dvalues) in enumerate(pairs):
            single_output = single_output.reshape(-1, 1)
            jacobian_matrix = np.diagflat(single_output * (1 - single_output))
            jacobian_matrix += np.dot(single_output, single_output.T) - np.diagflat(
                single_output ** 2)
            self.dinputs[index] = np.dot(jacobian_matrix, single_dvalues)


class Activation_Softmax_Loss_CategoricalCrossentropy:
    """Softmax and cross-entropy in one: forward takes the labels (a loss, not a layer)."""

    def forward(self, inputs, y_true):
        exp_values = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
        self.output = exp_values / np.sum(exp_values, axis=1, keepdims=True)
        return -np.mean(np.log(self.output[range(len(inputs)), y_true]))

    def backward(self, dvalues, y_true):
        self.dinputs = dvalues.copy()
        self.dinputs[range(len(dvalues)), y_true] -= 1
        self.dinputs = self.dinputs / len(dvalues)
