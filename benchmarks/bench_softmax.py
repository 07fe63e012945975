"""Softmax backward, B = 256, float32: the O(C) product against PyTorch and the naive Jacobian.

For C in {10, 100, 1000, 4096}, per call:

- ``softmax_vjp(a, g)``: ``a ⊙ (g - ⟨g, a⟩)``, the C×C Jacobian never built;
- PyTorch's native softmax backward kernel (``torch._softmax_backward_data``), 2 threads;
- the fused loss as training runs it: ``SoftmaxCrossEntropy`` forward + backward (loss and
  ``∂E/∂z = (p - onehot) / B``), against ``F.cross_entropy`` forward + ``.backward()``;
- the naive per-sample loop a first attempt writes: build each ``J = diag(a) - a aᵀ``, then
  ``Jᵀ g`` — O(C²) per sample (from C = 1000 on, timed on 16 rows and scaled to 256).

    python benchmarks/bench_softmax.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
from _common import interleaved, limited_threads, markdown_table, optional, per_call, verdict

import chainrule as cr

BATCH, CLASSES, NAIVE_ROWS = 256, (10, 100, 1000, 4096), 16

torch = optional("torch")


def naive_vjp(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One explicit Jacobian per sample, then a matrix-vector product."""
    out = np.empty_like(g)
    for row in range(len(a)):
        out[row] = cr.softmax_jacobian(a[row]).T @ g[row]
    return out


def systems_for(n_classes: int, rng: np.random.Generator) -> dict:
    logits = rng.normal(scale=2.0, size=(BATCH, n_classes)).astype(np.float32)
    probabilities = cr.softmax(logits)
    upstream = rng.normal(size=(BATCH, n_classes)).astype(np.float32)
    labels = rng.integers(0, n_classes, BATCH)
    loss = cr.SoftmaxCrossEntropy()

    def fused() -> np.ndarray:
        loss.forward(logits, labels)
        return loss.backward()

    systems = {"softmax_vjp": per_call(lambda: cr.softmax_vjp(probabilities, upstream))}
    if torch is not None:
        probabilities_t, upstream_t = torch.from_numpy(probabilities), torch.from_numpy(upstream)
        logits_t = torch.from_numpy(logits).requires_grad_()
        labels_t = torch.from_numpy(labels)

        def torch_cross_entropy() -> None:
            logits_t.grad = None
            torch.nn.functional.cross_entropy(logits_t, labels_t).backward()

        systems["torch softmax backward"] = per_call(lambda: torch._softmax_backward_data(
            upstream_t, probabilities_t, -1, torch.float32))
        systems["SoftmaxCrossEntropy fwd+bwd"] = per_call(fused)
        systems["torch cross_entropy fwd+bwd"] = per_call(torch_cross_entropy)
    else:
        systems["SoftmaxCrossEntropy fwd+bwd"] = per_call(fused)
    # The naive loop is 100-7000x slower: one call per round, and from C = 1000 on it runs on
    # the first NAIVE_ROWS samples only, its time scaled to the batch (rows are independent).
    rows = BATCH if n_classes < 1000 else NAIVE_ROWS
    naive = per_call(lambda: naive_vjp(probabilities[:rows], upstream[:rows]), min_seconds=0.0)
    systems["naive Jacobian loop"] = lambda: naive() * BATCH / rows
    return systems


def main(argv: list[str] | None = None) -> None:
    """Print one table: microseconds per call (median, spread) and the ratios, by C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args([] if argv is None else argv)

    rng = np.random.default_rng(0)
    rows, worst_vjp, worst_fused = [], 0.0, 0.0
    for n_classes in CLASSES:
        systems = systems_for(n_classes, rng)
        with limited_threads():
            seconds = interleaved(systems, args.rounds)
        median = {name: statistics.median(times) for name, times in seconds.items()}
        ratio = {name: statistics.median(a / b for a, b in zip(times, seconds["softmax_vjp"],
                                                                 strict=True))
                 for name, times in seconds.items()}
        vjp_vs_torch = fused_vs_torch = None
        if torch is not None:
            vjp_vs_torch = statistics.median(
                a / b for a, b in zip(seconds["softmax_vjp"], seconds["torch softmax backward"],
                                      strict=True))
            fused_vs_torch = statistics.median(
                a / b for a, b in zip(seconds["SoftmaxCrossEntropy fwd+bwd"],
                                      seconds["torch cross_entropy fwd+bwd"], strict=True))
            worst_vjp, worst_fused = max(worst_vjp, vjp_vs_torch), max(worst_fused,
                                                                       fused_vs_torch)
        cells = [f"{n_classes}", f"{1e6 * median['softmax_vjp']:,.1f}"]
        if torch is not None:
            cells += [f"{1e6 * median['torch softmax backward']:,.1f}", f"{vjp_vs_torch:.2f}×",
                      f"{1e6 * median['SoftmaxCrossEntropy fwd+bwd']:,.1f}",
                      f"{1e6 * median['torch cross_entropy fwd+bwd']:,.1f}",
                      f"{fused_vs_torch:.2f}×"]
        else:
            cells += ["–", "–", f"{1e6 * median['SoftmaxCrossEntropy fwd+bwd']:,.1f}", "–", "–"]
        cells += [f"{1e6 * median['naive Jacobian loop']:,.0f}",
                  f"{ratio['naive Jacobian loop']:,.0f}×"]
        rows.append(cells)

    header = ["C", "softmax_vjp µs", "torch softmax bwd µs", "vjp / torch",
              "SoftmaxCrossEntropy fwd+bwd µs", "torch cross_entropy fwd+bwd µs",
              "fused / torch", "naive Jacobian loop µs", "naive / softmax_vjp"]
    print(f"Softmax backward, B = {BATCH}, float32, medians of {args.rounds} interleaved rounds; "
          "ratios are medians of per-round ratios\n")
    print(markdown_table(header, rows))
    if torch is not None:
        print("\nTargets (worst C):")
        print(f"- softmax_vjp within 2× of PyTorch's softmax backward: {worst_vjp:.2f}× "
              f"({verdict(worst_vjp, 2.0, higher_is_better=False)})")
        print(f"- fused loss within 1.2× of PyTorch's cross-entropy: {worst_fused:.2f}× "
              f"({verdict(worst_fused, 1.2, higher_is_better=False)})")


if __name__ == "__main__":
    main(sys.argv[1:])
