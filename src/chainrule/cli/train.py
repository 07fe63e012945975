"""``chainrule train``: one training run (:func:`chainrule.experiment.run`) from the shell."""

from __future__ import annotations

import argparse
import contextlib
import sys

from chainrule import experiment
from chainrule.cli.output import check_plot_path, note, result
from chainrule.explain import plots
from chainrule.io import files
from chainrule.io.datasets import DATASET_NAMES
from chainrule.nn.network import ACTIVATIONS
from chainrule.nn.preprocessing import SCALINGS
from chainrule.nn.progress import VERBOSITY
from chainrule.nn.training import History


def add_model_options(parser: argparse.ArgumentParser, defaults: experiment.TrainConfig,
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


def add_train(subparsers: argparse._SubParsersAction) -> None:
    defaults = experiment.TrainConfig()
    parser = subparsers.add_parser(
        "train", help="train an MLP on a dataset and report test accuracy",
        description="Train a multi-layer perceptron (softmax cross-entropy on its logits) on a "
                    "stratified train/test split and print the test accuracy. With no "
                    "arguments: scikit-learn's digits, one hidden layer of 64 ReLU units, Adam.")
    add_model_options(parser, defaults, "the train/test (and validation) split, the weights "
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
        check_plot_path(args.plot)
    epochs = (f"{config.epochs} epochs" if config.epochs else
              f"about {experiment.STEP_BUDGET} steps (at least {experiment.MIN_EPOCHS} epochs)")
    note(f"training on {config.data}: hidden {list(config.hidden)} {config.activation}, "
         f"{config.optimizer} lr={config.lr}, {epochs}")
    verbose = 0 if args.quiet or sys.stderr is None else args.verbose
    if verbose is None:
        verbose = 2 if sys.stderr.isatty() else 1
    try:
        # fit reports on stdout, as Keras does; here stdout carries only the results.
        with contextlib.redirect_stdout(sys.stderr):
            run = experiment.run(config, verbose=verbose)
    except KeyboardInterrupt as interrupt:
        note(f"chainrule train: interrupted; {_kept(getattr(interrupt, 'history', None), args)}")
        return 130
    if verbose == 0:
        note(run.history.note)  # with verbose >= 1, fit has printed it
    result(run.summary())
    if args.out:
        run.model.save(args.out)
        note(f"saved the model to {args.out}")
    if args.plot:
        plots.plot_history(run.history, args.plot)
        note(f"wrote {args.plot}")
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
