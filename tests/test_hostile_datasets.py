"""Hostile and damaged datasets: size bombs refused before reading, labels read exactly."""

from __future__ import annotations

import gzip
import os
import struct
import tracemalloc

import numpy as np
import pytest

from chainrule.io.datasets import load, load_inputs

MiB = 1 << 20


def peak_of(function) -> tuple[BaseException, int]:
    """The exception ``function()`` raises and the peak memory allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            function()
        return error.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_gzip_idx_bomb_is_refused_before_decompressing(tmp_path):
    count, rows, columns = 50_000, 28, 28  # 39 MB of pixels, 314 MB as float64
    images = tmp_path / "train-images-idx3-ubyte.gz"
    header = struct.pack(">IIII", 0x803, count, rows, columns)
    images.write_bytes(gzip.compress(header + bytes(count * rows * columns), compresslevel=1))
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(struct.pack(">II", 0x801, count) + bytes(count))
    assert images.stat().st_size < MiB
    error, peak = peak_of(lambda: load(images, max_bytes=100 * MiB))
    assert str(error).startswith(f"{images}: 50000 x 28 x 28 values as float64 would take "
                                 "0.292 GiB in memory, over the limit of 0.0977 GiB")
    assert peak < MiB
    X, y = load(images, max_bytes=400 * MiB)  # allowed when asked for
    assert X.shape == (count, rows * columns) and y.shape == (count,)


def test_npz_bomb_is_refused_before_decompressing(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, X=np.zeros((4000, 5000), dtype=np.uint8), y=np.zeros(4000))
    assert path.stat().st_size < MiB
    error, peak = peak_of(lambda: load(path, max_bytes=100 * MiB))
    assert "array 'X' would take 0.149 GiB in memory, over the limit of 0.0977 GiB" in str(error)
    assert peak < MiB
    monkeypatch.setenv("CHAINRULE_MAX_DATASET_BYTES", str(100 * MiB))
    with pytest.raises(ValueError, match="array 'X' would take"):
        load_inputs(path, 5000)
    monkeypatch.setenv("CHAINRULE_MAX_DATASET_BYTES", "lots")
    with pytest.raises(ValueError, match="CHAINRULE_MAX_DATASET_BYTES must be a number"):
        load(path)


def test_large_csv_is_refused_by_size(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n" * 1000)  # 6000 bytes
    with pytest.raises(ValueError, match=r"6000 bytes of CSV, over the limit of 5000"):
        load(path, max_bytes=40_000)
    assert load(path, max_bytes=48_000)[0].shape == (1000, 2)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not a .npz archive"),
    (b"PK\x03\x04" + b"\0" * 40, "not a .npz archive"),
    (b"\x93NUMPY\x01\x00" + b"\0" * 100, "a single .npy array, not a .npz archive"),
])
def test_damaged_npz_is_one_line(tmp_path, content, message):
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load(path)
    with pytest.raises(ValueError, match=message):
        load_inputs(path)


def test_truncated_npz_is_one_line(tmp_path):
    path = tmp_path / "data.npz"
    np.savez_compressed(path, X=np.arange(20000.0).reshape(100, 200), y=np.zeros(100))
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"data\.npz: (not a \.npz|corrupt or truncated)"):
            load(path)


def test_renamed_npy_is_explained(tmp_path):
    path = tmp_path / "data.npz"
    with open(path, "wb") as file:
        np.save(file, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"data\.npz: a single \.npy array"):
        load(path)


def test_csv_field_over_the_csv_module_limit(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3," + "4" * 200_000 + ",1\n")
    with pytest.raises(ValueError, match=r"data\.csv: line \d+: malformed CSV \(field larger"):
        load(path)


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b,label\n1,2,\xff\xfe\n")
    with pytest.raises(ValueError, match=r"data\.csv: not UTF-8 text \(invalid start byte 0xff "
                                         r"on line 2\)"):
        load(path)


@pytest.mark.skipif(os.name != "posix", reason="FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "data.csv")
    with pytest.raises(ValueError, match="not a regular file"):
        load(tmp_path / "data.csv")
    os.mkfifo(tmp_path / "data.npz")
    with pytest.raises(ValueError, match="not a regular file"):
        load_inputs(tmp_path / "data.npz")


def csv_labels(tmp_path, labels: list[str]) -> np.ndarray:
    path = tmp_path / "data.csv"
    path.write_text("".join(f"{index},{index * 2},{label}\n"
                            for index, label in enumerate(labels)))
    return load(path)[1]


def test_huge_integer_labels_stay_distinct(tmp_path):
    y = csv_labels(tmp_path, ["1e20", "2e20", "3e20", "1e20"])
    assert y.tolist() == ["1e20", "2e20", "3e20", "1e20"]
    assert len(np.unique(y)) == 3


def test_labels_beyond_float_precision_stay_distinct(tmp_path):
    y = csv_labels(tmp_path, [str(2**53), str(2**53 + 1), str(2**63 - 1), "-9223372036854775808"])
    assert y.dtype == np.int64
    assert y.tolist() == [2**53, 2**53 + 1, 2**63 - 1, -(2**63)]
    assert csv_labels(tmp_path, [str(2**63), "1"]).tolist() == [str(2**63), "1"]


def test_one_number_one_class_whatever_its_spelling(tmp_path):
    assert csv_labels(tmp_path, ["1", "1.0", "2.5", "1e0", "2.50"]).tolist() == [
        "1", "1", "2.5", "1", "2.5"]
    y = csv_labels(tmp_path, ["1", "1.0", "3e0"])
    assert y.dtype == np.int64 and y.tolist() == [1, 1, 3]


@pytest.mark.parametrize("label", ["nan", "inf", "-Infinity", "NaN"])
def test_non_finite_labels_are_refused(tmp_path, label):
    with pytest.raises(ValueError, match=rf"line 2: label '{label}' is not a finite number"):
        csv_labels(tmp_path, ["0", label, "1"])


def test_numeric_header_row_is_a_header(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("0,1,label\n0.5,1.5,0\n2.5,3.5,1\n")  # pandas' default column names
    X, y = load(path)
    np.testing.assert_array_equal(X, [[0.5, 1.5], [2.5, 3.5]])
    assert y.tolist() == [0, 1]
    np.testing.assert_array_equal(load_inputs(path, 2), [[0.5, 1.5], [2.5, 3.5]])
    path.write_text("1,2,cat\n3,4,dog\n")  # string labels: the first row is data
    assert load(path)[1].tolist() == ["cat", "dog"]


def test_unreadable_dataset_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "open", refuse)
    with pytest.raises(ValueError, match=r"data\.csv: cannot be read: Permission denied"):
        load(path)
