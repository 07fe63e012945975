"""chainrule's MLPClassifier / MLPRegressor against scikit-learn's: test score and fit time.

Both libraries get the same estimator parameters (the class, then the same keyword
arguments) on the same arrays: a stratified 75/25 split (plain for regression), inputs
standardised on the training part (and the diabetes target too). Six problems: iris, wine,
breast_cancer, digits, diabetes (regression, R²) and a synthetic 20,000 × 50, 5-class
problem; scikit-learn's defaults (one hidden layer of 100 ReLU units, Adam, lr 1e-3,
alpha 1e-4, batches of min(200, N), tol 1e-4 with 10 epochs of patience) except where the
table says. After one untimed warm-up fit per problem and library, seeds 0..rounds-1: in
every round each (problem, library) is fitted once with that round's seed, in an order that
rotates each round; time ratios are medians of per-round ratios. The score verdict:
chainrule's mean within scikit-learn's min–max over the seeds; the time verdict: median
ratio below 1.

    python benchmarks/bench_estimator.py [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from _common import interleaved, limited_threads, machine, markdown_table, median_ratio
from sklearn import datasets
from sklearn import neural_network as sklearn_nn
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import chainrule

LIBRARIES = {"scikit-learn": sklearn_nn, "chainrule": chainrule}


def problems() -> dict[str, dict]:
    """Name -> estimator class name, parameters and the split, scaled arrays."""
    synthetic = datasets.make_classification(n_samples=20000, n_features=50, n_informative=20,
                                             n_classes=5, random_state=0)
    loaded = {
        "iris": ("MLPClassifier", {}, datasets.load_iris(return_X_y=True)),
        "wine": ("MLPClassifier", {}, datasets.load_wine(return_X_y=True)),
        "breast_cancer": ("MLPClassifier", {}, datasets.load_breast_cancer(return_X_y=True)),
        "digits": ("MLPClassifier", {}, datasets.load_digits(return_X_y=True)),
        "diabetes": ("MLPRegressor", {"alpha": 10.0, "max_iter": 500},
                     datasets.load_diabetes(return_X_y=True)),
        "synthetic 20k×50": ("MLPClassifier", {"max_iter": 50}, synthetic),
    }
    result = {}
    for name, (estimator, params, (X, y)) in loaded.items():
        classify = estimator == "MLPClassifier"
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, random_state=0, stratify=y if classify else None)
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        if not classify:
            target = StandardScaler().fit(y_train[:, None])
            y_train = target.transform(y_train[:, None]).ravel()
            y_test = target.transform(y_test[:, None]).ravel()
        result[name] = {"estimator": estimator, "params": params,
                        "data": (X_train, X_test, y_train, y_test)}
    return result


def fitting(library: str, problem: dict, scores: list[float],
            epochs: list[int]) -> Callable[[], float]:
    """A system for ``interleaved``: each call fits with the next seed, appends the test score
    and the epochs run, and returns the fit's seconds (scoring not timed)."""
    X_train, X_test, y_train, y_test = problem["data"]
    estimator_class = getattr(LIBRARIES[library], problem["estimator"])

    def fit_once() -> float:
        estimator = estimator_class(random_state=len(scores), **problem["params"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached
            start = time.perf_counter()
            estimator.fit(X_train, y_train)
            seconds = time.perf_counter() - start
        scores.append(float(estimator.score(X_test, y_test)))
        epochs.append(estimator.n_iter_)
        return seconds

    return fit_once


def warm_up(cases: dict[str, dict]) -> None:
    """One untimed short fit per problem and library, so that one-time costs (chainrule's
    numba kernels compile or load from their disk cache on first use) stay out of the rounds."""
    for problem in cases.values():
        X_train, _, y_train, _ = problem["data"]
        for library in LIBRARIES.values():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                getattr(library, problem["estimator"])(max_iter=2).fit(X_train[:50],
                                                                       y_train[:50])


def main(argv: list[str] | None = None) -> list[dict]:
    """Fit every (problem, library) for ``--rounds`` seeds; print a table, return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="seeds 0..N-1, interleaved")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both")
    args = parser.parse_args([] if argv is None else argv)

    cases = problems()
    scores = {(name, library): [] for name in cases for library in LIBRARIES}
    epochs = {key: [] for key in scores}
    systems = {key: fitting(key[1], cases[key[0]], scores[key], epochs[key]) for key in scores}
    with limited_threads(args.threads):
        warm_up(cases)
        seconds = interleaved(systems, args.rounds)

    rows = []
    for name, problem in cases.items():
        reference = (name, "scikit-learn")
        for library in LIBRARIES:
            key = (name, library)
            rows.append({
                "problem": name, "library": library, "scores": scores[key],
                "epochs": statistics.median(epochs[key]),
                "fit_seconds_median": statistics.median(seconds[key]),
                "time_vs_sklearn": median_ratio(seconds[key], seconds[reference]),
                "score_ok": (min(scores[reference]) - 1e-12 <= float(np.mean(scores[key]))
                             <= max(scores[reference]) + 1e-12),
                "n_train": len(problem["data"][0]), "params": problem["params"],
                "metric": "R²" if problem["estimator"] == "MLPRegressor" else "accuracy"})

    print(f"## chainrule vs scikit-learn MLPClassifier / MLPRegressor\n\n"
          f"Same parameters for both; test score over seeds 0..{args.rounds - 1} (one fit per "
          f"seed, interleaved), {args.threads} BLAS thread(s)\n{machine()}\n")
    table = []
    for row in rows:
        chainrule_row = row["library"] == "chainrule"
        settings = "".join(f", {key}={value}" for key, value in row["params"].items())
        table.append([
            f"{row['problem']} ({row['n_train']} train{settings})" if not chainrule_row else "",
            row["library"],
            f"{row['metric']} {np.mean(row['scores']):.4f} "
            f"({min(row['scores']):.4f}–{max(row['scores']):.4f})",
            f"{row['epochs']:g}", f"{row['fit_seconds_median']:.3f}",
            f"{row['time_vs_sklearn']:.2f}×" if chainrule_row else "1",
            ("score " + ("within" if row["score_ok"] else "OUTSIDE") + ", "
             + ("faster" if row["time_vs_sklearn"] < 1 else "NOT FASTER")) if chainrule_row
            else ""])
    print(markdown_table(["problem", "library", "test score: mean (min–max)", "epochs (median)",
                          "fit s (median)", "time ÷ scikit-learn", "verdict"], table))
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
