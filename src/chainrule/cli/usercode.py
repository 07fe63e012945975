"""``chainrule check-jacobian``, ``check-layer`` and ``check-loss``: the user's own code, from
the shell.

Each subcommand is an ``add_<name>(subparsers)`` that registers its arguments and a
``<name>_report(args)`` that loads the user's code and returns the
:class:`~chainrule.check.report.Report`; :mod:`chainrule.cli.check` adds the report
options and prints it. Exit status: 0 passed, 1 failed, 2 usage error, 3 the user's code raised.
"""

from __future__ import annotations

import argparse
import json

from chainrule.check import usercode
from chainrule.check.report import Report

__all__ = ["add_check_jacobian", "add_check_layer", "add_check_loss", "check_jacobian_report",
           "check_layer_report", "check_loss_report"]


def add_check_jacobian(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``check-jacobian``; returns its parser."""
    parser = subparsers.add_parser(
        "check-jacobian", help="check your own Jacobian function against a reference",
        description="Import MODULE:FUNCTION (MODULE a .py file or an importable module; "
                    "FUNCTION may be Class.method), call it at random points and compare with "
                    "the numeric Jacobian of the reference; on failure, name the classic "
                    "mistakes it matches and the fix. Exit status 0 when it passes, 1 when "
                    "not, 2 for a usage error, 3 when your code raised.")
    parser.add_argument("function", metavar="MODULE:FUNCTION",
                        help="e.g. my_net.py:softmax_prime or my_net.py:Softmax.jacobian")
    parser.add_argument("--of", required=True, choices=sorted(usercode.REFERENCES),
                        help="the function whose Jacobian FUNCTION claims to compute")
    parser.add_argument("--size", type=int, default=4, help="vector length (default: "
                                                            "%(default)s)")
    parser.add_argument("--batch", type=int, default=None, metavar="B",
                        help="pass a batch (B, size) and expect per-row Jacobians "
                             "(B, size, size) (default: one vector)")
    parser.add_argument("--takes", choices=["input", "output"], default="input",
                        help="FUNCTION is given the pre-activation z (input) or the activation "
                             "f(z) (output) (default: %(default)s)")
    parser.add_argument("--elementwise", action="store_true",
                        help="FUNCTION returns the element-wise derivative (the shape of z), "
                             "compared with the Jacobian's diagonal")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random points "
                                                            "(default: %(default)s)")
    return parser


def check_jacobian_report(args: argparse.Namespace) -> Report:
    """What ``check-jacobian`` checks: the user's function against the reference."""
    function = usercode.load_function(args.function)
    return usercode.check_jacobian_of(function, args.of, args.size, args.batch, args.takes,
                                         args.seed, elementwise=args.elementwise)


def add_check_layer(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``check-layer``; returns its parser."""
    parser = subparsers.add_parser(
        "check-layer", help="check your own layer class: backward against forward",
        description="Import MODULE:CLASS, build it (with no arguments, or --args), and check "
                    "its backward (input and parameter gradients) against central "
                    "differences of its forward at random inputs, at several batch sizes. "
                    "Works with the common conventions (returned or stored results, "
                    "backward(grad) or backward(grad, input), W/dW attributes, params/grads "
                    "dicts). Exit status 0 when it passes, 1 when not, 2 for a usage error, "
                    "3 when your code raised.")
    parser.add_argument("layer", metavar="MODULE:CLASS", help="e.g. my_net.py:Softmax")
    parser.add_argument("--in", dest="n_in", type=int, required=True, metavar="N",
                        help="input width (features)")
    parser.add_argument("--args", type=_keyword_arguments, default=None, metavar="JSON",
                        help='keyword arguments of the class, e.g. \'{"n_in": 4, "n_out": 3}\'')
    parser.add_argument("--batch", type=int, default=None, metavar="B",
                        help="rows of the checked input (default: 5, or 6 when N is 5)")
    parser.add_argument("--layout", choices=["rows", "columns"], default="rows",
                        help="rows: x is (B, N); columns: x is (N, B) (default: %(default)s)")
    parser.add_argument("--per-sample", action="store_true",
                        help="the layer takes one sample (N,) at a time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs "
                                                            "(default: %(default)s)")
    return parser


def _keyword_arguments(text: str) -> dict:
    """``--args``: a JSON object of keyword arguments."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error.msg}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"n_in\": 4}}', got "
                                         f"{text}")
    return value


def check_layer_report(args: argparse.Namespace) -> Report:
    """What ``check-layer`` checks: the user's layer class, built from ``--args``."""
    layer_class = usercode.load_object(args.layer)
    if not callable(layer_class):
        raise ValueError(f"{args.layer} is not a class (a {type(layer_class).__name__})")
    return usercode.check_layer_of(layer_class, args.n_in, args.args, args.batch, args.layout,
                                   args.per_sample, args.seed)


def add_check_loss(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``check-loss``; returns its parser."""
    parser = subparsers.add_parser(
        "check-loss", help="check your own loss: its gradient against central differences",
        description="Import MODULE:NAME, a loss class (built with no arguments, or --args) or "
                    "function, and check its gradient with respect to the output against "
                    "central differences of the loss, at a random output and random targets. "
                    "Works with the common conventions (forward/backward storing dinputs, "
                    "targets first or second, softmax and cross-entropy in one, "
                    "loss, dx = f(x, y), or a function with --gradient). Exit status 0 when it "
                    "passes, 1 when not, 2 for a usage error, 3 when your code raised.")
    parser.add_argument("loss", metavar="MODULE:NAME",
                        help="e.g. my_net.py:Loss_CategoricalCrossentropy or my_net.py:mse")
    parser.add_argument("--classes", type=int, required=True, metavar="C",
                        help="outputs per sample (classes)")
    parser.add_argument("--output", choices=usercode.OUTPUTS, default="probabilities",
                        help="what the loss takes: softmax probabilities, logits (a loss with "
                             "softmax inside) or any values (default: %(default)s)")
    parser.add_argument("--targets", choices=usercode.TARGETS, default="labels",
                        help="class labels (B,), one-hot rows (B, C) or values (B, C) "
                             "(default: %(default)s)")
    parser.add_argument("--gradient", default=None, metavar="NAME",
                        help="the function giving the loss's gradient, for a loss function "
                             "that returns only the loss: NAME in the same module, or "
                             "MODULE:NAME (e.g. mse_prime)")
    parser.add_argument("--args", type=_keyword_arguments, default=None, metavar="JSON",
                        help="keyword arguments of the class")
    parser.add_argument("--batch", type=int, default=None, metavar="B",
                        help="rows of the output (default: 5, or 6 when C is 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random output and "
                                                            "targets (default: %(default)s)")
    return parser


def check_loss_report(args: argparse.Namespace) -> Report:
    """What ``check-loss`` checks: the user's loss, at a random output and targets."""
    loss = usercode.load_object(args.loss)
    gradient = None
    if args.gradient is not None:
        spec = (args.gradient if ":" in args.gradient
                else f"{args.loss.rpartition(':')[0]}:{args.gradient}")
        gradient = usercode.load_function(spec)
    return usercode.check_loss_of(loss, args.classes, args.args, args.batch, args.output,
                                  args.targets, gradient, args.seed)
