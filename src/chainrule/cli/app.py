"""The ``chainrule`` parser and entry point: one subcommand per module of this package, and
the exit statuses (0 ok or passed, 1 failed or diverged, 2 bad input, 3 the user's code
raised, 130 interrupted)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from chainrule._version import __version__
from chainrule.check.calls import UserCodeError
from chainrule.cli.check import add_check, add_user_checks
from chainrule.cli.explain import add_explain
from chainrule.cli.models import add_evaluate, add_export, add_predict
from chainrule.cli.output import StdoutError, note
from chainrule.cli.train import add_train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Build, train and verify neural networks trained by backpropagation.")
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_train(subparsers)
    add_evaluate(subparsers)
    add_predict(subparsers)
    add_export(subparsers)
    add_explain(subparsers)
    add_check(subparsers)
    add_user_checks(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chainrule`` and ``python -m chainrule``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with `>&-`: every result would be lost
        note(f"chainrule {args.command}: error: standard output is closed; the results are "
              "written there")
        return 2
    try:
        return args.handler(args)
    except FloatingPointError as error:  # the training diverged
        note(f"chainrule {args.command}: error: {error}")
        return 1
    except KeyboardInterrupt:  # Ctrl-C (train says what it kept itself)
        note(f"chainrule {args.command}: interrupted")
        return 130
    except UserCodeError as error:  # the user's own code (check-jacobian, check-layer) raised
        note(f"chainrule {args.command}: your code raised: {error}")
        return 3
    except BrokenPipeError:
        # Output piped into e.g. `head`, which stopped reading. Point stdout at devnull so the
        # interpreter's final flush does not print a second traceback (Python docs, SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except StdoutError as error:
        # Quiet the interpreter's final flush of what is left, as for a broken pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        note(f"chainrule {args.command}: error: cannot write the results to standard "
             f"output: {error}")
        return 1
    except (ValueError, ImportError, OSError) as error:
        note(f"chainrule {args.command}: error: {error}")
        return 2
