"""chainrule.MLPClassifier against scikit-learn's MLPClassifier on digits: accuracy, fit time.

Both get the same network and training: one hidden layer of 100 ReLU units, softmax
cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batches of 200 rows, exactly
``--epochs`` epochs (scikit-learn's loss-tolerance stop is disabled and its L2 penalty
``alpha`` set to 0, which chainrule does not have), inputs standardised on the training split,
a stratified 75/25 split. What still differs: weight initialisation (He-uniform here,
scikit-learn's scaled Glorot-uniform) and the random streams, hence one row per seed averaged.

    python benchmarks/bench_estimator.py [--epochs 200] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.preprocessing import StandardScaler

from chainrule import MLPClassifier

HIDDEN = (100,)
LEARNING_RATE = 1e-3
BATCH_SIZE = 200


def make_classifier(library: str, dtype: str, epochs: int, seed: int):
    """The same architecture and optimizer configured in either library."""
    if library == "chainrule":
        return MLPClassifier(HIDDEN, "relu", solver="adam", learning_rate_init=LEARNING_RATE,
                             batch_size=BATCH_SIZE, max_iter=epochs, random_state=seed,
                             dtype=dtype)
    # n_iter_no_change > epochs: never stop on the training-loss tolerance.
    return SklearnMLP(HIDDEN, activation="relu", solver="adam",
                      learning_rate_init=LEARNING_RATE, batch_size=BATCH_SIZE,
                      max_iter=epochs, alpha=0.0, n_iter_no_change=epochs + 1,
                      random_state=seed)


def run_one(library: str, dtype: str, epochs: int, seed: int, data) -> tuple[float, float, int]:
    """``(test accuracy, fit seconds, epochs run)`` for one classifier and seed."""
    X_train, X_test, y_train, y_test = (part.astype(dtype) if part.dtype.kind == "f" else part
                                        for part in data)
    classifier = make_classifier(library, dtype, epochs, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, by design
        start = time.perf_counter()
        classifier.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return classifier.score(X_test, y_test), seconds, classifier.n_iter_


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every (library, dtype) over the seeds, print a table, return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3, help="model seeds 0..N-1 per row")
    args = parser.parse_args([] if argv is None else argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    data = (scaler.transform(X_train), scaler.transform(X_test), y_train, y_test)

    rows = []
    for library, dtype in [("scikit-learn", "float64"), ("chainrule", "float64"),
                           ("scikit-learn", "float32"), ("chainrule", "float32")]:
        runs = [run_one(library, dtype, args.epochs, seed, data) for seed in range(args.seeds)]
        accuracies, seconds, epochs_run = np.array(runs).T
        rows.append({"library": library, "dtype": dtype,
                     "accuracy_mean": float(accuracies.mean()),
                     "accuracy_min": float(accuracies.min()),
                     "accuracy_max": float(accuracies.max()),
                     "fit_seconds_median": float(np.median(seconds)),
                     "ms_per_epoch_median": float(1000 * np.median(seconds / epochs_run))})

    print(f"digits: {len(X_train)} train / {len(X_test)} test rows, MLP 64-{HIDDEN[0]}-10 ReLU, "
          f"Adam lr {LEARNING_RATE}, batch {BATCH_SIZE}, {args.epochs} epochs, "
          f"seeds 0..{args.seeds - 1}")
    print(f"{'library':<13} {'dtype':<8} {'accuracy (mean, min-max)':<26} "
          f"{'fit s (median)':>14} {'ms/epoch':>9}")
    for row in rows:
        accuracy = (f"{row['accuracy_mean']:.4f} ({row['accuracy_min']:.4f}-"
                    f"{row['accuracy_max']:.4f})")
        print(f"{row['library']:<13} {row['dtype']:<8} {accuracy:<26} "
              f"{row['fit_seconds_median']:>14.2f} {row['ms_per_epoch_median']:>9.2f}")
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
