"""Reading a safetensors file defensively: every declared size is checked against the file
before anything is allocated, the bytes are read (never memory-mapped: a file truncated under
a map kills the process with SIGBUS), and a file that changes during the read is an error.

The format: 8 bytes little-endian header length ``n``, ``n`` bytes of JSON
``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}``,
then the tensors' bytes, offsets relative to the end of the header.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["MAX_HEADER_BYTES", "TensorFile", "open_regular"]

# A chainrule model's header is a few kilobytes (a list of layers, the class labels).
MAX_HEADER_BYTES = 16 << 20
# safetensors' dtype names; every tensor is stored little-endian.
_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": None, "I8": "<i1", "I16": "<i2",
           "I32": "<i4", "I64": "<i8", "U8": "<u1", "U16": "<u2", "U32": "<u4", "U64": "<u8",
           "BOOL": "|b1"}
# First bytes of pickles (protocol 2+) and zips (a .npz, or torch.save's pickles), to say
# why such a file is refused.
_SIGNATURES = {b"\x80": "a Python pickle",
               b"PK\x03\x04": "a zip archive (a .npz, or torch.save's pickles)"}


_CORRUPT = "not a valid safetensors file (truncated or corrupt?)"


def _corrupt(path: Path, detail: str) -> ValueError:
    return ValueError(f"{path}: {_CORRUPT}: {detail}")


@dataclass(frozen=True)
class TensorFile:
    """A parsed header: the metadata, each tensor's ``(dtype, shape, begin, end)`` (absolute
    file offsets) and the file's identity, to notice a change while it is read."""

    path: Path
    metadata: dict[str, str]
    tensors: dict[str, tuple[np.dtype, tuple[int, ...], int, int]]
    identity: tuple[int, int, int, int]

    @classmethod
    def parse(cls, file: BinaryIO, path: Path) -> TensorFile:
        """Parse and check the header of the open ``file``; no tensor data is read."""
        identity = _identity(os.fstat(file.fileno()))
        size = identity[2]
        start = file.read(8)
        if len(start) < 8:
            raise _corrupt(path, f"{size} bytes, empty or cut short")
        header_length = int.from_bytes(start, "little")
        if 8 + header_length > size or header_length > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: {_unreadable(start, size, header_length)}")
        raw = file.read(header_length)
        if len(raw) != header_length:
            raise ValueError(f"{path}: the file was truncated while it was being loaded")
        try:
            header = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise _corrupt(path, f"the header is not UTF-8 text ({error.reason} at byte "
                                 f"{8 + error.start})") from None
        except (json.JSONDecodeError, RecursionError) as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else error
            raise _corrupt(path, f"the header is not valid JSON ({reason})") from None
        if not isinstance(header, dict):
            raise _corrupt(path, f"the header must be a JSON object, got "
                                 f"{type(header).__name__}")
        metadata = header.pop("__metadata__", None) or {}
        if not (isinstance(metadata, dict)
                and all(isinstance(value, str) for value in metadata.values())):
            raise _corrupt(path, "__metadata__ must map names to strings")
        data_start = 8 + header_length
        tensors = {name: _entry(path, name, entry, data_start, size)
                   for name, entry in header.items()}
        _check_layout(path, tensors, data_start, size)
        return cls(path, metadata, tensors, identity)

    def read(self, file: BinaryIO, name: str) -> np.ndarray:
        """Tensor ``name`` (native byte order), read from ``file``; checked afterwards with
        :meth:`check_unchanged`."""
        dtype, shape, begin, end = self.tensors[name]
        array = np.empty(shape, dtype=dtype)
        file.seek(begin)
        target, done = memoryview(array).cast("B"), 0
        while done < end - begin:  # one read returns at most ~2 GiB on Linux
            count = file.readinto(target[done:])
            if not count:
                raise ValueError(f"{self.path}: the file was truncated while it was being "
                                 "loaded")
            done += count
        return array.astype(dtype.newbyteorder("="), copy=False)

    def check_unchanged(self, file: BinaryIO) -> None:
        """A ``ValueError`` if the file was replaced or modified since :meth:`parse`."""
        # The open file itself: one replaced by a rename (as chainrule saves) was read whole.
        if _identity(os.fstat(file.fileno())) != self.identity:
            raise ValueError(f"{self.path}: the file changed while it was being loaded; "
                             "load it again once it is written")


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file: a FIFO or device (which could
    block or never end) is refused without blocking; each failure is a one-line error."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except PermissionError:
        raise ValueError(f"{path}: permission denied (the file exists but cannot be read)")\
            from None
    except IsADirectoryError:
        raise ValueError(f"{path}: a directory, not a model file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be opened: {error.strerror}") from None
    mode = os.fstat(descriptor).st_mode
    if stat.S_ISDIR(mode) or not stat.S_ISREG(mode):
        os.close(descriptor)
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO or device?)"
        raise ValueError(f"{path}: {what}, not a model file")
    return os.fdopen(descriptor, "rb", buffering=0)  # reads go to the file, not a stale buffer


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _unreadable(start: bytes, size: int, header_length: int) -> str:
    """Why the first 8 bytes cannot start a safetensors file: a pickle or a zip (by its
    first bytes), else damage."""
    for signature, what in _SIGNATURES.items():
        if start.startswith(signature):
            return (f"this is {what}, not a safetensors model file; chainrule never "
                    "unpickles (unpickling can run code)")
    return (f"{_CORRUPT}: it declares a header of {header_length} bytes in a file of "
            f"{size} bytes")


def _entry(path: Path, name: str, entry: object, data_start: int,
           size: int) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """``(dtype, shape, begin, end)`` of one header entry, checked against the file size."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: its header entry must be an object")
    dtype_name, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if _DTYPES.get(dtype_name) is None:
        raise ValueError(f"{where}: unsupported dtype {dtype_name!r}")
    if not (isinstance(shape, list) and all(type(dim) is int and dim >= 0 for dim in shape)):
        raise ValueError(f"{where}: shape must be a list of sizes, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(offset) is int for offset in offsets)):
        raise ValueError(f"{where}: data_offsets must be [begin, end], got {offsets!r}")
    dtype = np.dtype(_DTYPES[dtype_name])
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize  # exact, no overflow
    begin, end = offsets
    if not 0 <= begin <= end or end - begin != n_bytes or data_start + end > size:
        raise _corrupt(path, f"tensor {name!r} declares shape {shape} ({n_bytes} bytes) at "
                             f"bytes {begin}..{end} of the data, which has "
                             f"{size - data_start} bytes")
    return dtype, tuple(shape), data_start + begin, data_start + end


def _check_layout(path: Path, tensors: dict, data_start: int, size: int) -> None:
    """The tensors must tile the data exactly, as safetensors writes them."""
    position = data_start
    for _, _, begin, end in sorted(tensors.values(), key=lambda entry: entry[2:]):
        if begin != position:
            raise _corrupt(path, "the tensors' data overlaps or has gaps")
        position = end
    if position != size:
        raise _corrupt(path, f"{size - position} bytes after the last tensor")
