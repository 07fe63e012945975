"""The classic question: "my chain rule through softmax gives (6.125, 2.625), not A - T".

Logits Z = (1.75, 1.75), target T = (0, 1). The asker evaluated the softmax Jacobian at the
logits Z instead of at the probabilities A = softmax(Z). chainrule writes out every step with
these numbers, then does the same for a whole (tiny) network, layer by layer.

Run: python examples/explain_seed_question.py [--plot DIR]
"""

import argparse
from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule.experiment import digits_example
from chainrule.explain.backprop import loss_for

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--plot", type=Path, metavar="DIR",
                    help="also draw the pictures into this folder (needs matplotlib)")
args = parser.parse_args()

derivation = cr.explain_softmax_cross_entropy([1.75, 1.75], [0, 1])
print(derivation)

# The asker's mistake, reproduced: the right formula evaluated at the wrong vector.
wrong_jacobian = cr.softmax_jacobian(np.array([1.75, 1.75]))
print("\nJacobian at Z (the mistake):", wrong_jacobian.tolist(),
      "-> ∂E/∂Z =", (wrong_jacobian.T @ derivation["dE/dA"].value).tolist())
print("Jacobian at A (correct):    ", derivation["J"].value.tolist(),
      "-> ∂E/∂Z =", derivation["dE/dZ"].value.tolist())

# The same bookkeeping through Dense → Sigmoid → Dense → Softmax → cross-entropy.
model, x, label = digits_example(sample=0)
table = cr.explain_backprop(model, loss_for(model), x, label)
print()
print(table)
assert table.agrees, "the explained gradients must equal model.backward's"

if args.plot:
    from chainrule.explain import plots

    print(plots.plot_softmax_jacobian(derivation, args.plot / "softmax_jacobian.png"))
    print(plots.plot_gradients(table, args.plot / "gradients.png"))
