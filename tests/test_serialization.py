"""Model files: exact round trips, refusal of pickles and damaged files, atomic writes, CLI."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import chainrule
from chainrule import (
    SGD,
    Dense,
    Layer,
    Scaler,
    Sequential,
    SoftmaxCrossEntropy,
    mlp,
)
from chainrule.cli import main
from chainrule.io import files, serialization
from chainrule.nn.functional import softmax
from chainrule.nn.preprocessing import PreparedInputs
from model_examples import OUTPUTS, every_layer_model, train_iris_model


@pytest.fixture(scope="module")
def iris_model() -> tuple[Sequential, np.ndarray, np.ndarray]:
    return train_iris_model()


def rewrite(path: Path, tensors=None, metadata=None) -> None:
    """Rewrite a model file with some tensors or metadata changed (``None`` value: removed)."""
    with safetensors.safe_open(path, framework="numpy") as file:
        old_metadata = file.metadata()
        old_tensors = {key: file.get_tensor(key) for key in file.keys()}
    for old, new in ((old_tensors, tensors or {}), (old_metadata, metadata or {})):
        for key, value in new.items():
            if value is None:
                old.pop(key)
            else:
                old[key] = value
    safetensors.numpy.save_file(old_tensors, path, metadata=old_metadata)


# --- round trips -----------------------------------------------------------------------------

@pytest.mark.parametrize("output", OUTPUTS)
def test_round_trip_every_layer_type_is_exact(tmp_path: Path, output: str) -> None:
    model = every_layer_model(OUTPUTS[output])
    path = model.save(tmp_path / "model.safetensors")
    loaded = chainrule.load(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.params.keys() == model.params.keys()
    for key, param in model.params.items():
        np.testing.assert_array_equal(loaded.params[key], param)
        assert loaded.params[key].dtype == np.float64
    x = np.random.default_rng(0).normal(size=(7, 4))
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.classes is None and loaded.preprocessing is None


def test_loaded_parameters_are_independent_and_trainable(tmp_path: Path) -> None:
    model = every_layer_model()
    loaded = chainrule.load(model.save(tmp_path / "m.safetensors"))
    saved_weights = model.get_weights()
    x, labels = np.random.default_rng(1).normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
    loss = SoftmaxCrossEntropy()
    loss.forward(loaded.forward(x), labels)
    loaded.backward(loss.backward())
    SGD(0.1).step(loaded)  # in place: fails if the loaded arrays were read-only
    assert not np.array_equal(loaded.params["0.W"], saved_weights["0.W"])
    for key, param in model.params.items():
        np.testing.assert_array_equal(param, saved_weights[key])


def test_file_layout_is_plain_safetensors(tmp_path: Path, iris_model) -> None:
    model, _, _ = iris_model
    path = serialization.save(model, tmp_path / "iris.safetensors")
    tensors = safetensors.numpy.load_file(path)
    assert sorted(tensors) == ["0.W", "0.b", "2.W", "2.b",
                               "preprocessing.offset", "preprocessing.scale"]
    np.testing.assert_array_equal(tensors["0.W"], model.params["0.W"])
    with safetensors.safe_open(path, framework="numpy") as file:
        metadata = file.metadata()
    assert metadata["format"] == "chainrule-model"
    assert metadata["format_version"] == "1"
    assert metadata["chainrule_version"] == chainrule.__version__
    assert metadata["dtype"] == "float64"
    assert json.loads(metadata["architecture"]) == [
        {"type": "Dense", "n_in": 4, "n_out": 8}, {"type": "Tanh"},
        {"type": "Dense", "n_in": 8, "n_out": 3}]
    assert json.loads(metadata["classes"]) == {
        "dtype": "<U10", "values": ["setosa", "versicolor", "virginica"]}
    assert json.loads(metadata["preprocessing"]) == {"kind": "standard"}


def test_loaded_model_predicts_on_raw_inputs(tmp_path: Path, iris_model) -> None:
    model, X, names = iris_model
    loaded = chainrule.load(model.save(tmp_path / "iris.safetensors"))
    assert loaded.preprocessing.kind == "standard"
    np.testing.assert_array_equal(loaded.preprocessing.offset, X.mean(axis=0))
    np.testing.assert_array_equal(loaded.preprocessing.scale, X.std(axis=0))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # The scaling is really applied: without it the probabilities are different. forward
    # refuses raw inputs; marked as prepared by hand, they go through unscaled.
    with pytest.raises(ValueError, match=r"records standard scaling.*model\.prepare"):
        loaded.forward(X)
    unscaled = softmax(loaded.forward(X.astype(np.float64).view(PreparedInputs)))
    assert np.abs(unscaled - loaded.predict_proba(X)).max() > 0.1
    assert np.mean(loaded.predict(X) == names) > 0.9


@pytest.mark.parametrize("classes", [
    np.array([3, 5, 7]), np.array(["cat", "dog", "emu"]), np.array([0.5, 1.5, 2.25]),
    np.array([-1, 0, 1], dtype=np.int8), np.array(["b", "é", "日本"])])
def test_class_labels_keep_values_and_dtype(tmp_path: Path, classes: np.ndarray) -> None:
    model = every_layer_model()
    model.classes = classes
    loaded = chainrule.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.classes.dtype == classes.dtype
    np.testing.assert_array_equal(loaded.classes, classes)
    x = np.random.default_rng(2).normal(size=(10, 4))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_object_string_classes_come_back_as_str(tmp_path: Path) -> None:
    model = every_layer_model()
    model.classes = np.array(["no", "maybe", "yes"], dtype=object)
    loaded = chainrule.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.classes.dtype.kind == "U"
    assert loaded.classes.tolist() == ["no", "maybe", "yes"]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_dtype_is_kept(tmp_path: Path, dtype) -> None:
    model = every_layer_model(dtype=dtype).astype(dtype)
    model.preprocessing = Scaler("minmax", np.array([0.0, 1, 2, 3]), np.array([1.0, 2, 4, 8]))
    loaded = chainrule.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.dtype == dtype
    for key, param in model.params.items():
        np.testing.assert_array_equal(loaded.params[key], param)
    # The scaling stays float64, whatever the weights' dtype.
    assert loaded.preprocessing.offset.dtype == np.float64
    x = np.random.default_rng(3).normal(size=(5, 4))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


# --- what cannot be saved --------------------------------------------------------------------

class Square(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * x


class MyDense(Dense):
    """A subclass may change forward: it is not a Dense for the file format."""


@pytest.mark.parametrize("layer", [Square(), MyDense(3, 3, seed=0)])
def test_custom_layers_are_refused_at_save_time(tmp_path: Path, layer: Layer) -> None:
    model = Sequential([Dense(4, 3, seed=0), layer])
    with pytest.raises(ValueError, match=rf"layer 1 .*{type(layer).__name__}.*cannot be saved"):
        model.save(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("classes", [np.array([[0, 1, 2]]), np.array([None, 1, "a"])])
def test_unsavable_classes(tmp_path: Path, classes: np.ndarray) -> None:
    model = every_layer_model()
    model.classes = classes
    with pytest.raises(ValueError, match=r"model\.classes must be a 1-D array"):
        model.save(tmp_path / "m.safetensors")


def test_preprocessing_must_be_a_scaler(tmp_path: Path) -> None:
    model = every_layer_model()
    model.preprocessing = lambda x: x
    with pytest.raises(ValueError, match=r"preprocessing must be a chainrule\.Scaler"):
        model.save(tmp_path / "m.safetensors")


# --- loading never executes code; damaged files are clear errors ------------------------------

class RunsCode:
    """Unpickling this creates the directory ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_is_refused_without_running_it(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(RunsCode(marker), protocol=protocol)
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=str(path)):
        chainrule.load(path)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: unpickling it does run code
    assert marker.is_dir()


def test_a_zip_of_pickles_like_torch_save_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(RunsCode(marker)))
    with pytest.raises(ValueError, match=r"zip archive.*never unpickles"):
        chainrule.load(path)
    assert not marker.exists()


def test_a_header_length_starting_like_a_pickle_still_loads(tmp_path: Path) -> None:
    # A safetensors file starts with its header length (u64, little-endian): its first byte
    # is 0x80, a pickle's first byte, for one header length in 256 (here, forced by padding).
    path = every_layer_model().save(tmp_path / "m.safetensors")
    for padding in range(300):
        rewrite(path, metadata={"note": "x" * padding})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    np.testing.assert_array_equal(chainrule.load(path).params["0.W"],
                                  every_layer_model().params["0.W"])


@pytest.mark.parametrize("keep", [0, 4, 8, 100, -1])
def test_truncated_file_is_a_clear_error(tmp_path: Path, keep: int) -> None:
    path = every_layer_model().save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-9])
    with pytest.raises(ValueError, match=rf"{path}: not a valid safetensors file"):
        chainrule.load(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        chainrule.load(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="a directory, not a model file"):
        chainrule.load(tmp_path)


def test_safetensors_file_not_from_chainrule(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"weight": np.ones((2, 2))}, path)
    with pytest.raises(ValueError, match="not a chainrule model"):
        chainrule.load(path)


@pytest.mark.parametrize(("tensors", "metadata", "message"), [
    ({}, {"format_version": "2"}, "format version 2 was written by a newer chainrule"),
    ({}, {"format_version": "one"}, "invalid format_version"),
    ({"2.W": None}, {}, r"missing tensor\(s\) 2.W"),
    ({"preprocessing.scale": None}, {}, r"missing tensor\(s\) preprocessing.scale"),
    ({"9.W": np.zeros(2)}, {}, r"unexpected tensor\(s\) 9.W"),
    ({"0.W": np.zeros((8, 4))}, {}, r"0.W should be float64 of shape \(4, 8\)"),
    ({"0.b": np.zeros(8, np.float32)}, {}, "0.b should be float64"),
    ({"preprocessing.offset": np.zeros(5), "preprocessing.scale": np.ones(5)}, {},
     "preprocessing has 5 features, the first Dense layer takes 4"),
    ({"preprocessing.scale": np.array([1.0, 0, 1, 1])}, {}, "scale nonzero"),
    ({"preprocessing.offset": np.array([1.0, np.nan, 1, 1])}, {}, "must be finite"),
    ({}, {"architecture": "[{"}, "'architecture' is not valid JSON"),
    ({}, {"architecture": None}, "metadata 'architecture' is missing"),
    ({}, {"architecture": json.dumps([{"type": "Conv2d"}])}, "unknown type 'Conv2d'"),
    ({}, {"architecture": json.dumps([{"type": "Dense", "n_in": 4, "n_out": 8},
                                      {"type": "Dense", "n_in": 9, "n_out": 3}])},
     "takes 9 inputs but the layer before it outputs 8"),
    ({}, {"architecture": json.dumps([{"type": "Dense", "n_in": 4}])}, "needs sizes"),
    ({}, {"dtype": "object"}, "dtype must be one of"),
    ({}, {"classes": json.dumps({"dtype": "|O", "values": [1, 2, 3]})}, "invalid class labels"),
    ({}, {"classes": json.dumps({"dtype": "<i8", "values": [1, 2]})},
     "2 class labels for 3 network outputs"),
    ({}, {"preprocessing": json.dumps("standard")}, "invalid preprocessing"),
])
def test_damaged_model_files(tmp_path: Path, iris_model, tensors, metadata, message) -> None:
    path = iris_model[0].save(tmp_path / "iris.safetensors")
    rewrite(path, tensors, metadata)
    with pytest.raises(ValueError, match=message) as error:
        chainrule.load(path)
    assert str(path) in str(error.value)


# --- atomic writes ---------------------------------------------------------------------------

def half_then(exception: BaseException):
    def write_half(file, data: bytes) -> None:
        file.write(data[:len(data) // 2])
        raise exception
    return write_half


@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_save_keeps_the_old_file(tmp_path: Path, monkeypatch, exception) -> None:
    path = tmp_path / "model.safetensors"
    good = every_layer_model()
    good.save(path)
    good_bytes = path.read_bytes()
    other = mlp(4, [8], 3, seed=9)
    monkeypatch.setattr(files, "_write_payload", half_then(exception))
    with pytest.raises(type(exception)):
        other.save(path)
    assert path.read_bytes() == good_bytes
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.safetensors"]
    np.testing.assert_array_equal(chainrule.load(path).params["6.W"], good.params["6.W"])


def test_failed_fsync_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = every_layer_model().save(tmp_path / "model.safetensors")
    good_bytes = path.read_bytes()

    def failing_fsync(descriptor: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        mlp(4, [8], 3, seed=9).save(path)
    assert path.read_bytes() == good_bytes
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.safetensors"]


def test_successful_save_replaces_and_keeps_permissions(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    every_layer_model().save(path)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o600)
    replacement = mlp(4, [8], 3, seed=9)
    replacement.save(path)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
    np.testing.assert_array_equal(chainrule.load(path).params["0.W"], replacement.params["0.W"])
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.safetensors"]


# --- command line ----------------------------------------------------------------------------

def test_cli_errors_exit_2_with_the_reason(tmp_path: Path, capsys) -> None:
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2]}))
    assert main(["evaluate", str(pickled), "--data", "iris"]) == 2
    assert "never unpickles" in capsys.readouterr().err
    model_path = every_layer_model().save(tmp_path / "m.safetensors")
    (tmp_path / "bad.csv").write_text("1,2\n")
    assert main(["predict", str(model_path), str(tmp_path / "bad.csv")]) == 2
    assert "takes 4 features" in capsys.readouterr().err
