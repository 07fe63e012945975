"""Where the command line writes: results on stdout, messages on stderr, checked output paths."""

from __future__ import annotations

import sys

from chainrule.explain import plots
from chainrule.io import files


class StdoutError(Exception):
    """Writing the results to standard output failed (a full disk, a closed pipe's peer)."""


def result(value: object) -> None:
    """Print ``value`` on stdout, where the results go; failing to is a ``StdoutError``."""
    try:
        print(value)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise StdoutError(error.strerror or str(error)) from None


def note(message: str) -> None:
    """A message for the user on stderr; none when stderr is closed (``2>&-``), never on
    stdout, which carries the results."""
    if sys.stderr is not None:
        print(message, file=sys.stderr)


def check_plot_path(path: str) -> None:
    plots.check_plot_path(path)
    files.check_output_path(path, "--plot")
