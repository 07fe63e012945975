"""``chainrule check``, and the report options and printing that ``check-jacobian``,
``check-layer`` and ``check-loss`` (:mod:`chainrule.cli.usercode`) share with it."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable

from chainrule import experiment
from chainrule.check.report import Report
from chainrule.cli.output import check_plot_path, note, result
from chainrule.cli.train import add_model_options
from chainrule.cli.usercode import (
    add_check_jacobian,
    add_check_layer,
    add_check_loss,
    check_jacobian_report,
    check_layer_report,
    check_loss_report,
)
from chainrule.explain import plots
from chainrule.io import files


def add_check(subparsers: argparse._SubParsersAction) -> None:
    defaults = experiment.TrainConfig()
    parser = subparsers.add_parser(
        "check", help="gradient-check a network and trace a failure to its layer",
        description="Check every gradient of the network that train builds (each layer in "
                    "isolation, the loss, and every parameter against the numeric gradient of "
                    "the loss) on a small standardised batch, in float64. Exit status 0 when "
                    "it passes, 1 when not.")
    add_model_options(parser, defaults, "the rows checked, the weights and the random "
                                         "directions and entries")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="rows of the dataset to check on (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=None, metavar="K",
                        help="check K random entries per parameter instead of all")
    parser.add_argument("--fast", action="store_true",
                        help="check the slope along a random direction first; the full check "
                             "runs only if it fails")
    add_report_options(parser)
    parser.set_defaults(handler=_check)


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--sweep``, ``--plot``: shared by check and check-jacobian."""
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="write the report as JSON to PATH (to stdout without PATH) "
                             "instead of the table")
    parser.add_argument("--sweep", action="store_true",
                        help="also sweep the step size and report the Taylor-remainder order")
    parser.add_argument("--plot", metavar="PATH",
                        help="draw analytic-vs-numeric error per check (log scale) to this "
                             "image, e.g. check.png (needs matplotlib)")


def check_report_paths(args: argparse.Namespace) -> None:
    """``--json PATH`` and ``--plot PATH`` must be writable before the check runs."""
    if args.json not in (None, "-"):
        files.check_output_path(args.json, "--json")
    if args.plot:
        check_plot_path(args.plot)


def _check(args: argparse.Namespace) -> int:
    check_report_paths(args)
    report = experiment.check_network(args.data, tuple(args.hidden), args.activation,
                                     args.seed, args.batch_size, sample=args.sample,
                                     fast=args.fast)
    return print_report(report, args)


def print_report(report: Report, args: argparse.Namespace) -> int:
    sweep = report.eps_sweep() if args.sweep else None
    if args.json is None:
        result(report)
        if sweep is not None:
            result(sweep)
    else:
        data = report.to_dict()
        if sweep is not None:
            data["eps_sweep"] = sweep.to_dict()
        text = json.dumps(data, indent=2, ensure_ascii=False)
        if args.json == "-":
            result(text)
        else:
            files.write_bytes_atomically(args.json, (text + "\n").encode("utf-8"))
            note(f"wrote {args.json}")
    if args.plot:
        plots.plot_check(report, args.plot)
        note(f"wrote {args.plot}")
    return 0 if report.passed else 1


def add_user_checks(subparsers: argparse._SubParsersAction) -> None:
    """``check-jacobian``, ``check-layer`` and ``check-loss`` (see
    :mod:`chainrule.cli.usercode`)."""
    for add, build in ((add_check_jacobian, check_jacobian_report),
                       (add_check_layer, check_layer_report),
                       (add_check_loss, check_loss_report)):
        parser = add(subparsers)
        add_report_options(parser)
        parser.set_defaults(handler=functools.partial(_user_check, build))


def _user_check(build: Callable[[argparse.Namespace], Report], args: argparse.Namespace) -> int:
    check_report_paths(args)
    return print_report(build(args), args)
