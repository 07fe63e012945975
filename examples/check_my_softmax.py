"""Check a hand-written softmax derivative, as in the classic question, and read the diagnosis.

The ``softmax_prime`` below is the one from the question (with the ``else:`` its author ran).
Applied to the logits Z = (1.75, 1.75) it prints [[-1.3125, -3.0625], [-3.0625, -1.3125]],
and the chain rule then gives (6.125, 2.625) instead of A - T = (0.5, -0.5).

Run: python examples/check_my_softmax.py
"""

import numpy as np

from chainrule import Softmax, check_jacobian, check_layer, softmax


def softmax_prime(f):
    jacobian = np.diag(f)
    for i in range(len(jacobian)):
        for j in range(len(jacobian)):
            if i == j:
                jacobian[i][j] = f[i] * (1 - f[i])
            else:
                jacobian[i][j] = -f[i] * f[j]
    return jacobian


Z = np.array([1.75, 1.75])

# 1. The derivative as the author used it: applied to the logits Z.
report = check_jacobian(softmax, softmax_prime, Z)
print(report)
print("claimed:\n", report.rows[0].analytic)
print("numeric:\n", report.rows[0].numeric.round(6))
for item in report.diagnosis:
    print(f"-> {item.identifier}: {item.explanation}")

# 2. The same formula applied to the softmax OUTPUT A = softmax(Z): it passes.
fixed = check_jacobian(softmax, lambda z: softmax_prime(softmax(z)), Z)
print("\nat A = softmax(Z):", fixed.summary())
dE_dA = np.array([0.0, -2.0])  # -T / A for T = (0, 1), A = (0.5, 0.5)
print("chain rule dE/dA · J(A) =", dE_dA @ softmax_prime(softmax(Z)), "= A - T")


# 3. The same mistake inside a layer's backward, found by check_layer.
class MySoftmax(Softmax):
    def forward(self, z):
        self.z = z
        return super().forward(z)

    def backward(self, grad_out):
        return np.stack([g @ softmax_prime(z) for g, z in zip(grad_out, self.z, strict=True)])


layer_report = check_layer(MySoftmax(), np.random.default_rng(0).normal(size=(4, 3)))
print("\n" + layer_report.summary())
