"""Shared by the benchmarks: interleaved timing, medians and spread, tables, machine facts.

On a shared, noisy machine absolute speeds drift from minute to minute; what holds is the
ratio of two systems timed in the same rounds. So every benchmark runs its systems in
interleaved rounds (the order rotating each round) and reports medians of per-round ratios.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np

THREADS = 2


def optional(name: str) -> ModuleType | None:
    """The module, or None when it is not installed (its peer is then skipped)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@contextlib.contextmanager
def limited_threads(threads: int = THREADS) -> Iterator[None]:
    """BLAS/OpenMP pools (threadpoolctl) and PyTorch's intra-op pool set to ``threads``."""
    threadpoolctl = optional("threadpoolctl")
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    limits = (threadpoolctl.threadpool_limits(threads) if threadpoolctl is not None
              else contextlib.nullcontext())
    try:
        with limits:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


def run_pinned(command: list[str], threads: int) -> None:
    """Run ``command`` in a child process whose thread pools all start with ``threads``
    threads, pinned to that many cores (Linux ``sched_setaffinity``): XLA's and OpenMP's pools
    are sized at start-up, and JAX 0.10's CPU runtime keeps several busy worker threads
    whatever ``XLA_FLAGS`` say."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads),
                   "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if threads == 1:
        environment["XLA_FLAGS"] = (environment.get("XLA_FLAGS", "")
                                    + " --xla_cpu_multi_thread_eigen=false").strip()
    pin = None
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[:threads]

        def pin() -> None:
            os.sched_setaffinity(0, cores)

    subprocess.run(command, check=True, env=environment, preexec_fn=pin)


class NullTerminal:
    """A write-only stdout that says it is a terminal: progress bars are drawn, into nothing."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def progress_bars_drawn() -> Iterator[None]:
    """Run with ``sys.stdout`` a terminal, so ``fit(verbose=2)`` pays for its bar."""
    saved, sys.stdout = sys.stdout, NullTerminal()
    try:
        yield
    finally:
        sys.stdout = saved


def interleaved(systems: dict[str, Callable[[], float]], rounds: int,
                settle: float = 0.2) -> dict[str, list[float]]:
    """Call every system once per round, the order rotating each round; each call returns the
    seconds it measured (see ``once`` and ``per_call``). Returns the seconds by system.

    Before each call the process sleeps ``settle`` seconds: OpenBLAS and OpenMP worker threads
    spin for a while after their last job, and on 2 cores the spinning pool of the previous
    system (NumPy's OpenBLAS, PyTorch's OpenMP) would otherwise starve the next one's.
    """
    names = list(systems)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settle)
            seconds[name].append(systems[name]())
    return seconds


def once(function: Callable[[], object]) -> Callable[[], float]:
    """A system for ``interleaved``: the wall time of one call of ``function``."""

    def timed() -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    return timed


def per_call(function: Callable[[], object], min_seconds: float = 0.02) -> Callable[[], float]:
    """A system for ``interleaved``: seconds per call of a fast ``function``, repeated for at
    least ``min_seconds`` (the count is fixed on the first call, after a warm-up call)."""
    count = 0

    def timed() -> float:
        nonlocal count
        if not count:
            function()
            start = time.perf_counter()
            while time.perf_counter() - start < min_seconds:
                function()
                count += 1
            count = max(count, 1)
        start = time.perf_counter()
        for _ in range(count):
            function()
        return (time.perf_counter() - start) / count

    return timed


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over rounds of ``numerator / denominator`` (both timed in the same round)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def ratio_spread(numerators: list[float], denominators: list[float]) -> str:
    """``"min–max"`` over rounds of ``numerator / denominator``: how far a median ratio's
    rounds disagree (on a noisy host, further than a goal's margin)."""
    return spread([a / b for a, b in zip(numerators, denominators, strict=True)], digits=2)


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    """``"min–max"`` of ``values * scale``."""
    return f"{min(values) * scale:,.{digits}f}–{max(values) * scale:,.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, first column left-aligned, the others right."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


def machine() -> str:
    """CPU model, cores, memory, OS, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name")), cpu)
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    for name, label in [("torch", "PyTorch"), ("sklearn", "scikit-learn"), ("numba", "numba"),
                        ("jax", "JAX"), ("optax", "optax")]:
        module = optional(name)
        versions.append(f"{label} {module.__version__}" if module else f"{label} not installed")
    return (f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} "
            f"{platform.release()}; {', '.join(versions)}")


def blas() -> list[str]:
    """One line per thread pool loaded in this process (threadpoolctl), plus OPENBLAS_* vars."""
    threadpoolctl = optional("threadpoolctl")
    if threadpoolctl is None:
        return ["threadpoolctl not installed: BLAS unknown"]
    lines = []
    for pool in threadpoolctl.threadpool_info():
        details = [pool.get("internal_api", "?"), pool.get("version") or "",
                   pool.get("architecture") or "", f"{pool.get('num_threads')} threads"]
        library = os.path.basename(pool.get("filepath", ""))
        lines.append(f"{' '.join(part for part in details if part)} ({library})")
    overrides = [f"{name}={os.environ[name]}" for name in (
        "OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")
        if name in os.environ]
    if overrides:
        lines.append("environment: " + " ".join(overrides))
    return lines
