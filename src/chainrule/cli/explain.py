"""``chainrule explain``: the chain rule with the user's numbers (:mod:`chainrule.explain`)."""

from __future__ import annotations

import argparse
import re

from chainrule import experiment
from chainrule.cli.output import check_plot_path, note, result
from chainrule.explain import backprop, plots
from chainrule.explain.derivation import Derivation
from chainrule.io import serialization

NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf$")


def add_explain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="write out backpropagation step by step with your numbers",
        description="Work the chain rule with numbers: softmax + cross-entropy for your logits "
                    "and target (through the Jacobian, by the shortcut A - T, and numerically), "
                    "or with --network the layer-by-layer backpropagation table of one sample.")
    # Negative numbers in scientific notation (--logits 1 -1e4) are values, not options.
    parser._negative_number_matcher = NEGATIVE_NUMBER
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--logits", type=float, nargs="+", action="append", metavar="Z",
                      help="the logits Z, e.g. --logits 1.75 1.75; repeat for a batch, one "
                           "derivation per row: --logits 2 1 0.1 --logits 0 0 5")
    what.add_argument("--network", action="store_true",
                      help="a tiny network (Dense 64→4, Sigmoid, Dense 4→10, Softmax, "
                           "cross-entropy) on one digits image, or the --model given")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target", type=float, nargs="+", action="append", metavar="T",
                        help="target probabilities, e.g. --target 0 1; once for every row, "
                             "or repeated, one per --logits")
    target.add_argument("--label", type=int, nargs="+", metavar="K",
                        help="target class index, e.g. --label 1; one for every row, or one "
                             "per --logits: --label 0 2")
    parser.add_argument("--model", metavar="MODEL",
                        help="with --network: a model file written by train --out instead of "
                             "the tiny network")
    parser.add_argument("--data", default=None, metavar="NAME|PATH",
                        help="with --model: the dataset the sample comes from, the one the "
                             "model was trained on (default: digits)")
    parser.add_argument("--sample", type=int, default=0,
                        help="with --network: which row of the dataset (default: %(default)s)")
    parser.add_argument("--format", choices=["text", "markdown", "latex"], default="text",
                        help="output format (default: %(default)s)")
    parser.add_argument("--plot", metavar="PATH",
                        help="also draw a heat map of the softmax Jacobian (with --network: of "
                             "each layer's gradients) to this image, e.g. jacobian.png "
                             "(needs matplotlib)")
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    if args.logits is not None:
        if args.target is None and args.label is None:
            raise ValueError("--logits needs --target T... or --label K")
        if args.model:
            raise ValueError("--model goes with --network, not --logits")
        derivations = _explain_logits(args)
        draw = plots.plot_softmax_jacobian
    else:
        if args.target is not None or args.label is not None:
            raise ValueError("--network takes the sample's own label; use --sample to pick it")
        if args.model:
            model = serialization.load(args.model)
            try:
                x, label = experiment.dataset_example(model, args.data or "digits",
                                                      args.sample)
            except ValueError as error:
                if args.data is not None:
                    raise
                raise ValueError(f"{error} — the sample comes from --data, which defaults to "
                                 "digits: give the dataset the model was trained on, e.g. "
                                 "--data wine") from None
        else:
            model, x, label = experiment.digits_example(args.sample)
        derivations = [backprop.explain_backprop(model, backprop.loss_for(model), x, label)]
        draw = plots.plot_gradients
    if args.plot:
        if len(derivations) > 1:
            raise ValueError("--plot draws one derivation; give one --logits")
        check_plot_path(args.plot)
    rendering = {"text": str, "markdown": Derivation.to_markdown,
                 "latex": Derivation.to_latex}[args.format]
    result("\n\n".join(rendering(derivation) for derivation in derivations))
    if args.plot:
        draw(derivations[0], args.plot)
        note(f"wrote {args.plot}")
    return 0 if all(derivation.agrees for derivation in derivations) else 1


def _explain_logits(args: argparse.Namespace) -> list[Derivation]:
    """``explain --logits``: one derivation per ``--logits`` given."""
    rows = args.logits
    if len({len(row) for row in rows}) > 1:
        raise ValueError(f"every --logits needs the same number of classes; got "
                         f"{', '.join(str(len(row)) for row in rows)}")
    n_classes = len(rows[0])
    if args.label is not None:
        outside = [label for label in args.label if not 0 <= label < n_classes]
        if outside:
            raise ValueError(f"--label {outside[0]} is not a class of --logits, which has "
                             f"{n_classes} classes (labels 0 to {n_classes - 1})")
        target = args.label[0] if len(args.label) == 1 else args.label
    else:
        for given in args.target:
            if len(given) != n_classes:
                typed = " ".join(f"{value:g}" for value in given)
                values = f"{len(given)} value{'' if len(given) == 1 else 's'}"
                raise ValueError(f"--target needs one probability per class: --logits has "
                                 f"{n_classes} classes, --target {typed} has {values}")
        target = args.target[0] if len(args.target) == 1 else args.target
    derivations = backprop.explain_softmax_cross_entropy(rows[0] if len(rows) == 1 else rows,
                                                         target)
    return derivations if isinstance(derivations, list) else [derivations]
