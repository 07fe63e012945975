"""What ``fit`` shows while it trains, Keras-like: ``verbose`` 0 (nothing), 1 (one line per
epoch: loss, accuracy, validation metrics, time) or 2 (a progress bar per epoch, left on screen
with the same metrics). Output goes to standard output, as Keras's does.

The bar is ``tqdm.auto``'s: a widget in Jupyter when ipywidgets is installed, text otherwise
(without tqdm's warning about the missing widgets). tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

__all__ = ["VERBOSITY", "EpochReport", "in_jupyter", "is_terminal", "resolve_verbose",
           "tqdm_class"]

VERBOSITY = (0, 1, 2)


def resolve_verbose(verbose: int | str) -> int:
    """``"auto"``: 2 on a terminal or in a Jupyter kernel, 0 otherwise (tests, pipes, logs);
    an int must be one of ``VERBOSITY``."""
    if verbose == "auto":
        in_kernel = in_jupyter() and sys.stdout is not None  # None: closed (`>&-`)
        return 2 if in_kernel or is_terminal(sys.stdout) else 0
    if isinstance(verbose, bool) or verbose not in VERBOSITY:
        raise ValueError(f"verbose must be 0 (silent), 1 (a line per epoch), 2 (a progress bar) "
                         f"or 'auto'; got verbose={verbose!r}")
    return int(verbose)


def _format_metrics(metrics: dict[str, float]) -> str:
    """``loss: 0.1234 - accuracy: 0.9700`` (Keras's layout)."""
    return " - ".join(f"{name}: {value:.4f}" for name, value in metrics.items())


class EpochReport:
    """Reports one ``fit`` run at ``verbose`` 0, 1 or 2; ``note`` prints a closing line."""

    def __init__(self, verbose: int, epochs: int) -> None:
        self.verbose = verbose
        self.epochs = epochs
        self._bar = None
        self._start = 0.0

    def batches(self, epoch: int, batches: Sequence[int]) -> Sequence[int]:
        """The epoch's batch starts; opens its bar at verbose 2 and starts its clock."""
        self._start = time.perf_counter()
        if self.verbose == 2 and sys.stdout is not None:  # None: closed (`>&-`)
            # Not wrapping `batches`: tqdm closes such a bar as the loop ends, before the
            # epoch's validation metrics are known.
            self._bar = tqdm_class()(total=len(batches), desc=f"epoch {epoch + 1}/{self.epochs}",
                                unit="batch", leave=True, file=sys.stdout)
        return batches

    def batch_done(self, mean_loss: float) -> None:
        """One batch more, and the running mean training loss, on the bar."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss: {mean_loss:.4f}", refresh=False)
            self._bar.update()

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        """Leave the epoch's metrics and time on screen."""
        seconds = time.perf_counter() - self._start
        if self._bar is not None:
            self._bar.set_postfix_str(_format_metrics(metrics), refresh=False)  # close draws it
            self._bar.close()
            self._bar = None
        elif self.verbose == 1:
            print(f"epoch {epoch + 1}/{self.epochs} - {_format_metrics(metrics)} - "
                  f"{seconds:.2f} s", flush=True)

    def close(self) -> None:
        """Close a bar left open by an interrupted epoch."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def note(self, line: str) -> None:
        if self.verbose:
            print(line, flush=True)


def tqdm_class() -> type:
    """``tqdm.auto.tqdm``, imported now, without its warning when ipywidgets is missing."""
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():  # "IProgress not found": the text bar is used instead
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    return tqdm


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an open terminal (False for None: ``sys.stdout`` when closed)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (as tqdm.autonotebook tells)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
