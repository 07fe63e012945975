"""Calling a user's code during a check: an exception it raises is reported as theirs.

:func:`call_user` runs a user's function; if it raises, :class:`UserCodeError` names the
exception, the user's file and line (the deepest frame outside chainrule and the libraries),
the function, and the shapes of the arguments it was called with.
"""

from __future__ import annotations

import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["UserCodeError", "call_user", "describe_shapes", "user_location"]

_CHAINRULE = str(Path(__file__).resolve().parents[1])
_LIBRARIES = tuple(dict.fromkeys(
    str(Path(sysconfig.get_paths()[key]).resolve()) for key in ("stdlib", "purelib", "platlib")))


class UserCodeError(RuntimeError):
    """The user's code raised during a check (the original exception is ``__cause__``).

    ``location`` is ``"file.py:line"`` of the user's frame, ``function`` the name of the
    function that was called, ``shapes`` the argument shapes it got.
    """

    def __init__(self, message: str, location: str, function: str, shapes: str) -> None:
        super().__init__(message)
        self.location, self.function, self.shapes = location, function, shapes


def _is_library(filename: str) -> bool:
    path = str(Path(filename).resolve())
    return path.startswith(_CHAINRULE) or path.startswith(_LIBRARIES) or filename.startswith("<")


def user_location(error: BaseException, function: Callable | None = None) -> str:
    """``file.py:line`` of the deepest frame of ``error`` in the user's code, the file
    relative to the working directory when it is inside it (as the user would type it).

    Falls back to where ``function`` is defined, then to the deepest frame of all.
    """
    if isinstance(error, SyntaxError) and error.filename:
        return f"{_shown(error.filename)}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    mine = [frame for frame in frames if not _is_library(frame.filename)]
    if mine:
        return f"{_shown(mine[-1].filename)}:{mine[-1].lineno}"
    code = getattr(getattr(function, "__func__", function), "__code__", None)
    if code is not None:
        return f"{_shown(code.co_filename)}:{code.co_firstlineno}"
    return f"{_shown(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"


def _shown(filename: str) -> str:
    """``filename`` relative to the working directory if it is a file inside it, else as is."""
    if filename.startswith("<"):  # <string>, <stdin>, a notebook cell
        return filename
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):  # outside the working directory, or that was removed
        return filename


def describe_shapes(args: tuple) -> str:
    """``"(3, 4)"`` or ``"(3, 4), (4, 2)"``: the shapes (or types) of ``args``."""
    parts = []
    for value in args:
        shape = getattr(value, "shape", None)
        if shape is not None:
            parts.append(str(tuple(shape)))
        elif isinstance(value, int | float):
            parts.append(repr(value))
        else:
            parts.append(type(value).__name__)
    return ", ".join(parts) or "no arguments"


def call_user(function: Callable, *args: object, name: str | None = None) -> object:
    """``function(*args)``; an exception from it becomes :class:`UserCodeError`.

    NumPy floating-point warnings in the user's code are not errors here (a check reports
    what comes out, e.g. a non-finite gradient, by its own rules).
    """
    name = name or getattr(function, "__qualname__", getattr(function, "__name__", "function"))
    try:
        with np.errstate(all="ignore"):
            return function(*args)
    except Exception as error:  # any exception of the user's code is reported as theirs
        location = user_location(error, function)
        shapes = describe_shapes(args)
        called = (f", called with {'input shape' if len(args) == 1 else 'arguments'} {shapes}"
                  if args else "")
        message = f"{name} raised {type(error).__name__}: {error} — at {location}{called}"
        raise UserCodeError(message, location, name, shapes) from error

