"""Check a softmax layer written the way course notes write it, then the fixed one.

``forward`` stores ``self.output``, ``backward`` stores ``self.dinputs``; chainrule works the
convention out. The first backward uses the softmax + cross-entropy shortcut ``A - T`` in a
standalone softmax layer, which the check names (``fused_shortcut``) with the fix.

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


class Activation_Softmax_Fixed(Activation_Softmax):
    def backward(self, dvalues):
        a = self.output
        self.dinputs = a * (dvalues - (dvalues * a).sum(axis=1, keepdims=True))


x = np.array([[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]])
print(cr.check_layer(Activation_Softmax(), x))
print()
print(cr.check_layer(Activation_Softmax_Fixed(), x).summary())
