"""Writing files safely: output paths checked before any work, atomic replacement, no
temporary file left behind (on errors, SIGTERM, or — removed on the next save — SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["check_output_path", "write_bytes_atomically"]

if os.name == "posix":
    import fcntl
else:  # pragma: no cover - no advisory locks: stale temporary files are left alone
    fcntl = None


def check_output_path(path: str | os.PathLike, option: str = "output") -> Path:
    """``path`` as a ``Path`` if a file can be written there (before any work is done), else a
    ``ValueError`` naming ``option``: an existing folder to write into, write permission, and
    not a folder itself. A symbolic link is checked (and later written) at its target."""
    path = Path(path)
    target = Path(os.path.realpath(path))
    where = f"{option} {str(path)!r}"
    if target.is_dir():
        raise ValueError(f"{where} is a folder; give a file name")
    if not target.parent.is_dir():
        raise ValueError(f"{where}: folder {str(target.parent)!r} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: no permission to write in folder {str(target.parent)!r}")
    if target.exists() and not target.is_file():
        raise ValueError(f"{where} exists and is not a regular file")
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{where} is read-only")
    return path


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always the old file or the new one.

    The bytes go to a temporary file ``.NAME.*.tmp`` in the same directory, are flushed to
    disk (fsync), and the file is renamed over ``path`` (``os.replace``, atomic on POSIX and
    Windows). A symbolic link is followed: its target is replaced, the link kept. On any
    error, including KeyboardInterrupt and SIGTERM, the temporary file is removed and
    ``path`` is untouched; temporary files that a killed save left for the same target are
    removed first.
    """
    path = Path(os.path.realpath(path))
    directory = path.parent
    # A replaced file keeps its permissions; a new one gets rw-r--r-- (mkstemp's 0600 would
    # hide it from other users).
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    _remove_stale_temporaries(path)
    with _terminate_as_exception():
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                                 dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as file:
                if fcntl is not None:  # held while writing: tells a live save from a stale one
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
                _write_payload(file, data)
                file.flush()
                os.fsync(file.fileno())
                os.chmod(temp_name, mode)
                if fcntl is not None:
                    os.replace(temp_name, path)  # still locked: no other save removes it
            if fcntl is None:
                os.replace(temp_name, path)  # Windows replaces only closed files
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
    if os.name == "posix":  # make the rename itself durable
        directory_descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)


def _write_payload(file: IO[bytes], data: bytes) -> None:
    file.write(data)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove ``.NAME.*.tmp`` files of ``path`` that no save holds locked (a killed save's)."""
    if fcntl is None:
        return
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            descriptor = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a save in progress holds it
        else:
            with contextlib.suppress(OSError):
                os.unlink(candidate)
        finally:
            os.close(descriptor)


class _Terminated(BaseException):
    """SIGTERM arrived during a save; raised so that the temporary file is cleaned up."""


@contextlib.contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM (when it would kill the process: default handler, main
    thread) raises ``_Terminated``; after cleanup the signal is delivered again as usual."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
