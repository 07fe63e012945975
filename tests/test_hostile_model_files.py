"""Hostile and damaged model files: one line naming the file, and no large allocation first."""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.io import tensorfile
from model_examples import every_layer_model

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX files")


def write_model_file(path: Path, header: dict, data: bytes = b"") -> Path:
    """A safetensors file written by hand: 8-byte header length, JSON header, data."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def metadata(architecture, classes=None, dtype="float64", preprocessing=None) -> dict:
    return {"format": "chainrule-model", "format_version": "1", "chainrule_version": "0",
            "dtype": dtype, "architecture": json.dumps(architecture),
            "classes": json.dumps(classes), "preprocessing": json.dumps(preprocessing)}


def dense(n_in, n_out):
    return {"type": "Dense", "n_in": n_in, "n_out": n_out}


def small_tensors(n_in=2, n_out=3) -> tuple[dict, bytes]:
    """Header entries and data of a real Dense(n_in→n_out) layer 0."""
    W, b = np.ones((n_in, n_out)), np.zeros(n_out)
    return ({"0.W": {"dtype": "F64", "shape": [n_in, n_out], "data_offsets": [0, W.nbytes]},
             "0.b": {"dtype": "F64", "shape": [n_out],
                     "data_offsets": [W.nbytes, W.nbytes + b.nbytes]}},
            W.tobytes() + b.tobytes())


def load_peak(path: Path) -> tuple[str, int]:
    """The error message of ``cr.load(path)`` and the peak memory it allocated (bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            cr.load(path)
        return str(error.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("size", [20_000, 100_000])
def test_huge_declared_layer_is_refused_before_allocating(tmp_path, size):
    entries, data = small_tensors()
    path = write_model_file(tmp_path / "m.safetensors",
                            {"__metadata__": metadata([dense(size, size)]), **entries}, data)
    assert path.stat().st_size < 2000
    message, peak = load_peak(path)
    assert message.startswith(f"{path}: ")
    assert f"should be float64 of shape ({size}, {size})" in message
    assert peak < 1 << 20


def test_tensor_larger_than_the_file_is_refused_before_allocating(tmp_path):
    entries, data = small_tensors()
    entries["0.W"] = {"dtype": "F64", "shape": [20_000, 20_000], "data_offsets": [0, 48]}
    path = write_model_file(tmp_path / "m.safetensors",
                            {"__metadata__": metadata([dense(20_000, 20_000)]), **entries}, data)
    message, peak = load_peak(path)
    assert "tensor '0.W' declares shape [20000, 20000] (3200000000 bytes)" in message
    assert peak < 1 << 20


def test_huge_label_dtype_is_refused(tmp_path):
    entries, data = small_tensors()
    classes = {"dtype": "<U250000000", "values": ["a", "b", "c"]}
    path = write_model_file(tmp_path / "m.safetensors",
                            {"__metadata__": metadata([dense(2, 3)], classes), **entries}, data)
    message, peak = load_peak(path)
    assert "labels of up to 250000000 characters; at most 1000 are allowed" in message
    assert peak < 1 << 20


@pytest.mark.parametrize(("architecture", "classes", "preprocessing", "message"), [
    ([{"type": ["Dense"]}], None, None, r"layer 0 has unknown type \['Dense'\]"),
    ([{"type": "Dense", "n_in": True, "n_out": 3}], None, None, "needs sizes n_in, n_out >= 1"),
    ([dense(2, 3)], {"dtype": "|i1", "values": [1000, 1, 2]}, None, "invalid class labels"),
    ([dense(2, 3)], {"dtype": "<i8", "values": [1.5, 1, 2]}, None, "not a flat list of int64"),
    ([dense(2, 3)], {"dtype": "<U1", "values": "abc"}, None, "invalid class labels"),
    ([dense(2, 3)], None, {"kind": "standard"}, r"preprocessing.offset must be a vector"),
])
def test_malformed_metadata_is_one_line(tmp_path, architecture, classes, preprocessing,
                                        message):
    entries, data = small_tensors()
    if preprocessing is not None:  # scalar offset and scale
        entries["preprocessing.offset"] = {"dtype": "F64", "shape": [],
                                           "data_offsets": [len(data), len(data) + 8]}
        entries["preprocessing.scale"] = {"dtype": "F64", "shape": [],
                                          "data_offsets": [len(data) + 8, len(data) + 16]}
        data += np.ones(2).tobytes()
    path = write_model_file(
        tmp_path / "m.safetensors",
        {"__metadata__": metadata(architecture, classes, preprocessing=preprocessing),
         **entries}, data)
    with pytest.raises(ValueError, match=message) as error:
        cr.load(path)
    assert str(error.value).startswith(f"{path}: ")


def test_deeply_nested_metadata_and_header(tmp_path):
    entries, data = small_tensors()
    meta = metadata([dense(2, 3)])
    meta["architecture"] = "[" * 100_000 + "]" * 100_000
    path = write_model_file(tmp_path / "m.safetensors", {"__metadata__": meta, **entries}, data)
    with pytest.raises(ValueError, match="metadata 'architecture' is nested too deeply"):
        cr.load(path)
    raw = ("[" * 100_000 + "]" * 100_000).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ValueError, match=r"header is not valid JSON .nested too deeply"):
        cr.load(path)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "0 bytes, empty or cut short"),
    (b"\xff" * 16, "declares a header of"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "the header is not UTF-8 text"),
    (struct.pack("<Q", 2) + b"[]", "the header must be a JSON object"),
])
def test_garbage_files(tmp_path, content, message):
    path = tmp_path / "m.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        cr.load(path)


@posix
def test_devices_and_fifos_are_refused_without_reading(tmp_path):
    with pytest.raises(ValueError, match="/dev/urandom: not a regular file"):
        cr.load("/dev/urandom")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block without O_NONBLOCK
    with pytest.raises(ValueError, match="fifo: not a regular file"):
        cr.load(tmp_path / "fifo")
    with pytest.raises(ValueError, match="a directory"):
        cr.load(tmp_path)


@posix
@pytest.mark.skipif(os.name == "posix" and os.geteuid() == 0, reason="root reads anything")
def test_permission_denied_is_not_no_such_file(tmp_path):
    path = every_layer_model().save(tmp_path / "m.safetensors")
    path.chmod(0)
    with pytest.raises(ValueError, match="permission denied"):
        cr.load(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        cr.load(tmp_path / "missing.safetensors")


def test_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors: no such file"):
        cr.load(tmp_path / "missing.safetensors")


def test_file_truncated_while_loading(tmp_path, monkeypatch):
    path = every_layer_model().save(tmp_path / "m.safetensors")
    read = tensorfile.TensorFile.read

    def truncate_then_read(self, file, name):
        os.truncate(path, path.stat().st_size // 2)  # another process cuts the file
        return read(self, file, name)

    monkeypatch.setattr(tensorfile.TensorFile, "read", truncate_then_read)
    with pytest.raises(ValueError, match="truncated while it was being loaded"):
        cr.load(path)


def test_file_overwritten_while_loading(tmp_path, monkeypatch):
    path = every_layer_model().save(tmp_path / "m.safetensors")
    original = path.read_bytes()
    read, calls = tensorfile.TensorFile.read, []

    def overwrite_after_first(self, file, name):
        calls.append(name)
        if len(calls) == 2:  # rewritten in place (same inode), as `cp` or `>` would
            with open(path, "r+b") as out:
                out.write(original[:-8] + b"\0" * 8)
            os.utime(path, ns=(1, 1))
        return read(self, file, name)

    monkeypatch.setattr(tensorfile.TensorFile, "read", overwrite_after_first)
    with pytest.raises(ValueError, match="changed while it was being loaded"):
        cr.load(path)


def test_save_refuses_what_load_would_reject(tmp_path):
    path = tmp_path / "m.safetensors"
    good = every_layer_model()
    good.save(path)
    good_bytes = path.read_bytes()
    bad = every_layer_model()
    bad.classes = np.array(["a", "b"])  # 2 labels, 3 outputs
    with pytest.raises(ValueError, match="2 class labels for 3 network outputs"):
        bad.save(path)
    bad.classes = np.array(["x" * 1001, "b", "c"])
    with pytest.raises(ValueError, match="at most 1000"):
        bad.save(path)
    assert path.read_bytes() == good_bytes



def test_permission_denied_is_reported_as_such(tmp_path, monkeypatch):
    """Without root: os.open refusing the file as it does for a chmod 000 file."""
    path = every_layer_model().save(tmp_path / "m.safetensors")

    def refuse(name, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(name))

    monkeypatch.setattr(tensorfile.os, "open", refuse)
    with pytest.raises(ValueError, match=r"m\.safetensors: permission denied \(the file exists"):
        cr.load(path)
