"""``chainrule evaluate``, ``predict`` and ``export``: a saved model file at work."""

from __future__ import annotations

import argparse

from chainrule.cli.output import note, result
from chainrule.io import datasets, export, files, inference, serialization
from chainrule.io.datasets import DATASET_NAMES


def add_evaluate(subparsers: argparse._SubParsersAction) -> None:
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
    result(f"accuracy: {accuracy:.4f}  loss: {loss:.4f}  ({len(y)} samples)")
    return 0


def add_predict(subparsers: argparse._SubParsersAction) -> None:
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
        note(f"wrote {len(X)} predictions to {args.out}")
    else:
        result("\n".join(str(label) for label in model.predict(X).tolist()))
    return 0


def add_export(subparsers: argparse._SubParsersAction) -> None:
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
    note(f"wrote {args.onnx}")
    return 0
