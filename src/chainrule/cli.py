"""``chainrule`` command line: parse arguments, build a config, call the library.

Each subcommand is a ``_add_<name>(subparsers)`` that registers its parser and sets
``handler`` to a function ``(args) -> exit status``; no logic lives only here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from chainrule import cli_usercode, experiment
from chainrule._version import __version__
from chainrule.check.calls import UserCodeError
from chainrule.check.report import Report
from chainrule.explain import backprop, plots
from chainrule.explain.derivation import Derivation
from chainrule.io import datasets, export, files, inference, serialization
from chainrule.io.datasets import DATASET_NAMES
from chainrule.nn.network import ACTIVATIONS
from chainrule.nn.preprocessing import SCALINGS
from chainrule.nn.progress import VERBOSITY
from chainrule.nn.training import History

__all__ = ["main"]

_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf$")


def _add_model_options(parser: argparse.ArgumentParser, defaults: experiment.TrainConfig,
                       seeds: str) -> None:
    """``--data``, ``--hidden``, ``--activation``, ``--seed`` (seeding ``seeds``): shared by
    train and check."""
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
                        help=f"seed for {seeds} (default: %(default)s)")


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    defaults = experiment.TrainConfig()
    parser = subparsers.add_parser(
        "train", help="train an MLP on a dataset and report test accuracy",
        description="Train a multi-layer perceptron (softmax cross-entropy on its logits) on a "
                    "stratified train/test split and print the test accuracy. With no "
                    "arguments: scikit-learn's digits, one hidden layer of 64 ReLU units, Adam.")
    _add_model_options(parser, defaults, "the train/test (and validation) split, the weights "
                                         "and the shuffling")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="passes over the training split (default: enough for about "
                             f"{experiment.STEP_BUDGET} gradient steps, at least "
                             f"{experiment.MIN_EPOCHS} epochs: 30 on digits, 300 on iris)")
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
                        help="early stopping: hold out --validation-fraction of the training "
                             "split, stop after this many epochs without improvement of its "
                             "loss and keep the best epoch's weights (default: off)")
    parser.add_argument("--validation-fraction", type=float,
                        default=defaults.validation_fraction,
                        help="with --patience: the fraction of the training split held out "
                             "for early stopping (default: %(default)s)")
    parser.add_argument("--verbose", type=int, choices=VERBOSITY, default=None,
                        help="0 nothing per epoch, 1 one line per epoch, 2 a progress bar per "
                             "epoch, left on screen with the epoch's metrics (default: 2 on a "
                             "terminal, else 1); on stderr")
    parser.add_argument("--quiet", action="store_true", help="the same as --verbose 0")
    parser.add_argument("--out", metavar="MODEL",
                        help="save the trained model (weights, classes, scaling) to this "
                             "safetensors file, e.g. model.safetensors")
    parser.add_argument("--plot", metavar="PATH",
                        help="draw loss and accuracy per epoch, training and held-out, to this "
                             "image, e.g. curves.png (needs matplotlib)")
    parser.add_argument("--checkpoint", metavar="MODEL",
                        help="while training, save the model to this safetensors file after "
                             "every epoch that improves the held-out loss (kept on Ctrl-C)")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    config = experiment.TrainConfig(
        data=args.data, hidden=tuple(args.hidden), activation=args.activation,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        seed=args.seed, test_size=args.test_size,
        scaling=None if args.scaling == "none" else args.scaling, dtype=args.dtype,
        patience=args.patience, checkpoint=args.checkpoint,
        validation_fraction=args.validation_fraction)
    # Fail before training, not after.
    for option in ("out", "checkpoint"):
        if getattr(args, option):
            files.check_output_path(getattr(args, option), f"--{option}")
    if args.plot:
        _check_plot_path(args.plot)
    epochs = (f"{config.epochs} epochs" if config.epochs else
              f"about {experiment.STEP_BUDGET} steps (at least {experiment.MIN_EPOCHS} epochs)")
    _note(f"training on {config.data}: hidden {list(config.hidden)} {config.activation}, "
          f"{config.optimizer} lr={config.lr}, {epochs}")
    verbose = 0 if args.quiet or sys.stderr is None else args.verbose
    if verbose is None:
        verbose = 2 if sys.stderr.isatty() else 1
    try:
        # fit reports on stdout, as Keras does; here stdout carries only the results.
        with contextlib.redirect_stdout(sys.stderr):
            result = experiment.run(config, verbose=verbose)
    except KeyboardInterrupt as interrupt:
        _note(f"chainrule train: interrupted; {_kept(getattr(interrupt, 'history', None), args)}")
        return 130
    if verbose == 0:
        _note(result.history.note)  # with verbose >= 1, fit has printed it
    _result(result.summary())
    if args.out:
        result.model.save(args.out)
        _note(f"saved the model to {args.out}")
    if args.plot:
        plots.plot_history(result.history, args.plot)
        _note(f"wrote {args.plot}")
    return 0


def _kept(history: History | None, args: argparse.Namespace) -> str:
    """What an interrupted ``train`` leaves behind, for its last message."""
    if history is None:
        return "training had not started; nothing was saved"
    done = f"{len(history.epoch)} epoch(s) completed"
    unsaved = f"; {args.out} was not written" if args.out else ""
    if args.checkpoint and history.best_epoch is not None:
        return (f"{done}; {args.checkpoint} holds the best model, from epoch "
                f"{history.best_epoch + 1} (held-out loss "
                f"{history.val_loss[history.best_epoch]:.4f}){unsaved}")
    hint = "nothing was saved yet" if args.checkpoint else "nothing was saved (--checkpoint " \
        "PATH keeps the best model while training)"
    return f"{done}; {hint}{unsaved}"


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="accuracy and loss of a saved model on a dataset",
        description="Load a model saved by 'train --out' and report its accuracy and mean "
                    "cross-entropy on a dataset of RAW inputs (the model applies its recorded "
                    "scaling).")
    parser.add_argument("model", metavar="MODEL", help="model file written by train --out")
    parser.add_argument("--data", required=True, metavar="NAME|PATH",
                        help=f"dataset: {', '.join(DATASET_NAMES)}, or a .npz, .csv or MNIST "
                             "IDX file/folder, labels in the classes the model was trained on")
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    model = serialization.load(args.model)
    X, y = datasets.load(args.data)
    loss, accuracy = inference.evaluate_model(model, X, y)
    _result(f"accuracy: {accuracy:.4f}  loss: {loss:.4f}  ({len(y)} samples)")
    return 0


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict the class of each row of a file",
        description="Load a model saved by 'train --out' and predict a class for each row of "
                    "RAW inputs: one label per line on standard output, or with --out a CSV "
                    "with the label and every class probability.")
    parser.add_argument("model", metavar="MODEL", help="model file written by train --out")
    parser.add_argument("inputs", metavar="INPUT",
                        help=".npz (array X) or .csv of raw inputs; a CSV may keep a trailing "
                             "label column, which is ignored")
    parser.add_argument("--out", metavar="FILE.csv",
                        help="write CSV columns label,proba_<class>... instead of printing")
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    if args.out:
        files.check_output_path(args.out, "--out")
    model = serialization.load(args.model)
    X = datasets.load_inputs(args.inputs, model.input_width)
    if args.out:
        serialization.write_bytes_atomically(
            args.out, inference.predictions_csv(model, X).encode())
        _note(f"wrote {len(X)} predictions to {args.out}")
    else:
        _result("\n".join(str(label) for label in model.predict(X).tolist()))
    return 0


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a saved model to ONNX",
        description=f"Write an ONNX graph (opset {export.ONNX_OPSET}) from raw inputs 'input' "
                    "to class 'probabilities', the recorded scaling included, for onnxruntime "
                    "and other engines. Needs: pip install \"chainrule[onnx]\".")
    parser.add_argument("model", metavar="MODEL", help="model file written by train --out")
    parser.add_argument("--onnx", required=True, metavar="FILE.onnx", help="where to write")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="precision of the graph's input and arithmetic "
                             "(default: the model's)")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    files.check_output_path(args.onnx, "--onnx")
    model = serialization.load(args.model)
    export.to_onnx(model, args.onnx, dtype=args.dtype)
    _note(f"wrote {args.onnx}")
    return 0


def _add_explain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="write out backpropagation step by step with your numbers",
        description="Work the chain rule with numbers: softmax + cross-entropy for your logits "
                    "and target (through the Jacobian, by the shortcut A - T, and numerically), "
                    "or with --network the layer-by-layer backpropagation table of one sample.")
    # Negative numbers in scientific notation (--logits 1 -1e4) are values, not options.
    parser._negative_number_matcher = _NEGATIVE_NUMBER
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
        _check_plot_path(args.plot)
    rendering = {"text": str, "markdown": Derivation.to_markdown,
                 "latex": Derivation.to_latex}[args.format]
    _result("\n\n".join(rendering(derivation) for derivation in derivations))
    if args.plot:
        draw(derivations[0], args.plot)
        _note(f"wrote {args.plot}")
    return 0 if all(derivation.agrees for derivation in derivations) else 1


def _explain_logits(args: argparse.Namespace) -> list[Derivation]:
    """``explain --logits``: one derivation per ``--logits`` given."""
    rows = args.logits
    if len({len(row) for row in rows}) > 1:
        raise ValueError(f"every --logits needs the same number of classes; got "
                         f"{', '.join(str(len(row)) for row in rows)}")
    if args.label is not None:
        target = args.label[0] if len(args.label) == 1 else args.label
    else:
        target = args.target[0] if len(args.target) == 1 else args.target
    derivations = backprop.explain_softmax_cross_entropy(rows[0] if len(rows) == 1 else rows,
                                                         target)
    return derivations if isinstance(derivations, list) else [derivations]


def _add_check(subparsers: argparse._SubParsersAction) -> None:
    defaults = experiment.TrainConfig()
    parser = subparsers.add_parser(
        "check", help="gradient-check a network and trace a failure to its layer",
        description="Check every gradient of the network that train builds (each layer in "
                    "isolation, the loss, and every parameter against the numeric gradient of "
                    "the loss) on a small standardised batch, in float64. Exit status 0 when "
                    "it passes, 1 when not.")
    _add_model_options(parser, defaults, "the rows checked, the weights and the random "
                                         "directions and entries")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="rows of the dataset to check on (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=None, metavar="K",
                        help="check K random entries per parameter instead of all")
    parser.add_argument("--fast", action="store_true",
                        help="check the slope along a random direction first; the full check "
                             "runs only if it fails")
    _add_report_options(parser)
    parser.set_defaults(handler=_check)


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--sweep``, ``--plot``: shared by check and check-jacobian."""
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="write the report as JSON to PATH (to stdout without PATH) "
                             "instead of the table")
    parser.add_argument("--sweep", action="store_true",
                        help="also sweep the step size and report the Taylor-remainder order")
    parser.add_argument("--plot", metavar="PATH",
                        help="draw analytic-vs-numeric error per check (log scale) to this "
                             "image, e.g. check.png (needs matplotlib)")


def _check_report_paths(args: argparse.Namespace) -> None:
    """``--json PATH`` and ``--plot PATH`` must be writable before the check runs."""
    if args.json not in (None, "-"):
        files.check_output_path(args.json, "--json")
    if args.plot:
        _check_plot_path(args.plot)


def _check_plot_path(path: str) -> None:
    plots.check_plot_path(path)
    files.check_output_path(path, "--plot")


def _check(args: argparse.Namespace) -> int:
    _check_report_paths(args)
    report = experiment.check_network(args.data, tuple(args.hidden), args.activation,
                                     args.seed, args.batch_size, sample=args.sample,
                                     fast=args.fast)
    return _print_report(report, args)


def _print_report(report: Report, args: argparse.Namespace) -> int:
    sweep = report.eps_sweep() if args.sweep else None
    if args.json is None:
        _result(report)
        if sweep is not None:
            _result(sweep)
    else:
        data = report.to_dict()
        if sweep is not None:
            data["eps_sweep"] = sweep.to_dict()
        text = json.dumps(data, indent=2, ensure_ascii=False)
        if args.json == "-":
            _result(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
            _note(f"wrote {args.json}")
    if args.plot:
        plots.plot_check(report, args.plot)
        _note(f"wrote {args.plot}")
    return 0 if report.passed else 1


def _add_user_checks(subparsers: argparse._SubParsersAction) -> None:
    """``check-jacobian`` and ``check-layer`` (see :mod:`chainrule.cli_usercode`)."""
    for add, build in ((cli_usercode.add_check_jacobian, cli_usercode.check_jacobian_report),
                       (cli_usercode.add_check_layer, cli_usercode.check_layer_report)):
        parser = add(subparsers)
        _add_report_options(parser)
        parser.set_defaults(handler=functools.partial(_user_check, build))


def _user_check(build: Callable[[argparse.Namespace], Report], args: argparse.Namespace) -> int:
    _check_report_paths(args)
    return _print_report(build(args), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Build, train and verify neural networks trained by backpropagation.")
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_predict(subparsers)
    _add_export(subparsers)
    _add_explain(subparsers)
    _add_check(subparsers)
    _add_user_checks(subparsers)
    return parser


class _StdoutError(Exception):
    """Writing the results to standard output failed (a full disk, a closed pipe's peer)."""


def _result(value: object) -> None:
    """Print ``value`` on stdout, where the results go; failing to is a ``_StdoutError``."""
    try:
        print(value)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise _StdoutError(error.strerror or str(error)) from None


def _note(message: str) -> None:
    """A message for the user on stderr; none when stderr is closed (``2>&-``), never on
    stdout, which carries the results."""
    if sys.stderr is not None:
        print(message, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chainrule`` and ``python -m chainrule``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with `>&-`: every result would be lost
        _note(f"chainrule {args.command}: error: standard output is closed; the results are "
              "written there")
        return 2
    try:
        return args.handler(args)
    except FloatingPointError as error:  # the training diverged
        _note(f"chainrule {args.command}: error: {error}")
        return 1
    except KeyboardInterrupt:  # Ctrl-C (train says what it kept itself)
        _note(f"chainrule {args.command}: interrupted")
        return 130
    except UserCodeError as error:  # the user's own code (check-jacobian, check-layer) raised
        _note(f"chainrule {args.command}: your code raised: {error}")
        return 3
    except BrokenPipeError:
        # Output piped into e.g. `head`, which stopped reading. Point stdout at devnull so the
        # interpreter's final flush does not print a second traceback (Python docs, SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except _StdoutError as error:
        # Quiet the interpreter's final flush of what is left, as for a broken pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _note(f"chainrule {args.command}: error: cannot write the results to standard "
              f"output: {error}")
        return 1
    except (ValueError, ImportError, OSError) as error:
        _note(f"chainrule {args.command}: error: {error}")
        return 2
