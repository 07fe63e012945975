"""Run the benchmarks: every ``benchmarks/bench_*.py`` (each ``main()`` prints one table), or
the ones named.

    python benchmarks/run.py                  # all of them
    python benchmarks/run.py training softmax # bench_training.py and bench_softmax.py

First it prints the machine, the date and the BLAS / thread pools (threadpoolctl), then each
benchmark's output under a heading; the total takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> dict[str, Path]:
    """``{"training": .../bench_training.py, ...}``, sorted by name."""
    return {path.stem.removeprefix("bench_"): path for path in sorted(HERE.glob("bench_*.py"))}


def load(path: Path):
    """Import a benchmark file as a module (``benchmarks/`` on the path for ``_common``)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def header() -> str:
    """Date, machine, load and thread pools, as the first lines of a report."""
    import numpy as np  # noqa: F401  (loads the BLAS that threadpoolctl then reports)
    from _common import blas, machine, optional

    optional("torch")  # its OpenMP/MKL pools are reported too when installed
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_average = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [f"date: {now}", f"machine: {machine()}",
             f"load average before the run (1, 5, 15 min): {load_average}", "thread pools:"]
    lines += [f"  - {line}" for line in blas()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    benchmarks = available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(benchmarks)}")
    args = parser.parse_args(argv)
    names = [name.removeprefix("bench_").removesuffix(".py") for name in args.names]
    unknown = [name for name in names if name not in benchmarks]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(benchmarks)}")

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    print(header(), flush=True)
    start = time.perf_counter()
    for name in names or list(benchmarks):
        print(f"\n## {name}\n", flush=True)
        began = time.perf_counter()
        load(benchmarks[name]).main()
        print(f"\n({name}: {time.perf_counter() - began:.0f} s)", flush=True)
    print(f"\ntotal: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
