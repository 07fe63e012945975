"""chainrule.gradcheck against torch.autograd.gradcheck and a plain one-entry-at-a-time loop.

The same function is checked by all: the mean softmax cross-entropy of a 64-32-10 tanh MLP
on a batch of 16 random rows, float64, with respect to every parameter (2,410 entries).

- chainrule full: ``gradcheck(model, loss, X, y)``: every parameter entry against the
  numeric gradient of the loss, plus each layer in isolation (input and parameters) and the
  loss's own gradient; the numbers behind a per-entry verdict and a localised diagnosis.
- chainrule fast: ``gradcheck(..., fast=True)``: the slope along one random direction in
  (parameters, input) (the default; torch's fast mode is one random projection too), and
  along 2 directions.
- torch default / fast: ``torch.autograd.gradcheck(f, params, fast_mode=False/True)``.
- NumPy loop: ``(L(θ + h e_i) - L(θ - h e_i)) / 2h`` for every entry i, one forward of the
  whole network and the loss per evaluation, compared with ``model.backward``.

Systems run in interleaved rounds with one BLAS/PyTorch thread (with two threads on a busy
2-core machine PyTorch's default-mode gradcheck took 10-25 s instead of 0.25 s, which would
flatter chainrule); ratios are medians of per-round ratios.

    python benchmarks/bench_gradcheck.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
from _common import (
    interleaved,
    limited_threads,
    machine,
    markdown_table,
    median_ratio,
    once,
    optional,
    per_call,
    spread,
    verdict,
)

from chainrule import SoftmaxCrossEntropy, mlp
from chainrule.check.network import gradcheck

BATCH = 16
TARGET = 10.0
THREADS = 1


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    model = mlp(64, [32], 10, activation="tanh", seed=seed)
    return model, SoftmaxCrossEntropy(), rng.normal(size=(BATCH, 64)), rng.integers(0, 10, BATCH)


def numpy_loop(model, loss, X, y) -> Callable[[], bool]:
    """The classic course script: perturb one entry, run the whole network, repeat."""
    def check() -> bool:
        loss.forward(model.forward(X), y)
        model.backward(loss.backward())
        passed = True
        for param, grad in zip(model.parameters(), model.grads.values(), strict=True):
            analytic = grad.copy()
            flat = param.reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                step = 6e-6 * max(1.0, abs(old))
                flat[i] = old + step
                up = loss.forward(model.forward(X), y)
                flat[i] = old - step
                down = loss.forward(model.forward(X), y)
                flat[i] = old
                numeric = (up - down) / (2 * step)
                error = abs(analytic.flat[i] - numeric)
                passed &= error <= max(1e-5 * max(abs(analytic.flat[i]), abs(numeric)), 1e-8)
        return bool(passed)
    return check


def torch_check(torch, model, X, y, fast_mode: bool) -> Callable[[], bool]:
    inputs, labels = torch.tensor(X), torch.tensor(y)
    params = [torch.tensor(param, requires_grad=True) for param in model.params.values()]

    def loss(W1, b1, W2, b2):
        hidden = torch.tanh(inputs @ W1 + b1)
        return torch.nn.functional.cross_entropy(hidden @ W2 + b2, labels)

    return lambda: torch.autograd.gradcheck(loss, params, fast_mode=fast_mode)


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every checker in interleaved rounds, print one table, return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args([] if argv is None else argv)

    model, loss, X, y = problem()
    checks: dict[str, Callable[[], object]] = {
        "chainrule full": lambda: gradcheck(model, loss, X, y),
        "chainrule fast": lambda: gradcheck(model, loss, X, y, fast=True),
        "chainrule fast, 2 directions": lambda: gradcheck(model, loss, X, y, fast=True,
                                                          directions=2),
        "NumPy loop": numpy_loop(model, loss, X, y),
    }
    torch = optional("torch")
    if torch is not None:
        checks["torch default"] = torch_check(torch, model, X, y, fast_mode=False)
        checks["torch fast"] = torch_check(torch, model, X, y, fast_mode=True)
    for name, check in checks.items():  # all must agree that the gradients are right
        result = check()
        if not getattr(result, "passed", result):
            raise RuntimeError(f"{name} says the correct network fails")
    timers = {name: (per_call(check) if "fast" in name else once(check))
              for name, check in checks.items()}
    with limited_threads(THREADS):
        seconds = interleaved(timers, args.rounds)

    references = {"chainrule full": ["torch default", "NumPy loop"],
                  "chainrule fast": ["torch fast"],
                  "chainrule fast, 2 directions": ["torch fast"]}
    targeted = {"chainrule full", "chainrule fast"}  # the 2-direction row is for information
    rows = []
    for name in checks:
        row = {"checker": name, "ms_median": 1e3 * statistics.median(seconds[name]),
               "ms": [1e3 * value for value in seconds[name]], "ratios": {}}
        for other in references.get(name, []):
            if other in seconds:
                row["ratios"][other] = median_ratio(seconds[other], seconds[name])
        rows.append(row)

    n_params = model.n_params
    print(f"## Gradient checking: chainrule vs torch.autograd.gradcheck\n\n"
          f"64-32-10 tanh MLP, softmax cross-entropy, batch {BATCH}, float64, {n_params:,} "
          f"parameters, {args.rounds} interleaved rounds, {THREADS} thread\n{machine()}\n")
    print(markdown_table(
        ["checker", "ms: median (min–max)", "speed-up of chainrule (median of rounds)",
         f"target ≥ {TARGET:g}×"],
        [[row["checker"], f"{row['ms_median']:.2f} ({spread(row['ms'], digits=2)})",
          ", ".join(f"{ratio:.1f}× vs {other}" for other, ratio in row["ratios"].items()),
          ", ".join(verdict(ratio, TARGET) for other, ratio in row["ratios"].items()
                    if other.startswith("torch") and row["checker"] in targeted)]
         for row in rows]))
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
