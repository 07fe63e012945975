"""CSV datasets and inputs: features are finite numbers, the last column (if any) the label.

Labels are read exactly (as decimals, never through a float that could merge them):
integer labels within int64 become int64 (``1`` and ``1.0`` are one class); any other numbers
are kept as text, one spelling per number (``1.0`` becomes the ``1`` seen before it). A NaN or
infinite label is an error, as is a file over the size limit. The first row is a header when
none of its feature cells is a number, or when its label cell is not a number while every
other label is (pandas' ``0,1,label``).
"""

from __future__ import annotations

import csv
import decimal
from pathlib import Path

import numpy as np

__all__ = ["read_features", "read_labelled"]

CsvLines = list[tuple[int, list[str]]]  # (line number in the file, cells) per non-blank row
_INT64 = (decimal.Decimal(-(2**63)), decimal.Decimal(2**63 - 1))


def read_labelled(path: Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return features (N, D) float64 and labels (N,) from a CSV whose last column is y."""
    lines = _read_csv_rows(path, max_bytes)
    n_columns = len(lines[0][1])
    if n_columns < 2:
        raise ValueError(f"{path}: need at least one feature column and a label column")
    header, lines = _split_header(path, lines, n_columns - 1, labelled=True)
    for line_number, row in lines:
        if not row[-1].strip():
            raise ValueError(f"{path}: line {line_number} has an empty label (last column)")
    features = _parse_features(path, lines, n_columns - 1, header)
    return features, _parse_labels(path, lines)


def read_features(path: Path, n_features: int | None, max_bytes: int) -> np.ndarray:
    """Return the first n_features columns (all when None) of a CSV as (N, n_features) float64.

    One more column, a label, is allowed and ignored; no other width is.
    """
    lines = _read_csv_rows(path, max_bytes)
    n_columns = len(lines[0][1])
    n_features = n_columns if n_features is None else n_features
    if n_columns not in (n_features, n_features + 1):
        raise ValueError(
            f"{path}: the model takes {n_features} features; expected rows of {n_features} "
            f"(or {n_features + 1} with a label) columns, got {n_columns}"
        )
    header, lines = _split_header(path, lines, n_features, labelled=n_columns > n_features)
    return _parse_features(path, lines, n_features, header)


def _read_csv_rows(path: Path, max_bytes: int) -> CsvLines:
    """Return the non-blank rows with their line numbers, checking they are equally wide."""
    size = path.stat().st_size
    if size > max_bytes // 8:  # parsed cells take far more memory than their text
        raise ValueError(f"{path}: {size} bytes of CSV, over the limit of {max_bytes // 8} "
                         f"(max_bytes / 8); raise max_bytes to read it")
    reader = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            lines = [(reader.line_num, row) for row in reader
                     if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text ({_first_bad_byte(path)}); save the CSV as "
                         "UTF-8") from None
    except csv.Error as error:
        line = "" if reader is None else f"line {reader.line_num}: "
        raise ValueError(f"{path}: {line}malformed CSV ({error})") from None
    if not lines:
        raise ValueError(f"{path}: the file holds no rows")
    n_columns = len(lines[0][1])
    for line_number, row in lines:
        if len(row) != n_columns:
            raise ValueError(
                f"{path}: line {line_number} has {len(row)} columns, expected {n_columns}"
            )
    return lines


def _first_bad_byte(path: Path) -> str:
    """Where the file stops being UTF-8: ``"invalid start byte 0xff on line 2"``."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return f"{error.reason} 0x{data[error.start]:02x} on line {line}"
    return "the file changed while it was read"


def _split_header(
    path: Path, lines: CsvLines, n_features: int, labelled: bool
) -> tuple[list[str] | None, CsvLines]:
    """Return (header or None, data lines): the first row is a header when none of its
    first n_features cells is a number, or (``labelled``) when only its label is not one."""
    first = lines[0][1]
    numeric_header = labelled and not _is_number(first[-1]) and len(lines) > 1 and all(
        _is_number(row[-1]) for _, row in lines[1:])
    if any(map(_is_number, first[:n_features])) and not numeric_header:
        return None, lines
    if len(lines) == 1:
        raise ValueError(f"{path}: the file holds a header but no data rows")
    return first, lines[1:]


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


def _parse_labels(path: Path, lines: CsvLines) -> np.ndarray:
    """Labels (N,): int64 when all are integers within int64 (``3``, ``3.0``, ``3e2``),
    else strings, numerically equal spellings unified; NaN or infinity is an error."""
    labels = [row[-1].strip() for _, row in lines]
    try:
        numbers = [decimal.Decimal(label) for label in labels]
    except decimal.InvalidOperation:
        return np.array(labels)
    for (line_number, _), label, number in zip(lines, labels, numbers, strict=True):
        if not number.is_finite():
            raise ValueError(f"{path}: line {line_number}: label {label!r} is not a finite "
                             "number; a class label must be")
    if all(_INT64[0] <= number <= _INT64[1] and number == number.to_integral_value()
           for number in numbers):
        return np.array([int(number) for number in numbers], dtype=np.int64)
    spelling: dict[decimal.Decimal, str] = {}  # equal Decimals hash alike: 1 == 1.0 == 1e0
    return np.array([spelling.setdefault(number, label)
                     for number, label in zip(numbers, labels, strict=True)])
