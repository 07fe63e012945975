"""Training throughput against compiled peers, at 1 and 2 threads: ``chainrule.fit`` with its
numba kernels and with its NumPy ones, JAX ``jit`` (one step per call, and a whole epoch
under ``lax.scan``), ``torch.compile``, PyTorch eager and the GEMM floor: the step's matrix
products alone, by NumPy (OpenBLAS) and, compiled by XLA under ``lax.scan``, by JAX.

MLP 784-256-128-10 at batch 32, 128 and 512, and 784-1024-1024-10 at batch 128; ReLU,
softmax cross-entropy on integer labels, SGD (lr 0.01, momentum 0.9), float32, synthetic
data. Everyone shuffles and gathers each batch from the whole array every step: ``fit``
takes rows into a reused buffer, JAX indexes ``X[rows]`` inside the jitted step, PyTorch
indexes the tensor. ``fit`` runs as a user calls it (``verbose=0``: loss and accuracy kept
per batch, inputs checked); the JAX step keeps its loss on the device, its parameters and
optimizer state donated (its fastest path); the ``lax.scan`` epoch runs the full batches
only (the samples it did are what its rate counts). Each epoch of chainrule and JAX starts
from the same initial weights, copied in, with a new optimizer state. Each peer is warmed up
(compiled) before the timed rounds; a peer that is not installed is skipped with a note.

XLA and OpenMP size their thread pools when they start, so each thread count runs in its own
process, pinned to that many cores (``sched_setaffinity``: JAX 0.10's CPU runtime keeps
several busy worker threads whatever ``XLA_FLAGS`` say), with ``OMP_NUM_THREADS``/
``OPENBLAS_NUM_THREADS``, threadpoolctl, PyTorch's ``set_num_threads`` and, for 1 thread,
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``. numba's kernels are serial; one extra row
runs ``fit`` with a ``parallel=True`` SGD kernel (2 threads): its collision with OpenBLAS.
A second table times each matrix product of the step alone, NumPy's against XLA's, at batch
32 and on the 1024-1024 network: where the GEMM floors differ.

    python benchmarks/bench_compiled.py [--rounds 5] [--threads 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
    ratio_spread,
    run_pinned,
    verdict,
)

import chainrule as cr
from chainrule.nn import kernels

LEARNING_RATE, MOMENTUM, N_FEATURES, N_CLASSES = 0.01, 0.9, 784, 10
# (hidden widths, batch size, samples per timed epoch)
CONFIGS = [((256, 128), 128, 30_000), ((256, 128), 32, 15_000), ((256, 128), 512, 30_000),
           ((1024, 1024), 128, 10_000)]


def synthetic(n_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, N_FEATURES), dtype=np.float32)
    y = np.argmax(X[:, :64] @ rng.standard_normal((64, N_CLASSES)).astype(np.float32), axis=1)
    return X, y


def he_weights(hidden: tuple[int, ...], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The same initial ``(W, b)`` for every peer (chainrule's He-uniform ``mlp``)."""
    model = cr.mlp(N_FEATURES, hidden, N_CLASSES, seed=seed, dtype=np.float32)
    return [(layer.params["W"].copy(), layer.params["b"].copy()) for layer in model.layers
            if layer.params]


def chainrule_epoch(X: np.ndarray, y: np.ndarray, hidden: tuple[int, ...],
                    batch: int) -> Callable[[], None]:
    model = cr.mlp(N_FEATURES, hidden, N_CLASSES, seed=0, dtype=np.float32)
    initial = model.get_weights()

    def epoch() -> None:
        # The initial weights are copied in, as JAX's and PyTorch's epochs copy theirs from
        # he_weights: the He draw itself (13 ms for 784-1024-1024-10) is not training.
        model.set_weights(initial)
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(LEARNING_RATE, momentum=MOMENTUM), X, y,
               epochs=1, batch_size=batch, seed=0, verbose=0)

    return epoch


def with_kernels(compiled: object, function: Callable[[], None]) -> Callable[[], None]:
    """``function`` run with ``compiled`` as chainrule's kernels (None: the NumPy ones)."""

    def run() -> None:
        saved = kernels._compiled
        kernels._compiled = lambda: compiled
        try:
            function()
        finally:
            kernels._compiled = saved

    return run


def parallel_sgd_kernels() -> object:
    """chainrule's compiled kernels with the SGD step as a ``parallel=True`` ``prange`` loop."""
    import types

    import numba

    def sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay):
        for index in numba.prange(param.size):
            gradient = grad[index]
            if weight_decay:
                gradient = param[index] * weight_decay + gradient
            velocity[index] = velocity[index] * momentum + gradient
            param[index] -= velocity[index] * lr

    compiled = types.SimpleNamespace(**vars(kernels._compile()))
    compiled.sgd_step = numba.njit(parallel=True, error_model="numpy")(sgd_step)
    return compiled


def jax_systems(X: np.ndarray, y: np.ndarray, hidden: tuple[int, ...],
                batch: int) -> dict[str, Callable[[], None]]:
    import jax
    import jax.numpy as jnp
    import optax

    optimizer = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)
    X_device, y_device = jnp.asarray(X), jnp.asarray(y.astype(np.int32))

    def loss_of(params, inputs, labels):
        hidden_out = inputs
        for weights, bias in params[:-1]:
            hidden_out = jax.nn.relu(hidden_out @ weights + bias)
        weights, bias = params[-1]
        logits = hidden_out @ weights + bias
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def step(params, state, rows):
        loss, grads = jax.value_and_grad(loss_of)(params, X_device[rows], y_device[rows])
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    jit_step = jax.jit(step, donate_argnums=(0, 1))

    def scan_epoch(params, state, batches):
        def body(carry, rows):
            params, state, loss = step(*carry, rows)
            return (params, state), loss

        (params, state), losses = jax.lax.scan(body, (params, state), batches)
        return params, state, losses.mean()

    jit_scan_epoch = jax.jit(scan_epoch, donate_argnums=(0, 1))
    rng = np.random.default_rng(0)

    def fresh():
        params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in he_weights(hidden)]
        return params, optimizer.init(params)

    def epoch_of_steps() -> None:
        params, state = fresh()
        order = rng.permutation(len(X)).astype(np.int32)
        losses = []  # kept on the device: no read-back per step
        for begin in range(0, len(X), batch):
            params, state, loss = jit_step(params, state, order[begin:begin + batch])
            losses.append(loss)
        jax.block_until_ready((params, losses))

    n_full = len(X) // batch

    def epoch_scanned() -> None:
        params, state = fresh()
        order = rng.permutation(len(X)).astype(np.int32)[:n_full * batch]
        params, state, mean_loss = jit_scan_epoch(params, state, order.reshape(n_full, batch))
        jax.block_until_ready((params, mean_loss))

    return {"JAX jit step": epoch_of_steps,
            "JAX lax.scan epoch": (epoch_scanned, n_full * batch / len(X)),
            "JAX GEMM floor": jax_gemm_floor(X, hidden, batch)}


def jax_gemm_floor(X: np.ndarray, hidden: tuple[int, ...],
                   batch: int) -> tuple[Callable[[], None], float]:
    """``gemm_floor``'s matrix products compiled by XLA: one epoch of contiguous full batches
    under ``lax.scan``, each weight gradient carried out of the loop so none is dropped; and
    the share of the samples it runs."""
    import jax
    import jax.numpy as jnp

    weights = [jnp.asarray(w) for w, _ in he_weights(hidden)]
    n_full = len(X) // batch
    batches = jnp.asarray(X[:n_full * batch].reshape(n_full, batch, N_FEATURES))

    def products(weight_grads, inputs):
        activations = [inputs]
        for weight in weights:
            activations.append(activations[-1] @ weight)
        grad, new_grads = activations[-1], list(weight_grads)
        for layer in range(len(weights) - 1, -1, -1):
            new_grads[layer] = activations[layer].T @ grad
            if layer:
                grad = grad @ weights[layer].T
        return tuple(new_grads), None

    run = jax.jit(lambda: jax.lax.scan(products, tuple(map(jnp.zeros_like, weights)),
                                       batches)[0])

    def epoch() -> None:
        jax.block_until_ready(run())

    return epoch, n_full * batch / len(X)


def torch_systems(X: np.ndarray, y: np.ndarray, hidden: tuple[int, ...],
                  batch: int) -> dict[str, Callable[[], None]]:
    import torch

    inputs, targets = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

    def build():
        layers = []
        for weights, bias in he_weights(hidden):
            linear = torch.nn.Linear(*weights.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weights.T))
                linear.bias.copy_(torch.from_numpy(bias))
            layers += [linear, torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])

    def epoch_with(compiled: bool) -> Callable[[], None]:
        model = build()
        runnable = torch.compile(model) if compiled else model
        order_rng = np.random.default_rng(0)

        def epoch() -> None:
            step = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
            order = torch.from_numpy(order_rng.permutation(len(X)))
            total = 0.0
            for begin in range(0, len(X), batch):
                rows = order[begin:begin + batch]
                step.zero_grad()
                loss = torch.nn.functional.cross_entropy(runnable(inputs[rows]), targets[rows])
                loss.backward()
                step.step()
                total += loss.item()

        return epoch

    systems = {"PyTorch eager": epoch_with(False)}
    try:
        compiled_epoch = epoch_with(True)
        compiled_epoch()  # compiles (minutes are possible); fails here without a compiler
        systems["torch.compile"] = compiled_epoch
    except Exception as error:  # any backend failure: skip the row, say why
        print(f"note: torch.compile skipped ({type(error).__name__}: "
              f"{str(error).splitlines()[0][:120]})")
    return systems


def gemm_floor(X: np.ndarray, hidden: tuple[int, ...], batch: int) -> Callable[[], None]:
    """One epoch of only the step's matrix products (3 forward, 3 weight gradients, the input
    gradients of all but the first layer), every array preallocated."""
    widths = [N_FEATURES, *hidden, N_CLASSES]
    weights = [w for w, _ in he_weights(hidden)]
    weight_grads = [np.empty_like(w) for w in weights]
    activations = [np.empty((batch, width), np.float32) for width in widths[1:]]
    input_grads = [np.empty((batch, width), np.float32) for width in widths[1:-1]]

    def epoch() -> None:
        for begin in range(0, len(X), batch):
            inputs = [X[begin:begin + batch]]
            rows = len(inputs[0])
            for weight, out in zip(weights, activations, strict=True):
                inputs.append(np.matmul(inputs[-1], weight, out=out[:rows]))
            grad = inputs[-1]
            for layer in range(len(weights) - 1, -1, -1):
                np.matmul(inputs[layer].T, grad, out=weight_grads[layer])
                if layer:
                    grad = np.matmul(grad, weights[layer].T, out=input_grads[layer - 1][:rows])

    return epoch


def products(hidden: tuple[int, ...], batch: int, n_samples: int,
             has_jax: bool) -> dict[str, tuple[Callable[[], None], Callable[[], None] | None]]:
    """Each of the step's matrix products alone, over an epoch of contiguous batches of random
    operands: ``{name: (NumPy into a reused array, XLA under lax.scan or None)}``. XLA gets
    each weight matrix through ``lax.optimization_barrier`` in the loop's carry, so that no
    work on it (packing) can be hoisted out of the loop: in training it changes every step."""
    rng = np.random.default_rng(0)
    widths = [N_FEATURES, *hidden, N_CLASSES]
    n_batches = n_samples // batch
    weights = [w for w, _ in he_weights(hidden)]
    # per layer: its inputs and the gradients at its outputs, (n_batches, batch, width)
    inputs = [rng.standard_normal((n_batches, batch, width), dtype=np.float32)
              for width in widths[:-1]]
    grads = [rng.standard_normal((n_batches, batch, width), dtype=np.float32)
             for width in widths[1:]]
    found: dict = {}
    for layer, weight in enumerate(weights):
        n_in, n_out = weight.shape
        # (name, left operand per batch, right operand: a weight or one per batch, which to
        # transpose: "left", "right" or "")
        cases = [(f"layer {layer + 1} forward ({batch}, {n_in}) @ ({n_in}, {n_out})",
                  inputs[layer], weight, ""),
                 (f"layer {layer + 1} weight gradient ({batch}, {n_in})ᵀ @ ({batch}, {n_out})",
                  inputs[layer], grads[layer], "left")]
        if layer:
            cases.append((f"layer {layer + 1} input gradient ({batch}, {n_out}) @ "
                          f"({n_in}, {n_out})ᵀ", grads[layer], weight, "right"))
        for name, lefts, right, transposed in cases:
            found[name] = (_numpy_product(lefts, right, transposed),
                           _xla_product(lefts, right, transposed) if has_jax else None)
    return found


def _numpy_product(lefts: np.ndarray, right: np.ndarray,
                   transposed: str) -> Callable[[], None]:
    """``lefts[i] @ right`` (or ``right[i]``) for every batch ``i``, into one reused array."""
    rights = right if right.ndim == 3 else [right] * len(lefts)
    pairs = [(left.T if transposed == "left" else left,
              other.T if transposed == "right" else other)
             for left, other in zip(lefts, rights, strict=True)]
    out = np.empty((pairs[0][0].shape[0], pairs[0][1].shape[1]), np.float32)

    def epoch() -> None:
        for left, other in pairs:
            np.matmul(left, other, out=out)

    return epoch


def _xla_product(lefts: np.ndarray, right: np.ndarray, transposed: str) -> Callable[[], None]:
    """The same products by XLA, one ``lax.scan`` over the batches."""
    import jax
    import jax.numpy as jnp

    def product(left, other):
        return ((left.T if transposed == "left" else left)
                @ (other.T if transposed == "right" else other))

    shape = product(lefts[0], right[0] if right.ndim == 3 else right).shape
    if right.ndim == 3:
        def body(last, pair):
            return product(*pair), None

        run = jax.jit(lambda: jax.lax.scan(body, jnp.zeros(shape), (lefts, right))[0])
    else:
        def body(carry, left):
            weight = jax.lax.optimization_barrier(carry[0])
            return (weight, product(left, weight)), None

        start = (jnp.asarray(right), jnp.zeros(shape))
        run = jax.jit(lambda: jax.lax.scan(body, start, lefts)[0][1])

    def epoch() -> None:
        jax.block_until_ready(run())

    return epoch


def measure(threads: int, rounds: int, scale: float = 1.0) -> None:
    """This process's table: one row per configuration, at ``threads`` threads (``scale``
    multiplies the samples per epoch: 0.1 for a quick trial)."""
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    has_numba, has_jax = _optional("numba") is not None, _optional("jax") is not None
    compiled = kernels._compile() if has_numba else None
    notes = [] if has_numba else ["numba not installed: no numba rows"]
    if not has_jax:
        notes.append("jax/optax not installed: no JAX rows")
    if torch is None:
        notes.append("torch not installed: no PyTorch rows")
    rows, checks = [], []
    for hidden, batch, n_samples in CONFIGS:
        n_samples = max(batch, int(n_samples * scale))
        X, y = synthetic(n_samples)
        plain = chainrule_epoch(X, y, hidden, batch)
        systems: dict = {}
        if has_numba:
            systems["chainrule (numba)"] = with_kernels(compiled, plain)
        systems["chainrule (NumPy)"] = with_kernels(None, plain)
        if has_jax:
            systems.update(jax_systems(X, y, hidden, batch))
        if torch is not None and hidden == (256, 128) and batch == 128:
            systems.update(torch_systems(X, y, hidden, batch))
        if has_numba and threads > 1 and hidden == (256, 128) and batch == 128:
            systems["chainrule (numba, parallel SGD kernel)"] = with_kernels(
                parallel_sgd_kernels(), plain)
        systems["GEMM floor"] = gemm_floor(X, hidden, batch)
        fractions = {name: 1.0 for name in systems}  # share of the samples an epoch runs
        for name, system in list(systems.items()):
            if isinstance(system, tuple):
                systems[name], fractions[name] = system
        with limited_threads(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for system in systems.values():
                system()  # warm-up: compiles JAX's step, numba's kernels, torch's graph
            seconds = interleaved({name: once(system) for name, system in systems.items()},
                                  rounds)
        rate = {name: [n_samples * fractions[name] / t for t in times]
                for name, times in seconds.items()}
        ours = "chainrule (numba)" if has_numba else "chainrule (NumPy)"
        label = f"784-{'-'.join(map(str, hidden))}-10, batch {batch}"
        cells = [label] + [f"{statistics.median(rate[name]):,.0f}" if name in rate else "–"
                           for name in COLUMNS]
        speedups = {}
        for peer in ("JAX jit step", "JAX lax.scan epoch", "GEMM floor"):
            if peer in rate:
                speedups[peer] = median_ratio(rate[ours], rate[peer])
        if has_numba and "JAX jit step" in rate:
            speedups["NumPy vs JAX jit"] = median_ratio(rate["chainrule (NumPy)"],
                                                        rate["JAX jit step"])
        if "JAX jit step" in rate:
            speedups["JAX jit of floor"] = median_ratio(rate["JAX jit step"], rate["GEMM floor"])
            speedups["floor vs JAX floor"] = median_ratio(rate["GEMM floor"],
                                                          rate["JAX GEMM floor"])
        cells += [f"{speedups[key]:.2f}×" if key in speedups else "–" for key in RATIOS]
        rows.append(cells)
        if "JAX jit step" in speedups:
            per_round = ratio_spread(rate[ours], rate["JAX jit step"])
            # Three decimals: at parity, 0.998 shown as 1.00 would read as met.
            checks.append(f"{label}: {ours} ÷ JAX jit step {speedups['JAX jit step']:.3f}× "
                          f"(rounds {per_round}×; {verdict(speedups['JAX jit step'], 1.0)})")
        if hidden == (256, 128) and batch == 128 and threads == 1:
            checks.append(f"{label}: share of the GEMM floor {speedups['GEMM floor']:.0%} "
                          f"({verdict(speedups['GEMM floor'], 0.85)})")
        if "JAX GEMM floor" in rate:  # each step against its own library's matrix products
            checks.append(f"{label}: share of its own GEMM floor: {ours} "
                          f"{speedups['GEMM floor']:.0%}, JAX jit step "
                          f"{median_ratio(rate['JAX jit step'], rate['JAX GEMM floor']):.0%}")
        for name in systems:
            if name not in COLUMNS:
                checks.append(f"{label}: {name} {statistics.median(rate[name]):,.0f} samples/s"
                              f", {median_ratio(rate[name], rate[ours]):.2f}× {ours}")
    header = ["network, batch", *COLUMNS, *RATIO_HEADERS]
    print(f"### {threads} thread{'s' if threads > 1 else ''}\n")
    print(f"Samples per second (medians of {rounds} interleaved rounds); ratios are medians of "
          "per-round ratios\n")
    print(markdown_table(header, rows))
    for line in notes:
        print(f"\nnote: {line}")
    print("\nTargets and extra rows:")
    print("\n".join(f"- {line}" for line in checks), flush=True)
    product_table(threads, rounds, scale, has_jax)


# The configurations whose matrix products are timed one by one: where NumPy's floor trails
# XLA's most.
PRODUCT_CONFIGS = [((256, 128), 32, 15_000), ((1024, 1024), 128, 10_000)]


def product_table(threads: int, rounds: int, scale: float, has_jax: bool) -> None:
    """µs per batch of each matrix product of the step, NumPy (OpenBLAS) against XLA."""
    rows = []
    for hidden, batch, n_samples in PRODUCT_CONFIGS:
        n_samples = max(batch, int(n_samples * scale))
        found = products(hidden, batch, n_samples, has_jax)
        systems = {(name, library): once(epoch) for name, pair in found.items()
                   for library, epoch in zip(("NumPy", "XLA"), pair, strict=True) if epoch}
        with limited_threads(threads):
            for system in systems.values():
                system()  # warm-up: compiles XLA's loops
            seconds = interleaved(systems, rounds)
        micros = {key: [t / (n_samples // batch) * 1e6 for t in times]
                  for key, times in seconds.items()}
        totals = {library: sum(statistics.median(micros[name, library]) for name in found)
                  for library in ("NumPy", "XLA") if (next(iter(found)), library) in micros}
        network = f"784-{'-'.join(map(str, hidden))}-10"
        for name in found:
            numpy_us = statistics.median(micros[name, "NumPy"])
            xla_us = statistics.median(micros[name, "XLA"]) if has_jax else None
            rows.append([f"{network}: {name}", f"{numpy_us:,.1f}",
                         f"{xla_us:,.1f}" if xla_us else "–",
                         f"{median_ratio(micros[name, 'NumPy'], micros[name, 'XLA']):.2f}×"
                         if xla_us else "–"])
        rows.append([f"{network}: all {len(found)}", f"{totals['NumPy']:,.1f}",
                     *([f"{totals['XLA']:,.1f}", f"{totals['NumPy'] / totals['XLA']:.2f}×"]
                       if "XLA" in totals else ["–", "–"])])
    print(f"\nEach matrix product alone, µs per batch (medians of {rounds} interleaved rounds; "
          "XLA under lax.scan, the weights through an optimization barrier):\n")
    print(markdown_table(["product", "NumPy (OpenBLAS)", "XLA", "NumPy ÷ XLA time"], rows),
          flush=True)


COLUMNS = ["chainrule (numba)", "chainrule (NumPy)", "JAX jit step", "JAX lax.scan epoch",
           "PyTorch eager", "torch.compile", "GEMM floor", "JAX GEMM floor"]
RATIOS = ["JAX jit step", "JAX lax.scan epoch", "NumPy vs JAX jit", "GEMM floor",
          "JAX jit of floor", "floor vs JAX floor"]
RATIO_HEADERS = ["chainrule ÷ JAX jit", "chainrule ÷ JAX scan", "NumPy kernels ÷ JAX jit",
                 "chainrule share of floor", "JAX jit share of floor",
                 "GEMM floor ÷ JAX's"]


def _optional(name: str):
    from _common import optional

    return optional(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="a tenth of the samples (trial)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.child:
        measure(args.threads[0], args.rounds, 0.1 if args.quick else 1.0)
        return
    for threads in args.threads:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", "--rounds",
                   str(args.rounds), "--threads", str(threads)] + ["--quick"] * args.quick
        run_pinned(command, threads)
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
