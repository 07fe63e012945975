"""chainrule.MLPClassifier against scikit-learn's MLPClassifier on digits: accuracy, fit time.

Both get the same network and training: one hidden layer of 100 ReLU units, softmax
cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batches of 200 rows, exactly
``--epochs`` epochs (scikit-learn's loss-tolerance stop is disabled and its L2 penalty
``alpha`` set to 0, which chainrule does not have), inputs standardised on the training split
of a stratified 75/25 split. What still differs: weight initialisation (He-uniform here,
scikit-learn's scaled Glorot-uniform) and the random streams, so every round uses a new seed.
The four systems are fitted in interleaved rounds; time ratios are medians of per-round ratios.

    python benchmarks/bench_estimator.py [--epochs 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from _common import (
    THREADS,
    interleaved,
    limited_threads,
    machine,
    markdown_table,
    median_ratio,
    spread,
)
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.preprocessing import StandardScaler

from chainrule import MLPClassifier

HIDDEN = (100,)
LEARNING_RATE = 1e-3
BATCH_SIZE = 200
SYSTEMS = [("scikit-learn", "float64"), ("chainrule", "float64"),
           ("scikit-learn", "float32"), ("chainrule", "float32")]


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


def fitting(library: str, dtype: str, epochs: int, data: tuple,
            accuracies: list[float]) -> Callable[[], float]:
    """A system for ``interleaved``: each call fits with the next seed (0, 1, ...), appends the
    test accuracy to ``accuracies`` and returns the fit's seconds (scoring not timed)."""
    X_train, X_test, y_train, y_test = data
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)

    def fit_once() -> float:
        classifier = make_classifier(library, dtype, epochs, seed=len(accuracies))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, by design
            start = time.perf_counter()
            classifier.fit(X_train, y_train)
            seconds = time.perf_counter() - start
        if classifier.n_iter_ != epochs:
            raise RuntimeError(f"{library} ran {classifier.n_iter_} epochs, not {epochs}")
        accuracies.append(classifier.score(X_test, y_test))
        return seconds

    return fit_once


def main(argv: list[str] | None = None) -> list[dict]:
    """Fit every (library, dtype) for ``--rounds`` seeds, print a table, return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="seeds 0..N-1, interleaved")
    args = parser.parse_args([] if argv is None else argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    data = (scaler.transform(X_train), scaler.transform(X_test), y_train, y_test)

    accuracies: dict[str, list[float]] = {f"{lib} {dtype}": [] for lib, dtype in SYSTEMS}
    systems = {name: fitting(*name.split(), args.epochs, data, accuracies[name])
               for name in accuracies}
    with limited_threads(THREADS):
        seconds = interleaved(systems, args.rounds)

    rows = []
    for name in systems:
        library, dtype = name.split()
        reference = seconds[f"scikit-learn {dtype}"]
        rows.append({"library": library, "dtype": dtype,
                     "accuracy_mean": float(np.mean(accuracies[name])),
                     "accuracy_min": min(accuracies[name]),
                     "accuracy_max": max(accuracies[name]),
                     "fit_seconds_median": statistics.median(seconds[name]),
                     "fit_seconds": seconds[name],
                     "time_vs_sklearn": median_ratio(seconds[name], reference)})

    print(f"## chainrule.MLPClassifier vs scikit-learn MLPClassifier on digits\n\n"
          f"{len(X_train)} train / {len(X_test)} test rows, MLP 64-{HIDDEN[0]}-10 ReLU, Adam lr "
          f"{LEARNING_RATE}, batch {BATCH_SIZE}, {args.epochs} epochs, {args.rounds} interleaved "
          f"rounds (seeds 0..{args.rounds - 1}), {THREADS} BLAS threads\n{machine()}\n")
    print(markdown_table(
        ["library", "dtype", "test accuracy: mean (min–max)", "fit s: median (min–max)",
         "ms/epoch", "time ÷ scikit-learn, same dtype"],
        [[row["library"], row["dtype"],
          f"{row['accuracy_mean']:.4f} ({row['accuracy_min']:.4f}–{row['accuracy_max']:.4f})",
          f"{row['fit_seconds_median']:.2f} ({spread(row['fit_seconds'], digits=2)})",
          f"{1000 * row['fit_seconds_median'] / args.epochs:.2f}",
          f"{row['time_vs_sklearn']:.2f}×"] for row in rows]))
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
