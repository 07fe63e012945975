"""The command line under faults: divergence, Ctrl-C, bad output paths, closed or full streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import chainrule as cr
from chainrule import experiment
from chainrule.cli import main

IRIS = ["--data", "iris", "--quiet", "--epochs", "3"]


def run_cli(*args: str, close: int | None = None) -> subprocess.CompletedProcess:
    """``python -m chainrule ARGS`` with file descriptor ``close`` closed, like ``>&-``."""
    return subprocess.run(
        [sys.executable, "-m", "chainrule", *args], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(cr.__file__).parents[1])},
        preexec_fn=None if close is None else lambda: os.close(close))


def test_train_divergence_is_one_line_and_exit_1(capsys):
    assert main(["train", *IRIS, "--lr", "inf"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    message = captured.err.strip().splitlines()[-1]
    assert message.startswith("chainrule train: error: fit: training diverged at epoch 1, "
                              "batch 2")
    assert "all finite" in message


def test_train_interrupted_says_what_it_kept(tmp_path, monkeypatch, capsys):
    make_optimizer = experiment.make_optimizer

    def interrupting(name: str, lr: float) -> cr.Optimizer:
        optimizer, steps = make_optimizer(name, lr), [0]
        step = optimizer.step

        def interrupted_step(model) -> None:
            steps[0] += 1
            if steps[0] == 4 * 4 + 2:  # 112 training rows: 4 batches per epoch; in epoch 5
                raise KeyboardInterrupt
            step(model)

        optimizer.step = interrupted_step
        return optimizer

    monkeypatch.setattr(experiment, "make_optimizer", interrupting)
    checkpoint = tmp_path / "best.safetensors"
    out = tmp_path / "final.safetensors"
    args = ["train", "--data", "iris", "--quiet", "--epochs", "50", "--lr", "0.01",
            "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main(args) == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("chainrule train: interrupted; 4 epoch(s) completed; "
                              f"{checkpoint} holds the best model, from epoch ")
    assert f"{out} was not written" in message and not out.exists()
    assert cr.load(checkpoint).classes.tolist() == [0, 1, 2]
    assert main(args[:-4]) == 130
    assert capsys.readouterr().err.strip().endswith(
        "4 epoch(s) completed; nothing was saved (--checkpoint PATH keeps the best model while "
        "training)")


def test_train_checkpoint(tmp_path, capsys):
    checkpoint = tmp_path / "best.safetensors"
    assert main(["train", *IRIS, "--checkpoint", str(checkpoint)]) == 0
    assert cr.load(checkpoint).input_width == 4


@pytest.mark.parametrize("option", ["--out", "--checkpoint", "--plot"])
def test_train_output_paths_are_checked_before_training(tmp_path, capsys, option):
    name = "m.png" if option == "--plot" else "m.safetensors"
    (tmp_path / name).mkdir()
    for path, reason in [(tmp_path / "missing" / name, "does not exist"),
                         (tmp_path / name, "is a folder")]:
        assert main(["train", *IRIS, option, str(path)]) == 2
        captured = capsys.readouterr()
        assert reason in captured.err and "training on" not in captured.err
        assert captured.out == ""


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX, not root")
def test_read_only_destinations_are_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["train", *IRIS, "--out", str(locked / "m.safetensors")]) == 2
        assert "no permission to write in folder" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    read_only = tmp_path / "ro.json"
    read_only.write_text("{}")
    read_only.chmod(0o400)
    assert main(["check", "--data", "iris", "--hidden", "4", "--json", str(read_only)]) == 2
    assert "--json" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--hidden", "32", "-3"], "hidden (--hidden) widths must be at least 1, got 32 -3"),
    (["check", "--hidden", "0"], "hidden (--hidden) widths must be at least 1, got 0"),
    (["train", "--epochs", "0"], "epochs (--epochs) must be at least 1, got 0"),
    (["train", "--batch-size", "0"], "batch_size (--batch-size) must be at least 1, got 0"),
    (["check", "--batch-size", "-1"], "batch_size (--batch-size) must be at least 1, got -1"),
])
def test_sizes_below_one_are_refused_by_their_option(argv, message, capsys):
    """``--epochs 0`` used to train the default number of epochs; a zero width named Dense."""
    assert main([*argv, "--data", "iris", "--quiet"] if argv[0] == "train" else
                [*argv, "--data", "iris"]) == 2
    assert capsys.readouterr().err == f"chainrule {argv[0]}: error: {message}\n"


def test_an_interrupted_json_report_leaves_the_previous_one(tmp_path, capsys,
                                                            interrupted_writes):
    report = tmp_path / "report.json"
    report.write_text('{"passed": true}\n')
    command = ["check", "--data", "iris", "--hidden", "4", "--json", str(report)]
    with interrupted_writes():
        assert main(command) == 130
    assert report.read_text() == '{"passed": true}\n'
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.json"]
    assert main(command) == 0
    assert json.loads(report.read_text())["passed"] is True


def test_export_and_predict_outputs_are_checked_first(tmp_path, capsys):
    model = cr.mlp(4, [4], 3, seed=0).save(tmp_path / "m.safetensors")
    assert main(["export", str(model), "--onnx", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "--onnx" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("1,2,3,4\n")
    assert main(["predict", str(model), str(tmp_path / "x.csv"), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_check_sample_zero_is_refused(capsys):
    assert main(["check", "--data", "iris", "--hidden", "4", "--sample", "0"]) == 2
    assert "sample must be >= 1" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="shell redirections")
@pytest.mark.parametrize("command", [["evaluate", "M", "--data", "iris"],
                                     ["check", "--data", "iris", "--hidden", "4"]])
def test_closed_stdout_is_an_error(tmp_path, command):
    model = cr.mlp(4, [4], 3, seed=0).save(tmp_path / "m.safetensors")
    command = [str(model) if part == "M" else part for part in command]
    result = run_cli(*command, close=1)
    assert result.returncode == 2
    assert "standard output is closed" in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_stdout_is_one_line(tmp_path):
    model = cr.mlp(4, [4], 3, seed=0).save(tmp_path / "m.safetensors")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "chainrule", "evaluate", str(model), "--data", "iris"],
            stdout=full, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(cr.__file__).parents[1])})
    assert result.returncode == 1
    assert result.stderr.strip() == ("chainrule evaluate: error: cannot write the results to "
                                     "standard output: No space left on device")


@pytest.mark.skipif(os.name != "posix", reason="shell redirections")
def test_closed_stderr_keeps_errors_off_stdout():
    result = run_cli("train", "--data", "no-such-data", close=2)
    assert result.returncode == 2 and result.stdout == ""


def test_ctrl_c_in_any_command_is_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "check_network", interrupted)
    assert main(["check"]) == 130
    assert capsys.readouterr().err == "chainrule check: interrupted\n"
