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
Sequential([
  Dense(4→8),
  ReLU(),
  Dense(8→3)
])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from chainrule._version import __version__
from chainrule.io.files import write_bytes_atomically
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
# First bytes of pickles (protocol 2+) and zips (a .npz, or torch.save's pickles), to say
# why such a file is refused.
_PICKLE_SIGNATURES = {b"\x80": "a Python pickle",
                      b"PK\x03\x04": "a zip archive (a .npz, or torch.save's pickles)"}


def save(model: Sequential, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` in safetensors format, atomically; returns the path.

    Weights, dtype, architecture, ``model.classes`` and ``model.preprocessing`` are stored,
    so ``load(path)`` predicts on raw inputs exactly like ``model``. Only the layers in
    ``SAVABLE_LAYERS`` can be saved; any other layer is a ``ValueError``.
    """
    tensors, metadata = _encode(model)
    path = Path(path)
    write_bytes_atomically(path, safetensors.numpy.save(tensors, metadata=metadata))
    return path


def load(path: str | os.PathLike) -> Sequential:
    """Read a model written by ``save``; its ``predict``/``predict_proba`` take RAW inputs.

    Raises ``FileNotFoundError`` for a missing file and a ``ValueError`` naming the file for
    anything that is not an intact chainrule model file of a format version this chainrule
    reads (a pickle, a truncated file, missing or misshapen tensors, a newer format).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a directory, not a model file")
    try:
        with safetensors.safe_open(path, framework="numpy") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except safetensors.SafetensorError as error:
        raise ValueError(f"{path}: {_why_unreadable(path, error)}") from None
    return _decode(path, metadata, tensors)


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


def _why_unreadable(path: Path, error: Exception) -> str:
    """Why safetensors could not parse ``path``: a pickle or zip (by its first bytes), else
    damage. Sniffed only after parsing failed: a safetensors file starts with its header
    length, whose low byte may well be 0x80."""
    with path.open("rb") as file:
        start = file.read(8)
    for signature, what in _PICKLE_SIGNATURES.items():
        if start.startswith(signature):
            return (f"this is {what}, not a safetensors model file; chainrule never "
                    "unpickles (unpickling can run code)")
    return f"not a valid safetensors file (truncated or corrupt?): {error}"


def _decode(path: Path, metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> Sequential:
    """Rebuild the ``Sequential`` described by a file's metadata and tensors."""
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: a safetensors file but not a chainrule model (its metadata "
                         f"has no format {FORMAT!r}); write model files with chainrule.save")
    version = metadata.get("format_version", "")
    if not version.isdigit():
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
    layers, expected = _build_layers(path, fields["architecture"], np.dtype(dtype))
    preprocessing = fields["preprocessing"]
    if preprocessing is not None:
        n_features = len(tensors.get(_OFFSET, ()))
        expected |= {_OFFSET: ((n_features,), np.dtype(np.float64)),
                     _SCALE: ((n_features,), np.dtype(np.float64))}
    _check_tensors(path, tensors, expected)

    model = Sequential(layers)
    model.set_weights({key: tensors[key] for key in model.params})
    if preprocessing is not None:
        if not isinstance(preprocessing, dict) or not isinstance(preprocessing.get("kind"), str):
            raise ValueError(f"{path}: invalid preprocessing {preprocessing!r}")
        if model.input_width is not None and model.input_width != len(tensors[_OFFSET]):
            raise ValueError(f"{path}: preprocessing has {len(tensors[_OFFSET])} features, "
                             f"the first Dense layer takes {model.input_width}")
        if not (np.all(np.isfinite(tensors[_OFFSET])) and np.all(np.isfinite(tensors[_SCALE]))
                and np.all(tensors[_SCALE] != 0)):
            raise ValueError(f"{path}: preprocessing offset and scale must be finite, "
                             "scale nonzero")
        model.preprocessing = Scaler(preprocessing["kind"], tensors[_OFFSET], tensors[_SCALE])
    model.classes = _decode_classes(path, fields["classes"])
    if model.classes is not None and model.input_width is not None:
        n_outputs = model.output_width()
        if len(model.classes) != n_outputs:
            raise ValueError(f"{path}: {len(model.classes)} class labels for {n_outputs} "
                             "network outputs")
    return model


def _json_field(path: Path, metadata: dict[str, str], key: str) -> Any:
    if key not in metadata:
        raise ValueError(f"{path}: metadata {key!r} is missing")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON: {error}") from None


def _build_layers(
    path: Path, architecture: Any, dtype: np.dtype
) -> tuple[list[Layer], dict[str, tuple[tuple[int, ...], np.dtype]]]:
    """The layers, and the ``{key: (shape, dtype)}`` of the tensors they need."""
    if not isinstance(architecture, list) or not architecture:
        raise ValueError(f"{path}: architecture must be a non-empty list of layers")
    layers: list[Layer] = []
    expected: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    width = None  # output width of the layers so far, once a Dense layer fixed it
    for index, entry in enumerate(architecture):
        name = entry.get("type") if isinstance(entry, dict) else None
        if name not in SAVABLE_LAYERS:
            raise ValueError(f"{path}: layer {index} has unknown type {name!r}; known: "
                             f"{', '.join(SAVABLE_LAYERS)}")
        if name != "Dense":
            layers.append(SAVABLE_LAYERS[name]())
            continue
        n_in, n_out = entry.get("n_in"), entry.get("n_out")
        if not all(isinstance(size, int) and size >= 1 for size in (n_in, n_out)):
            raise ValueError(f"{path}: layer {index} (Dense) needs sizes n_in, n_out >= 1, "
                             f"got {n_in!r}, {n_out!r}")
        if width is not None and n_in != width:
            raise ValueError(f"{path}: layer {index} (Dense) takes {n_in} inputs but the "
                             f"layer before it outputs {width}")
        width = n_out
        layers.append(Dense(n_in, n_out, seed=0, dtype=dtype))
        expected[f"{index}.W"] = ((n_in, n_out), dtype)
        expected[f"{index}.b"] = ((n_out,), dtype)
    return layers, expected


def _check_tensors(path: Path, tensors: dict[str, np.ndarray],
                   expected: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{path}: missing tensor(s) {', '.join(missing)}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ValueError(f"{path}: unexpected tensor(s) {', '.join(unexpected)} not in the "
                         "architecture")
    for key, (shape, dtype) in expected.items():
        if tensors[key].shape != shape or tensors[key].dtype != dtype:
            raise ValueError(f"{path}: tensor {key} should be {dtype} of shape {shape}, got "
                             f"{tensors[key].dtype} of shape {tensors[key].shape}")


def _decode_classes(path: Path, classes: Any) -> np.ndarray | None:
    if classes is None:
        return None
    try:
        dtype = np.dtype(classes["dtype"])
        if dtype.kind not in _CLASS_KINDS:
            raise ValueError(f"dtype {dtype} is not allowed")
        values = np.array(classes["values"], dtype=dtype)
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: invalid class labels {classes!r}: {error}") from None
    if values.ndim != 1:
        raise ValueError(f"{path}: class labels must be a flat list, got {classes['values']!r}")
    return values
