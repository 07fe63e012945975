"""Softmax backward and the fused loss, B = 256, float32, 1 thread: against PyTorch and JAX.

For C in {10, 100, 1000, 4096, 10000}, per call:

- ``softmax_vjp(a, g)``: ``a ⊙ (g - ⟨g, a⟩)``, the C×C Jacobian never built, and
  ``Softmax.backward(g)`` (the same product behind the layer's shape check), against
  PyTorch's native softmax backward kernel (``torch._softmax_backward_data``);
- the fused loss as training runs it: ``SoftmaxCrossEntropy`` forward + backward (loss and
  ``∂E/∂z = (p - onehot) / B``), against JAX's jitted ``value_and_grad`` of the mean
  ``optax.softmax_cross_entropy_with_integer_labels`` (inputs already on the device) and
  against ``F.cross_entropy`` forward + ``.backward()``;
- the naive per-sample loop a first attempt writes: build each ``J = diag(a) - a aᵀ``, then
  ``Jᵀ g`` — O(C²) per sample (from C = 1000 on timed on 16 rows and scaled to 256; not run
  at C = 10000, where one J is 400 MB).

The measurement runs in a child process pinned to one core (see ``_common.run_pinned``),
with chainrule's numba kernels when numba is installed and its NumPy ones otherwise (one
column each when both can run). A peer that is not installed is skipped with a note.

    python benchmarks/bench_softmax.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import numpy as np
from _common import (
    interleaved,
    limited_threads,
    markdown_table,
    median_ratio,
    optional,
    per_call,
    run_pinned,
    verdict,
)

import chainrule as cr
from chainrule.nn import kernels

BATCH, CLASSES, NAIVE_ROWS, NAIVE_LARGEST = 256, (10, 100, 1000, 4096, 10000), 16, 4096
# The C each target is set at (issue 15): the softmax backward at 100, 1000 and 10000, the
# fused loss at every C.
TARGET_CLASSES = {"softmax_vjp": (100, 1000, 10000), "Softmax.backward": (100, 1000, 10000)}


def target_classes(system: str) -> tuple[int, ...]:
    """The C the target of ``system`` (e.g. ``"softmax_vjp (numba)"``) is set at."""
    return TARGET_CLASSES.get(system.split(" (")[0], CLASSES)


def naive_vjp(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One explicit Jacobian per sample, then a matrix-vector product."""
    out = np.empty_like(g)
    for row in range(len(a)):
        out[row] = cr.softmax_jacobian(a[row]).T @ g[row]
    return out


def on_kernels(compiled: object, function):
    """``function`` run with ``compiled`` as chainrule's kernels (None: the NumPy ones)."""

    def run():
        saved = kernels._compiled
        kernels._compiled = lambda: compiled
        try:
            return function()
        finally:
            kernels._compiled = saved

    return run


def systems_for(n_classes: int, rng: np.random.Generator, torch, jax_modules,
                compiled: object) -> dict:
    logits = rng.normal(scale=2.0, size=(BATCH, n_classes)).astype(np.float32)
    probabilities = cr.softmax(logits)
    upstream = rng.normal(size=(BATCH, n_classes)).astype(np.float32)
    labels = rng.integers(0, n_classes, BATCH)
    loss = cr.SoftmaxCrossEntropy()
    layer = cr.Softmax()
    layer.forward(logits)

    def fused() -> np.ndarray:
        loss.forward(logits, labels)
        return loss.backward()

    systems = {}
    backends = {"numba": compiled} if compiled is not None else {}
    backends["NumPy"] = None
    for name, backend in backends.items():
        # The kernels are switched once per round, around the timed calls, not per call.
        systems[f"softmax_vjp ({name})"] = on_kernels(
            backend, per_call(lambda: cr.softmax_vjp(probabilities, upstream)))
        systems[f"Softmax.backward ({name})"] = on_kernels(
            backend, per_call(lambda: layer.backward(upstream)))
        systems[f"SoftmaxCrossEntropy fwd+bwd ({name})"] = on_kernels(backend, per_call(fused))
    if torch is not None:
        probabilities_t, upstream_t = torch.from_numpy(probabilities), torch.from_numpy(upstream)
        logits_t = torch.from_numpy(logits).requires_grad_()
        labels_t = torch.from_numpy(labels)

        def torch_cross_entropy() -> None:
            logits_t.grad = None
            torch.nn.functional.cross_entropy(logits_t, labels_t).backward()

        systems["torch softmax backward"] = per_call(lambda: torch._softmax_backward_data(
            upstream_t, probabilities_t, -1, torch.float32))
        systems["torch cross_entropy fwd+bwd"] = per_call(torch_cross_entropy)
    if jax_modules is not None:
        jax, optax = jax_modules
        value_and_grad = jax.jit(jax.value_and_grad(
            lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean()))
        logits_j, labels_j = jax.numpy.asarray(logits), jax.numpy.asarray(labels)
        systems["JAX jit cross-entropy fwd+bwd"] = per_call(
            lambda: jax.block_until_ready(value_and_grad(logits_j, labels_j)))
    if n_classes <= NAIVE_LARGEST:
        # The naive loop is 100-7000x slower: one call per round, and from C = 1000 on it runs
        # on the first NAIVE_ROWS samples only, its time scaled to the batch.
        rows = BATCH if n_classes < 1000 else NAIVE_ROWS
        naive = per_call(lambda: naive_vjp(probabilities[:rows], upstream[:rows]),
                         min_seconds=0.0)
        systems["naive Jacobian loop"] = lambda: naive() * BATCH / rows
    return systems


def _micro(median: dict, name: str) -> str:
    return f"{1e6 * median[name]:,.1f}" if name in median else "–"


def _ratio(seconds: dict, worst: dict, n_classes: int, name: str, peer: str) -> str:
    """The median per-round ratio ``name / peer`` (also kept in ``worst`` if the largest
    at the C its target names)."""
    if name not in seconds or peer not in seconds:
        return "–"
    value = median_ratio(seconds[name], seconds[peer])
    if n_classes in target_classes(name):
        worst[(name, peer)] = max(worst.get((name, peer), 0.0), value)
    return f"{value:.2f}×"


def measure(rounds: int) -> None:
    torch = optional("torch")
    jax, optax = optional("jax"), optional("optax")
    jax_modules = (jax, optax) if jax is not None and optax is not None else None
    compiled = kernels._compile() if optional("numba") is not None else None
    ours = "numba" if compiled is not None else "NumPy"
    rng = np.random.default_rng(0)
    rows, worst = [], {}
    for n_classes in CLASSES:
        systems = systems_for(n_classes, rng, torch, jax_modules, compiled)
        with limited_threads(1):
            seconds = interleaved(systems, rounds)
        median = {name: statistics.median(times) for name, times in seconds.items()}
        micro = functools.partial(_micro, median)
        ratio = functools.partial(_ratio, seconds, worst, n_classes)
        vjp, backward, fused = (f"softmax_vjp ({ours})", f"Softmax.backward ({ours})",
                                f"SoftmaxCrossEntropy fwd+bwd ({ours})")
        rows.append([
            f"{n_classes}", micro(vjp), micro(backward), micro("softmax_vjp (NumPy)"),
            micro("torch softmax backward"), ratio(vjp, "torch softmax backward"),
            ratio(backward, "torch softmax backward"),
            micro(fused), micro("SoftmaxCrossEntropy fwd+bwd (NumPy)"),
            micro("JAX jit cross-entropy fwd+bwd"), ratio(fused, "JAX jit cross-entropy fwd+bwd"),
            micro("torch cross_entropy fwd+bwd"), ratio(fused, "torch cross_entropy fwd+bwd"),
            micro("naive Jacobian loop").split(".")[0], ratio("naive Jacobian loop", vjp)])

    header = [
        "C", f"softmax_vjp µs ({ours})", f"Softmax.backward µs ({ours})",
        "softmax_vjp µs (NumPy)", "torch softmax bwd µs", "vjp / torch",
        "Softmax.backward / torch", f"fused loss µs ({ours})", "fused loss µs (NumPy)",
        "JAX jit CE µs", "fused / JAX", "torch CE µs", "fused / torch", "naive loop µs",
        "naive / vjp"]
    print(f"Softmax backward and the fused loss, B = {BATCH}, float32, 1 thread, medians of "
          f"{rounds} interleaved rounds; ratios are medians of per-round ratios\n")
    print(markdown_table(header, rows))
    for name, note in [("torch", torch), ("jax/optax", jax_modules), ("numba", compiled)]:
        if note is None:
            print(f"\nnote: {name} not installed: its columns are empty")
    targets = [(f"softmax_vjp ({ours})", "torch softmax backward", 1.0),
               (f"Softmax.backward ({ours})", "torch softmax backward", 1.0),
               (f"SoftmaxCrossEntropy fwd+bwd ({ours})", "JAX jit cross-entropy fwd+bwd", 1.0)]
    lines = [f"{name} ≤ {bound:.1f}× {peer} (worst of C = "
             f"{', '.join(map(str, target_classes(name)))}): "
             f"{worst[(name, peer)]:.2f}× "
             f"({verdict(worst[(name, peer)], bound, higher_is_better=False)})"
             for name, peer, bound in targets if (name, peer) in worst]
    if lines:
        print("\nTargets:")
        print("\n".join(f"- {line}" for line in lines))


def main(argv: list[str] | None = None) -> None:
    """Print one table: microseconds per call (medians) and the ratios, by C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.child:
        measure(args.rounds)
        return
    run_pinned([sys.executable, str(Path(__file__).resolve()), "--child", "--rounds",
                str(args.rounds)], threads=1)


if __name__ == "__main__":
    main(sys.argv[1:])
