"""Train an MLP on scikit-learn's digits with the library API, and look at what it learned.

Run: python examples/train_digits.py
"""

import numpy as np

import chainrule as cr
from chainrule import datasets
from chainrule.experiment import split

X, y = datasets.load("digits")
X_train, X_test, y_train, y_test = split(X, y, test_size=0.25, seed=0)

model = cr.mlp(64, [64, 32], 10, activation="tanh", seed=0)
history = cr.fit(model, cr.SoftmaxCrossEntropy(label_smoothing=0.05),
                 cr.SGD(0.05, momentum=0.9, nesterov=True), X_train, y_train,
                 epochs=40, batch_size=32, validation_data=(X_test, y_test), patience=5,
                 scaling="standard", seed=0)

print(model)
print(f"stopped after {len(history.loss)} epochs, best epoch {history.best_epoch}")
print(f"train accuracy {history.accuracy[-1]:.4f}, best validation loss "
      f"{min(history.val_loss):.4f}")
accuracy = np.mean(model.predict(X_test) == y_test)
print(f"test accuracy: {accuracy:.4f} ({len(y_test)} samples)")
confident = model.predict_proba(X_test).max(axis=1)
print(f"median confidence of the predicted class: {np.median(confident):.3f}")
