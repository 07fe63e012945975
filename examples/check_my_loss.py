"""Check a cross-entropy loss written the way course notes write it, then the fused one.

The first loss takes the probabilities of a softmax layer, but its backward returns
``A - T``: the gradient of softmax and cross-entropy *together*, with respect to the logits.
``check_loss`` names the mistake (``shortcut_in_loss``) and its fix. The second class fuses
softmax into the loss, as the book does: its forward takes the logits and stores the
probabilities, its backward takes them back, and there ``A - T`` is right. Last, ``gradcheck``
takes a network of layers and a loss written this way as they are.

Run: python examples/check_my_loss.py
"""

import numpy as np

import chainrule as cr


class Loss_CategoricalCrossentropy:
    def forward(self, y_pred, y_true):
        return -np.log(np.clip(y_pred[range(len(y_pred)), y_true], 1e-7, 1))

    def backward(self, dvalues, y_true):
        self.dinputs = dvalues.copy()
        self.dinputs[range(len(dvalues)), y_true] -= 1  # A - T: not this loss's gradient
        self.dinputs = self.dinputs / len(dvalues)


class Activation_Softmax_Loss_CategoricalCrossentropy:
    def forward(self, inputs, y_true):
        exp_values = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
        self.output = exp_values / np.sum(exp_values, axis=1, keepdims=True)
        return -np.mean(np.log(self.output[range(len(inputs)), y_true]))

    def backward(self, dvalues, y_true):
        self.dinputs = dvalues.copy()
        self.dinputs[range(len(dvalues)), y_true] -= 1
        self.dinputs = self.dinputs / len(dvalues)


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


rng = np.random.default_rng(1)
logits, y = rng.normal(size=(4, 3)), np.array([0, 1, 2, 1])
print(cr.check_loss(Loss_CategoricalCrossentropy(), cr.softmax(logits), y))
print()
print(cr.check_loss(Activation_Softmax_Loss_CategoricalCrossentropy(), logits, y))
print()
X = rng.normal(size=(6, 4))
report = cr.gradcheck([Layer_Dense(4, 3)], Activation_Softmax_Loss_CategoricalCrossentropy(), X,
                      np.array([0, 1, 2, 0, 1, 2]))
print(f"network with the fused loss: passed {report.passed}")
