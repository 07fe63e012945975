"""Training throughput: ``chainrule.fit`` against PyTorch eager, scikit-learn and the GEMM floor.

MLP 784-256-128-10, ReLU, softmax cross-entropy, batches of 128, SGD (lr 0.01, momentum 0.9),
one epoch over 60,000 × 784 synthetic samples per timing, 2 threads for everyone:

- chainrule: ``fit(..., epochs=1, verbose=2)`` as a user runs it — shuffled batches
  gathered into a reused buffer, progress bar drawn (into a null terminal), history recorded,
  inputs checked; and once more with ``shuffle=False``, where batches are views, as PyTorch's;
- PyTorch eager: ``nn.Sequential`` + ``F.cross_entropy`` + ``optim.SGD``, contiguous slices of
  the data tensor as batches (no shuffling: the cheapest data path PyTorch has), the loss read
  back with ``.item()`` every batch;
- scikit-learn: ``MLPClassifier(solver="sgd", alpha=0, max_iter=1)`` on the same arrays;
- GEMM floor: only the 8 matrix products of each step (3 forward; 2 per layer backward,
  minus the unused input gradient of the first layer), into preallocated arrays.

Then sklearn's digits (64-64-10, 20 epochs, Adam, batch 32) for wall time against PyTorch, and
the default ``chainrule train`` timed from interpreter start to its last line.

    python benchmarks/bench_training.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import (
    interleaved,
    limited_threads,
    markdown_table,
    median_ratio,
    once,
    optional,
    progress_bars_drawn,
    spread,
    verdict,
)

import chainrule as cr
from chainrule.nn import kernels

N_SAMPLES, N_FEATURES, HIDDEN, N_CLASSES = 60_000, 784, (256, 128), 10
BATCH_SIZE, LEARNING_RATE, MOMENTUM = 128, 0.01, 0.9
DIGITS_EPOCHS, DIGITS_BATCH, DIGITS_LR = 20, 32, 1e-3

torch = optional("torch")
sklearn_mlp = optional("sklearn.neural_network")


def synthetic(dtype: type, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-sized inputs ``(60000, 784)`` with learnable labels: argmax of a random projection."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_SAMPLES, N_FEATURES), dtype=np.float32).astype(dtype, copy=False)
    y = np.argmax(X[:, :64] @ rng.standard_normal((64, N_CLASSES)).astype(dtype), axis=1)
    return X, y


def chainrule_epoch(X: np.ndarray, y: np.ndarray, epochs: int = 1, batch_size: int = BATCH_SIZE,
                    hidden: tuple[int, ...] = HIDDEN, optimizer: str = "sgd",
                    shuffle: bool = True) -> None:
    model = cr.mlp(X.shape[1], hidden, N_CLASSES, seed=0, dtype=X.dtype)
    step = (cr.SGD(LEARNING_RATE, momentum=MOMENTUM) if optimizer == "sgd"
            else cr.Adam(DIGITS_LR))
    with progress_bars_drawn():
        cr.fit(model, cr.SoftmaxCrossEntropy(), step, X, y, epochs=epochs,
               batch_size=batch_size, shuffle=shuffle, seed=0, verbose=2)


def torch_epoch(X: np.ndarray, y: np.ndarray, epochs: int = 1, batch_size: int = BATCH_SIZE,
                hidden: tuple[int, ...] = HIDDEN, optimizer: str = "sgd") -> None:
    functional = torch.nn.functional
    widths = [X.shape[1], *hidden]
    layers = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], N_CLASSES))
    model = model.to(torch.float64 if X.dtype == np.float64 else torch.float32)
    step = (torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
            if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=DIGITS_LR))
    inputs, targets = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    for _ in range(epochs):
        total = 0.0
        for begin in range(0, len(X), batch_size):
            step.zero_grad()
            loss = functional.cross_entropy(model(inputs[begin:begin + batch_size]),
                                            targets[begin:begin + batch_size])
            loss.backward()
            step.step()
            total += loss.item()


def sklearn_epoch(X: np.ndarray, y: np.ndarray) -> None:
    model = sklearn_mlp.MLPClassifier(
        HIDDEN, activation="relu", solver="sgd", alpha=0.0, batch_size=BATCH_SIZE,
        learning_rate_init=LEARNING_RATE, momentum=MOMENTUM, nesterovs_momentum=False,
        max_iter=1, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: one epoch, by design
        model.fit(X, y)


def gemm_floor(X: np.ndarray) -> Callable[[], None]:
    """One epoch of only the step's 8 GEMMs, with every array preallocated."""
    rng = np.random.default_rng(0)
    widths = [N_FEATURES, *HIDDEN, N_CLASSES]
    weights = [rng.standard_normal((a, b)).astype(X.dtype) * 0.05
               for a, b in itertools.pairwise(widths)]
    weight_grads = [np.empty_like(w) for w in weights]
    activations = [np.empty((BATCH_SIZE, width), X.dtype) for width in widths[1:]]
    input_grads = [np.empty((BATCH_SIZE, width), X.dtype) for width in widths[1:-1]]

    def epoch() -> None:
        for begin in range(0, len(X), BATCH_SIZE):
            batch = X[begin:begin + BATCH_SIZE]
            rows = len(batch)
            inputs = [batch]
            for weight, out in zip(weights, activations, strict=True):
                inputs.append(np.matmul(inputs[-1], weight, out=out[:rows]))
            grad = inputs[-1]  # stands in for ∂L/∂logits: only the shapes matter
            for layer in range(len(weights) - 1, -1, -1):
                np.matmul(inputs[layer].T, grad, out=weight_grads[layer])
                if layer:
                    grad = np.matmul(grad, weights[layer].T, out=input_grads[layer - 1][:rows])

    return epoch


def fit_peak_memory(X: np.ndarray, y: np.ndarray) -> int:
    """Peak bytes traced (tracemalloc) during one epoch of ``fit``, the data and model made."""
    model = cr.mlp(X.shape[1], HIDDEN, N_CLASSES, seed=0, dtype=X.dtype)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(LEARNING_RATE, momentum=MOMENTUM), X, y,
               epochs=1, batch_size=BATCH_SIZE, seed=0, verbose=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def throughput_table(dtype: type, rounds: int) -> tuple[str, dict[str, float]]:
    X, y = synthetic(dtype)
    systems = {"chainrule.fit": once(lambda: chainrule_epoch(X, y)),
               "chainrule.fit, shuffle=False (batches as views)":
                   once(lambda: chainrule_epoch(X, y, shuffle=False))}
    if torch is not None:
        systems["PyTorch eager"] = once(lambda: torch_epoch(X, y))
    if sklearn_mlp is not None:
        systems["scikit-learn MLPClassifier (sgd)"] = once(lambda: sklearn_epoch(X, y))
    systems["GEMM floor (8 GEMMs per step)"] = once(gemm_floor(X))
    with limited_threads():
        seconds = interleaved(systems, rounds)
    ours = seconds["chainrule.fit"]
    rows, ratios = [], {}
    for name, times in seconds.items():
        per_second = [N_SAMPLES / t for t in times]
        ratio = median_ratio(times, ours)
        ratios[name] = ratio
        rows.append([name, f"{statistics.median(per_second):,.0f}", spread(per_second),
                     f"{ratio:.2f}×" if name != "chainrule.fit" else "1.00×"])
    ratios["peak memory fraction"] = fit_peak_memory(X, y) / X.nbytes
    header = ["system", "samples/s (median)", "min–max", "chainrule's speed-up over it"]
    title = (f"Training throughput, {np.dtype(dtype).name}, chainrule's kernels: "
             f"{kernels.backend()}: MLP 784-256-128-10, batch "
             f"{BATCH_SIZE}, SGD momentum, {N_SAMPLES:,} samples per epoch, {rounds} "
             "interleaved rounds")
    return f"{title}\n\n{markdown_table(header, rows)}", ratios


def digits_table(rounds: int) -> tuple[str, float | None, float]:
    """20 epochs on digits: chainrule ``fit`` vs PyTorch; and the default ``chainrule train``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    X_train = StandardScaler().fit_transform(X_train).astype(np.float32)
    options = {"epochs": DIGITS_EPOCHS, "batch_size": DIGITS_BATCH, "hidden": (64,),
               "optimizer": "adam"}
    systems = {"chainrule.fit": once(lambda: chainrule_epoch(X_train, y_train, **options))}
    if torch is not None:
        systems["PyTorch eager"] = once(lambda: torch_epoch(X_train, y_train, **options))
    with limited_threads():
        seconds = interleaved(systems, rounds)
    ours = seconds["chainrule.fit"]
    rows = [[name, f"{1000 * statistics.median(times):.0f}", spread(times, 1000),
             f"{median_ratio(times, ours):.2f}×"] for name, times in seconds.items()]
    speedup = median_ratio(seconds["PyTorch eager"], ours) if torch is not None else None

    script = Path(sys.executable).with_name("chainrule")  # the installed console script
    argv = [str(script), "train"] if script.exists() else [sys.executable, "-m", "chainrule",
                                                            "train"]
    train_seconds = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        train_seconds.append(time.perf_counter() - start)
    rows.append(["`chainrule train` (defaults: 30 epochs, Adam, float64; process start to "
                 "last line)", f"{1000 * statistics.median(train_seconds):.0f}",
                 spread(train_seconds, 1000), ""])
    header = ["system", "wall ms (median)", "min–max", "chainrule's speed-up over it"]
    title = (f"digits ({len(X_train)} training rows), MLP 64-64-10, {DIGITS_EPOCHS} epochs, Adam "
             f"lr {DIGITS_LR}, batch {DIGITS_BATCH}, float32, {rounds} interleaved rounds")
    return f"{title}\n\n{markdown_table(header, rows)}", speedup, statistics.median(train_seconds)


def main(argv: list[str] | None = None) -> None:
    """Print the float32 and float64 throughput tables, the digits table and the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (float32)")
    args = parser.parse_args([] if argv is None else argv)

    table32, ratios = throughput_table(np.float32, args.rounds)
    print(table32, end="\n\n")
    table64, _ = throughput_table(np.float64, max(3, args.rounds // 2))
    print(table64, end="\n\n")
    digits, digits_speedup, train_seconds = digits_table(args.rounds)
    print(digits, end="\n\n")

    targets = []
    if "PyTorch eager" in ratios:
        value = ratios["PyTorch eager"]
        targets.append(f"fit ≥ 1.5× PyTorch eager: {value:.2f}× ({verdict(value, 1.5)})")
    if "scikit-learn MLPClassifier (sgd)" in ratios:
        value = ratios["scikit-learn MLPClassifier (sgd)"]
        targets.append(f"fit ≥ 1.6× scikit-learn: {value:.2f}× ({verdict(value, 1.6)})")
    floor = ratios["GEMM floor (8 GEMMs per step)"]  # t_floor / t_fit = fit's share of it
    targets.append(f"fit ≥ 80% of the GEMM floor: {floor:.0%} ({verdict(floor, 0.8)})")
    memory = ratios["peak memory fraction"]
    targets.append(f"peak traced memory during fit < 10% of the data: {memory:.2%} of "
                   f"{N_SAMPLES * N_FEATURES * 4 / 1e6:.0f} MB "
                   f"({verdict(memory, 0.1, higher_is_better=False)})")
    if digits_speedup is not None:
        targets.append(f"digits fit ≥ 3× PyTorch: {digits_speedup:.2f}× "
                       f"({verdict(digits_speedup, 3.0)})")
    targets.append(f"`chainrule train` < 3 s: {train_seconds:.2f} s "
                   f"({verdict(train_seconds, 3.0, higher_is_better=False)})")
    print("Targets (float32, medians of per-round ratios):")
    print("\n".join(f"- {line}" for line in targets))


if __name__ == "__main__":
    main(sys.argv[1:])
