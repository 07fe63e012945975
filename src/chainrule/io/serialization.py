"""Model files: weights in safetensors, everything else as JSON metadata. Never pickle.

A model file holds one tensor per parameter, named by its key (``"0.W"``, ``"0.b"``, ...),
the recorded preprocessing as ``"preprocessing.offset"`` / ``"preprocessing.scale"``, and
string metadata (JSON inside) with the format version, the chainrule version, the dtype, the
architecture (layer types and sizes, in order), the class labels and the preprocessing kind.
Loading parses that data and rebuilds the layers by name: no code in the file is ever run.

>>> import tempfile, pathlib
>>> from chainrule import mlp
>>> model = mlp(4, [8], 3, seed=0)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
>>> _ = save(model, path)
>>> load(path)
Sequential(Dense(4→8), ReLU(), Dense(8→3); 67 parameters, float64, no input scaling)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from chainrule._version import __version__
from chainrule.io.files import write_bytes_atomically
from chainrule.io.tensorfile import TensorFile, open_regular
from chainrule.nn.layers import Dense, Layer, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from chainrule.nn.network import Sequential
from chainrule.nn.preprocessing import Scaler

__all__ = [
    "FORMAT_VERSION",
    "SAVABLE_LAYERS",
    "load",
    "save",
    "write_bytes_atomically",
]

FORMAT = "chainrule-model"
FORMAT_VERSION = 1
SAVABLE_LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, Sigmoid, Tanh, ReLU, Softmax, LogSoftmax)}
_DTYPES = ("float16", "float32", "float64")
_CLASS_KINDS = "biufU"  # bool, int, uint, float, str: each round-trips through JSON exactly
_OFFSET, _SCALE = "preprocessing.offset", "preprocessing.scale"
# Class labels: strings of at most this many characters (a label is a name, not a document).
MAX_LABEL_CHARS = 1000


def save(model: Sequential, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` in safetensors format, atomically; returns the path.

    Weights, dtype, architecture, ``model.classes`` and ``model.preprocessing`` are stored,
    so ``load(path)`` predicts on raw inputs exactly like ``model``. Only the layers in
    ``SAVABLE_LAYERS`` can be saved; any other layer is a ``ValueError``.
    """
    tensors, metadata = _encode(model)
    path = Path(path)
    # Refuse what load would refuse, before the file is replaced.
    plan = _plan(Path("save"), metadata,
                 {key: (tensor.dtype, tensor.shape) for key, tensor in tensors.items()})
    _check_preprocessing_values(Path("save"), plan, tensors)
    write_bytes_atomically(path, safetensors.numpy.save(tensors, metadata=metadata))
    return path


def load(path: str | os.PathLike) -> Sequential:
    """Read a model written by ``save``; its ``predict``/``predict_proba`` take RAW inputs.

    Raises ``FileNotFoundError`` for a missing file and a ``ValueError`` naming the file for
    anything that is not an intact chainrule model file of a format version this chainrule
    reads (a pickle, a truncated file, missing or misshapen tensors, a newer format).
    """
    path = Path(path)
    with open_regular(path) as file:
        try:
            layout = TensorFile.parse(file, path)
            plan = _plan(path, layout.metadata, {key: (dtype, shape) for key, (dtype, shape, _, _)
                                                 in layout.tensors.items()})
            tensors = {key: layout.read(file, key) for key in layout.tensors}
            layout.check_unchanged(file)
        except OSError as error:  # e.g. EIO, or a file on a vanished network share
            raise ValueError(f"{path}: cannot be read: {error.strerror or error}") from None
    _check_preprocessing_values(path, plan, tensors)
    return _build(plan, tensors)


def _encode(model: Sequential) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` for ``model``; a ``ValueError`` for what cannot be saved."""
    architecture = []
    for index, layer in enumerate(model.layers):
        name = type(layer).__name__
        if SAVABLE_LAYERS.get(name) is not type(layer):
            raise ValueError(f"save: layer {index} ({layer!r}, type {type(layer).__qualname__})"
                             f" cannot be saved; model files hold only the layers "
                             f"{', '.join(SAVABLE_LAYERS)}")
        entry: dict[str, Any] = {"type": name}
        if isinstance(layer, Dense):
            entry["n_in"], entry["n_out"] = (int(size) for size in layer.params["W"].shape)
        architecture.append(entry)
    tensors = {key: np.ascontiguousarray(param) for key, param in model.named_parameters()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "chainrule_version": __version__,
        "dtype": np.dtype(model.dtype).name,
        "architecture": json.dumps(architecture),
        "classes": json.dumps(_encode_classes(model.classes)),
        "preprocessing": json.dumps(None),
    }
    scaler = model.preprocessing
    if scaler is not None:
        if not isinstance(scaler, Scaler):
            raise ValueError(f"save: model.preprocessing must be a chainrule.Scaler or None, "
                             f"got {type(scaler).__name__}")
        metadata["preprocessing"] = json.dumps({"kind": str(scaler.kind)})
        tensors[_OFFSET] = np.ascontiguousarray(scaler.offset, dtype=np.float64)
        tensors[_SCALE] = np.ascontiguousarray(scaler.scale, dtype=np.float64)
    return tensors, metadata


def _encode_classes(classes: np.ndarray | None) -> dict[str, Any] | None:
    """``{"dtype": "<i8", "values": [0, 1, 2]}``: the values and the dtype to restore them."""
    if classes is None:
        return None
    classes = np.asarray(classes)
    if classes.dtype.kind == "O" and all(isinstance(value, str) for value in classes.flat):
        classes = classes.astype(str)
    if classes.ndim != 1 or classes.dtype.kind not in _CLASS_KINDS:
        raise ValueError(f"save: model.classes must be a 1-D array of numbers, booleans or "
                         f"strings, got dtype {classes.dtype} and shape {classes.shape}")
    return {"dtype": classes.dtype.str, "values": classes.tolist()}


@dataclass
class _Plan:
    """What a file's metadata describes, checked against its tensors' declared shapes."""

    architecture: list[tuple[str, int, int]]  # (layer type, n_in, n_out; 0, 0 if no Dense)
    dtype: np.dtype
    preprocessing: str | None
    classes: np.ndarray | None


def _plan(path: Path, metadata: dict[str, str],
          declared: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> _Plan:
    """Check ``metadata`` and the tensors' declared ``(dtype, shape)``; allocates nothing
    the file's size does not bound."""
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: a safetensors file but not a chainrule model (its metadata "
                         f"has no format {FORMAT!r}); write model files with chainrule.save")
    version = metadata.get("format_version", "")
    if not (version.isascii() and version.isdigit()):
        raise ValueError(f"{path}: invalid format_version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"{path}: model file format version {version} was written by a newer "
                         f"chainrule ({metadata.get('chainrule_version', '?')}); this one "
                         f"({__version__}) reads versions up to {FORMAT_VERSION}: "
                         "upgrade chainrule")
    fields = {key: _json_field(path, metadata, key)
              for key in ("architecture", "classes", "preprocessing")}
    dtype = metadata.get("dtype")
    if dtype not in _DTYPES:
        raise ValueError(f"{path}: dtype must be one of {_DTYPES}, got {dtype!r}")
    dtype = np.dtype(dtype)
    architecture, expected = _architecture(path, fields["architecture"], dtype)
    preprocessing = fields["preprocessing"]
    input_width = next((n_in for name, n_in, _ in architecture if name == "Dense"), None)
    if preprocessing is not None:
        if not isinstance(preprocessing, dict) or not isinstance(preprocessing.get("kind"), str):
            raise ValueError(f"{path}: invalid preprocessing {preprocessing!r}")
        offset_shape = declared.get(_OFFSET, (None, ()))[1]
        if len(offset_shape) != 1:
            raise ValueError(f"{path}: tensor {_OFFSET} must be a vector, got shape "
                             f"{offset_shape}")
        n_features = offset_shape[0]
        expected |= {_OFFSET: ((n_features,), np.dtype(np.float64)),
                     _SCALE: ((n_features,), np.dtype(np.float64))}
        _check_tensors(path, declared, expected)
        if input_width is not None and input_width != n_features:
            raise ValueError(f"{path}: preprocessing has {n_features} features, "
                             f"the first Dense layer takes {input_width}")
    _check_tensors(path, declared, expected)
    classes = _decode_classes(path, fields["classes"])
    if classes is not None and input_width is not None:
        n_outputs = input_width
        for name, _, n_out in architecture:
            n_outputs = n_out if name == "Dense" else n_outputs
        if len(classes) != n_outputs:
            raise ValueError(f"{path}: {len(classes)} class labels for {n_outputs} "
                             "network outputs")
    return _Plan(architecture, dtype, preprocessing and preprocessing["kind"], classes)


def _check_preprocessing_values(path: Path, plan: _Plan, tensors: dict[str, np.ndarray]) -> None:
    if plan.preprocessing is not None and not (
            np.all(np.isfinite(tensors[_OFFSET])) and np.all(np.isfinite(tensors[_SCALE]))
            and np.all(tensors[_SCALE] != 0)):
        raise ValueError(f"{path}: preprocessing offset and scale must be finite, "
                         "scale nonzero")


def _build(plan: _Plan, tensors: dict[str, np.ndarray]) -> Sequential:
    """The ``Sequential`` a checked plan describes, holding the file's tensors."""
    layers: list[Layer] = []
    for index, (name, _, _) in enumerate(plan.architecture):
        if name != "Dense":
            layers.append(SAVABLE_LAYERS[name]())
            continue
        layer = Dense(1, 1, dtype=plan.dtype)  # no random initialisation of the real size
        layer.params = {"W": tensors[f"{index}.W"], "b": tensors[f"{index}.b"]}
        layer.grads = {key: np.zeros_like(value) for key, value in layer.params.items()}
        layers.append(layer)
    model = Sequential(layers)
    if plan.preprocessing is not None:
        model.preprocessing = Scaler(plan.preprocessing, tensors[_OFFSET], tensors[_SCALE])
    model.classes = plan.classes
    return model


def _json_field(path: Path, metadata: dict[str, str], key: str) -> Any:
    if key not in metadata:
        raise ValueError(f"{path}: metadata {key!r} is missing")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON: {error}") from None
    except RecursionError:
        raise ValueError(f"{path}: metadata {key!r} is nested too deeply") from None


def _architecture(
    path: Path, architecture: Any, dtype: np.dtype
) -> tuple[list[tuple[str, int, int]], dict[str, tuple[tuple[int, ...], np.dtype]]]:
    """``[(type, n_in, n_out)]`` of the layers, and the ``{key: (shape, dtype)}`` of the
    tensors they need."""
    if not isinstance(architecture, list) or not architecture:
        raise ValueError(f"{path}: architecture must be a non-empty list of layers")
    layers: list[tuple[str, int, int]] = []
    expected: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    width = None  # output width of the layers so far, once a Dense layer fixed it
    for index, entry in enumerate(architecture):
        name = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in SAVABLE_LAYERS:
            raise ValueError(f"{path}: layer {index} has unknown type {name!r}; known: "
                             f"{', '.join(SAVABLE_LAYERS)}")
        if name != "Dense":
            layers.append((name, 0, 0))
            continue
        n_in, n_out = entry.get("n_in"), entry.get("n_out")
        if not all(type(size) is int and size >= 1 for size in (n_in, n_out)):
            raise ValueError(f"{path}: layer {index} (Dense) needs sizes n_in, n_out >= 1, "
                             f"got {n_in!r}, {n_out!r}")
        if width is not None and n_in != width:
            raise ValueError(f"{path}: layer {index} (Dense) takes {n_in} inputs but the "
                             f"layer before it outputs {width}")
        width = n_out
        layers.append((name, n_in, n_out))
        expected[f"{index}.W"] = ((n_in, n_out), dtype)
        expected[f"{index}.b"] = ((n_out,), dtype)
    return layers, expected


def _check_tensors(path: Path, tensors: dict[str, tuple[np.dtype, tuple[int, ...]]],
                   expected: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """The declared ``{key: (dtype, shape)}`` must be exactly the ``expected`` ones."""
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{path}: missing tensor(s) {', '.join(missing)}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ValueError(f"{path}: unexpected tensor(s) {', '.join(unexpected)} not in the "
                         "architecture")
    for key, (shape, dtype) in expected.items():
        if tensors[key][1] != shape or tensors[key][0] != dtype:
            raise ValueError(f"{path}: tensor {key} should be {dtype} of shape {shape}, got "
                             f"{tensors[key][0]} of shape {tensors[key][1]}")


def _decode_classes(path: Path, classes: Any) -> np.ndarray | None:
    """The class labels ``{"dtype", "values"}`` as an array, each string label at most
    ``MAX_LABEL_CHARS`` long, every value exactly representable in the dtype."""
    if classes is None:
        return None
    try:
        if not (isinstance(classes, dict) and isinstance(classes.get("dtype"), str)
                and isinstance(classes.get("values"), list)):
            raise ValueError('expected {"dtype": "<i8", "values": [...]}')
        dtype = np.dtype(classes["dtype"][:16])
        if dtype.kind not in _CLASS_KINDS or dtype.str != classes["dtype"]:
            raise ValueError(f"dtype {classes['dtype']!r} is not allowed")
        if dtype.kind == "U" and dtype.itemsize // 4 > MAX_LABEL_CHARS:
            raise ValueError(f"labels of up to {dtype.itemsize // 4} characters; at most "
                             f"{MAX_LABEL_CHARS} are allowed")
        values = np.array(classes["values"], dtype=dtype)
        if values.ndim != 1 or values.tolist() != classes["values"]:
            raise ValueError(f"the values are not a flat list of {dtype} values")
    except (TypeError, ValueError, OverflowError) as error:
        shown = repr(classes)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise ValueError(f"{path}: invalid class labels {shown}: {error}") from None
    return values
