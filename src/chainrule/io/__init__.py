"""Files: datasets in, model files in and out, export to PyTorch and ONNX, inference on files.

Imports ``chainrule.nn`` only; scikit-learn, mlxtend, torch and onnx are imported by the
function that needs them.
"""

from chainrule.io import datasets
from chainrule.io.export import to_onnx, to_torch
from chainrule.io.inference import evaluate_model, predictions_csv
from chainrule.io.serialization import load, save

__all__ = ["datasets", "evaluate_model", "load", "predictions_csv", "save", "to_onnx", "to_torch"]
