"""``chainrule`` command line: parse arguments, build a config, call the library.

One module per group of subcommands (``train``; ``models``: evaluate, predict, export;
``explain``; ``check``; ``usercode``: check-jacobian, check-layer), each with an
``add_<name>(subparsers)`` that registers its parser and sets ``handler`` to a function
``(args) -> exit status``; ``app`` builds the parser and runs it; ``output`` is where results
and messages go. No logic lives only here: every handler calls the library.
"""

from chainrule.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
