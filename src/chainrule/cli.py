"""``chainrule`` command line: parse arguments, build a config, call the library.

Each subcommand is a ``_add_<name>(subparsers)`` that registers its parser and sets
``handler`` to a function ``(args) -> exit status``; no logic lives only here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chainrule import __version__, experiment
from chainrule.datasets import DATASET_NAMES
from chainrule.network import ACTIVATIONS
from chainrule.preprocessing import SCALINGS

__all__ = ["main"]


def _add_model_options(parser: argparse.ArgumentParser, defaults: experiment.TrainConfig) -> None:
    """``--data``, ``--hidden``, ``--activation``, ``--seed``: shared by train and check."""
    parser.add_argument("--data", default=defaults.data, metavar="NAME|PATH",
                        help=f"dataset: {', '.join(DATASET_NAMES)}, or a .npz (arrays X, y), "
                             ".csv (last column the label) or MNIST IDX file/folder "
                             "(default: %(default)s)")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(defaults.hidden),
                        metavar="N", help="hidden layer widths, e.g. --hidden 64 32 "
                                          "(default: %(default)s)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS),
                        default=defaults.activation, help="hidden activation "
                                                          "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed for the split, the weights and the shuffling "
                             "(default: %(default)s)")


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    defaults = experiment.TrainConfig()
    parser = subparsers.add_parser(
        "train", help="train an MLP on a dataset and report test accuracy",
        description="Train a multi-layer perceptron (softmax cross-entropy on its logits) on a "
                    "stratified train/test split and print the test accuracy. With no "
                    "arguments: scikit-learn's digits, one hidden layer of 64 ReLU units, Adam.")
    _add_model_options(parser, defaults)
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="passes over the training split (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="samples per gradient step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help="learning rate (default: %(default)s)")
    parser.add_argument("--optimizer", choices=experiment.OPTIMIZERS,
                        default=defaults.optimizer,
                        help="adam, or sgd with momentum 0.9 (default: %(default)s)")
    parser.add_argument("--scaling", choices=[*SCALINGS, "none"], default=defaults.scaling,
                        help="input scaling fitted on the training split and recorded with the "
                             "model (default: %(default)s)")
    parser.add_argument("--test-size", type=float, default=defaults.test_size,
                        help="fraction held out for testing (default: %(default)s)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default=defaults.dtype,
                        help="precision of weights and training (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=None,
                        help="stop after this many epochs without improvement of the held-out "
                             "loss, keeping the best weights (default: off)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    config = experiment.TrainConfig(
        data=args.data, hidden=tuple(args.hidden), activation=args.activation,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        seed=args.seed, test_size=args.test_size,
        scaling=None if args.scaling == "none" else args.scaling, dtype=args.dtype,
        patience=args.patience)
    print(f"training on {config.data}: hidden {list(config.hidden)} {config.activation}, "
          f"{config.optimizer} lr={config.lr}, {config.epochs} epochs", file=sys.stderr)
    result = experiment.run(config, progress=not args.quiet)
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Build, train and verify neural networks trained by backpropagation.")
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chainrule`` and ``python -m chainrule``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"chainrule {args.command}: error: {error}", file=sys.stderr)
        return 2
