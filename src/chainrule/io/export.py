"""Export for when users outgrow chainrule: PyTorch modules and ONNX graphs.

Both are optional extras, imported only when called: ``pip install torch==2.13.0`` (the
version chainrule is tested against) for ``to_torch``, ``pip install "chainrule[onnx]"`` (onnx and
onnxruntime) for ``to_onnx``.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chainrule.io.files import write_bytes_atomically
from chainrule.nn.layers import Dense, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from chainrule.nn.network import Sequential

if TYPE_CHECKING:
    import onnx
    import torch

__all__ = ["ONNX_OPSET", "onnx_model", "to_onnx", "to_torch"]

ONNX_OPSET = 17
# chainrule layer -> ONNX operator; torch.nn's classes have the chainrule names.
_ONNX_OPERATORS = {ReLU: "Relu", Tanh: "Tanh", Sigmoid: "Sigmoid", Softmax: "Softmax",
                   LogSoftmax: "LogSoftmax"}


def to_torch(model: Sequential, include_preprocessing: bool = False) -> torch.nn.Sequential:
    """An equivalent ``torch.nn.Sequential`` with copies of the weights, in the model's dtype.

    ``Dense`` (``y = x @ W + b``, ``W`` ``(n_in, n_out)``) becomes ``nn.Linear`` with
    ``weight = Wᵀ`` ``(n_out, n_in)``; ``Softmax``/``LogSoftmax`` act on ``dim=1``. Modules
    are named by layer index as in chainrule (``"0.weight"`` is ``"0.W"`` transposed).

    ``include_preprocessing=False``: the layers only, like ``model.forward`` — prepared inputs
    in, the last layer's output (logits for an ``mlp``) out, to fine-tune. ``True``: what
    ``predict_proba`` and the ONNX graph do — RAW inputs in, PROBABILITIES out: a frozen
    ``"scaling"`` module first (``(x - offset) / scale`` as a diagonal ``nn.Linear``, weight
    ``diag(1/scale)``, bias ``-offset/scale``; absent without a recorded scaling) and a
    ``"probabilities"`` ``nn.Softmax(dim=1)`` last on logits (a ``LogSoftmax`` last layer
    becomes ``nn.Softmax``, whose output is its ``exp``; after ``Softmax`` nothing is added).

    >>> from chainrule import mlp
    >>> to_torch(mlp(4, [8], 3, seed=0))  # doctest: +SKIP
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=3, bias=True)
    )
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError("to_torch needs PyTorch: pip install torch==2.13.0 (the version "
                          "chainrule is tested against)") from error
    dtype = getattr(torch, np.dtype(model.dtype).name)
    scaler = model.preprocessing
    if include_preprocessing and scaler is not None:
        scaling = torch.nn.Linear(len(scaler.offset), len(scaler.offset), dtype=dtype)
        with torch.no_grad():
            scaling.weight.copy_(torch.diag(torch.from_numpy(1 / scaler.scale)))
            scaling.bias.copy_(torch.from_numpy(-scaler.offset / scaler.scale))
        scaling.requires_grad_(False)
        named: list[tuple[str, torch.nn.Module]] = [("scaling", scaling)]
    else:
        named = []
    for index, layer in enumerate(model.layers):
        if type(layer) is Dense:
            n_in, n_out = layer.params["W"].shape
            linear = torch.nn.Linear(n_in, n_out, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.params["b"]))
            named.append((str(index), linear))
        elif type(layer) in (Softmax, LogSoftmax):
            named.append((str(index), getattr(torch.nn, type(layer).__name__)(dim=1)))
        elif type(layer) in _ONNX_OPERATORS:
            named.append((str(index), getattr(torch.nn, type(layer).__name__)()))
        else:
            raise ValueError(f"to_torch: layer {index} ({layer!r}) has no PyTorch equivalent")
    if include_preprocessing:
        last = model.layers[-1]
        if isinstance(last, LogSoftmax):
            named[-1] = (named[-1][0], torch.nn.Softmax(dim=1))  # exp(log_softmax) = softmax
        elif not isinstance(last, Softmax):
            named.append(("probabilities", torch.nn.Softmax(dim=1)))
    return torch.nn.Sequential(OrderedDict(named))


def onnx_model(model: Sequential, dtype: np.typing.DTypeLike | None = None) -> onnx.ModelProto:
    """An ONNX graph from RAW inputs ``input`` ``(N, n_in)`` to ``probabilities`` ``(N, C)``.

    The graph is the recorded preprocessing (``Sub`` offset, ``Div`` scale), each layer
    (``MatMul`` + ``Add`` for ``Dense``, then ``Relu``, ``Tanh``, ``Sigmoid``, ``Softmax``,
    ``LogSoftmax``), then what ``predict_proba`` does last: ``Softmax`` on logits, ``Exp``
    after ``LogSoftmax``, nothing after ``Softmax``. Everything is computed in ``dtype``
    (float32 or float64; default the model's). Class labels are stored in the model's
    metadata as JSON under ``"classes"``.
    """
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as error:
        raise ImportError('ONNX export needs the onnx package: pip install onnx, or pip install '
                          '"chainrule[onnx]" for onnx and onnxruntime (which runs the graph)'
                          ) from error
    dtype = np.dtype(model.dtype if dtype is None else dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"onnx_model: dtype must be float32 or float64, got {dtype}")
    n_in = model.input_width
    if n_in is None:
        raise ValueError("onnx_model: the model has no Dense layer, so no input width")
    nodes, initializers = [], []
    current = "input"

    def add(op: str, *inputs: str | np.ndarray, **attributes: int) -> None:
        """Append node ``op(current, *inputs)``; arrays become named initializers."""
        nonlocal current
        names = [current]
        for value in inputs:
            if isinstance(value, np.ndarray):
                names.append(f"{op.lower()}_{len(nodes)}_constant")
                initializers.append(numpy_helper.from_array(value.astype(dtype), names[-1]))
            else:
                names.append(value)
        output = f"{op.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(op, names, [output], **attributes))
        current = output

    if model.preprocessing is not None:
        add("Sub", np.asarray(model.preprocessing.offset))
        add("Div", np.asarray(model.preprocessing.scale))
    for index, layer in enumerate(model.layers):
        if type(layer) is Dense:
            add("MatMul", layer.params["W"])
            add("Add", layer.params["b"])
        elif type(layer) in (Softmax, LogSoftmax):
            add(_ONNX_OPERATORS[type(layer)], axis=-1)
        elif type(layer) in _ONNX_OPERATORS:
            add(_ONNX_OPERATORS[type(layer)])
        else:
            raise ValueError(f"onnx_model: layer {index} ({layer!r}) has no ONNX equivalent")
    last = type(model.layers[-1])
    if last is LogSoftmax:
        add("Exp")
    elif last is not Softmax:
        add("Softmax", axis=-1)
    nodes[-1].output[0] = "probabilities"

    element_type = helper.np_dtype_to_tensor_dtype(dtype)
    n_out = model.output_width()
    graph = helper.make_graph(
        nodes, "chainrule",
        [helper.make_tensor_value_info("input", element_type, ["N", n_in])],
        [helper.make_tensor_value_info("probabilities", element_type, ["N", n_out])],
        initializers)
    opsets = [helper.make_opsetid("", ONNX_OPSET)]
    # The oldest IR version that has the opset, not the installed onnx's newest: runtimes
    # refuse IR versions newer than they know (onnxruntime 1.16 reads up to 9).
    onnx_proto = helper.make_model(graph, producer_name="chainrule", opset_imports=opsets,
                                   ir_version=helper.find_min_ir_version_for(opsets))
    classes = None if model.classes is None else model.classes.tolist()
    helper.set_model_props(onnx_proto, {"classes": json.dumps(classes)})
    onnx.checker.check_model(onnx_proto, full_check=True)
    return onnx_proto


def to_onnx(model: Sequential, path: str | os.PathLike,
            dtype: np.typing.DTypeLike | None = None) -> Path:
    """Write ``onnx_model(model, dtype)`` to ``path`` (atomically); returns the path.

    Serving it: ``onnxruntime.InferenceSession(path).run(["probabilities"], {"input": X})``
    returns ``model.predict_proba(X)`` for raw ``X`` in ``dtype``.
    """
    path = Path(path)
    write_bytes_atomically(path, onnx_model(model, dtype).SerializeToString())
    return path
