"""Writing files: symbolic links, temporary files of killed saves, SIGTERM, output paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.io.files import check_output_path, write_bytes_atomically

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX links, locks and signals")


@posix
def test_saving_to_a_symlink_writes_its_target(tmp_path: Path) -> None:
    target = tmp_path / "models" / "v1.safetensors"
    target.parent.mkdir()
    link = tmp_path / "current.safetensors"
    link.symlink_to(target)
    model = cr.mlp(4, [8], 3, seed=0)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(cr.load(target).params["0.W"], model.params["0.W"])


@posix
def test_stale_temporary_files_of_the_target_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    stale = tmp_path / ".m.safetensors.abc123.tmp"  # what SIGKILL during a save leaves
    stale.write_bytes(b"x" * 1000)
    other = tmp_path / ".other.safetensors.abc123.tmp"  # another target's: left alone
    other.write_bytes(b"y")
    write_bytes_atomically(path, b"new")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        ".other.safetensors.abc123.tmp", "m.safetensors"]
    assert path.read_bytes() == b"new"


@posix
def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old")
    script = f"""
import sys, time
from chainrule.io import files
def slow(file, data):
    file.write(data[:10]); file.flush()
    print("writing", flush=True)
    time.sleep(30)
files._write_payload = slow
files.write_bytes_atomically({str(path)!r}, b"new" * 1000)
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               env={**os.environ,
                                    "PYTHONPATH": str(Path(cr.__file__).parents[1])})
    assert process.stdout.readline() == b"writing\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == -signal.SIGTERM  # still dies of the signal
    assert [entry.name for entry in tmp_path.iterdir()] == ["m.safetensors"]
    assert path.read_bytes() == b"old"


def test_check_output_path(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "m.safetensors", "--out") == tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match=r"--out .* is a folder"):
        check_output_path(tmp_path, "--out")
    with pytest.raises(ValueError, match=r"folder .*nope' does not exist"):
        check_output_path(tmp_path / "nope" / "m.safetensors", "--out")
    if os.name == "posix":
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(ValueError, match="not a regular file"):
            check_output_path(tmp_path / "fifo", "--json")

