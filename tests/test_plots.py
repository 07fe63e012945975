"""chainrule.explain.plots: each picture renders (Agg) to a PNG; clear error without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from chainrule.cli import main
from chainrule.experiment import digits_example
from chainrule.explain import plots
from chainrule.explain.backprop import explain_backprop, explain_softmax_cross_entropy, loss_for
from chainrule.nn.training import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` in pixels of a PNG, asserting its signature and a non-trivial size."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000  # blank axes of the same size: 2 kB (one panel) to 12 kB (two)
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _history(epochs: int = 6, best_epoch: int | None = None) -> History:
    history = History()
    decay = np.exp(-np.arange(epochs) / 3)
    history.history["loss"] = list(1.5 * decay + 0.1)
    history.history["val_loss"] = list(1.4 * decay + 0.2)
    history.history["accuracy"] = list(1 - 0.8 * decay)
    history.history["val_accuracy"] = list(0.95 - 0.7 * decay)
    history.epoch = list(range(epochs))
    history.best_epoch = best_epoch
    return history


def test_plot_history(tmp_path: Path) -> None:
    path = plots.plot_history(_history(best_epoch=4), tmp_path / "curves.png")
    width, height = _png_size(path)
    assert width > height > 300  # two panels side by side


def test_plot_history_without_accuracy_or_validation(tmp_path: Path) -> None:
    history = History()
    history.history["loss"] = [1.0, 0.5, 0.25]
    width, height = _png_size(plots.plot_history(history, tmp_path / "loss.png",
                                                 loss_label="MSE"))
    assert width < 1.5 * height  # one panel
    with pytest.raises(ValueError, match="no epochs"):
        plots.plot_history(History(), tmp_path / "empty.png")


@pytest.mark.parametrize(("logits", "target"), [([1.75, 1.75], 1),
                                                (np.linspace(-1, 2, 12), 5)])
def test_plot_softmax_jacobian(logits, target, tmp_path: Path) -> None:
    derivation = explain_softmax_cross_entropy(logits, target)
    _png_size(plots.plot_softmax_jacobian(derivation, tmp_path / "jacobian.png"))


def test_plot_gradients(tmp_path: Path) -> None:
    model, x, label = digits_example()
    table = explain_backprop(model, loss_for(model), x, label)
    width, height = _png_size(plots.plot_gradients(table, tmp_path / "gradients.png"))
    assert width > 1000 and height > 800  # 2×2 panels: two weight maps, J, gradient sizes


def test_other_formats_and_bad_paths(tmp_path: Path) -> None:
    derivation = explain_softmax_cross_entropy([1.0, 2.0, 3.0], 0)
    svg = plots.plot_softmax_jacobian(derivation, tmp_path / "jacobian.svg")
    assert svg.read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match=r"must end in one of .*\.png"):
        plots.plot_softmax_jacobian(derivation, tmp_path / "jacobian")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plots.plot_softmax_jacobian(derivation, tmp_path / "missing" / "jacobian.png")


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path: Path, capsys) -> None:
    for name in [name for name in sys.modules if name.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r'pip install "chainrule\[plot\]"'):
        plots.plot_history(_history(), tmp_path / "curves.png")
    # The CLI says so before it trains, not after.
    assert main(["train", "--epochs", "50", "--plot", str(tmp_path / "c.png"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert 'pip install "chainrule[plot]"' in captured.err
    assert "training on" not in captured.err and not (tmp_path / "c.png").exists()


def test_cli_train_plot(tmp_path: Path, capsys) -> None:
    path = tmp_path / "curves.png"
    assert main(["train", "--epochs", "3", "--hidden", "16", "--quiet", "--plot",
                 str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().err
    _png_size(path)


@pytest.mark.parametrize("what", [["--logits", "1.75", "1.75", "--label", "1"],
                                  ["--network"]])
def test_cli_explain_plot(what: list[str], tmp_path: Path, capsys) -> None:
    path = tmp_path / "explain.png"
    assert main(["explain", *what, "--plot", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().err
    _png_size(path)


def test_an_interrupted_plot_leaves_the_previous_file(tmp_path: Path, capsys,
                                                      interrupted_writes) -> None:
    path = tmp_path / "explain.svg"
    path.write_text("<svg>the previous plot</svg>\n")
    command = ["explain", "--logits", "1.75", "1.75", "--label", "1", "--plot", str(path)]
    with interrupted_writes():
        assert main(command) == 130
    assert path.read_text() == "<svg>the previous plot</svg>\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["explain.svg"]
    assert main(command) == 0
    assert path.read_text().rstrip().endswith("</svg>")  # the whole new plot
    assert "the previous plot" not in path.read_text()


def test_a_format_matplotlib_cannot_write_here_is_one_line(tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    """.pgf needs LaTeX: without it `train --plot x.pgf` trained, then ended in a traceback."""
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["train", "--epochs", "1", "--quiet", "--plot", str(tmp_path / "x.pgf")]) == 2
    captured = capsys.readouterr()
    assert "cannot save the plot to" in captured.err and "x.pgf" in captured.err
    assert "the name must end in one of" in captured.err and ".pgf" not in captured.err.split(
        "one of")[1]
    assert "test accuracy" not in captured.out  # refused before training

    from matplotlib.figure import Figure

    def refuse(self, *args, **kwargs):
        raise RuntimeError("the writer is missing")

    monkeypatch.setattr(Figure, "savefig", refuse)
    with pytest.raises(ValueError, match=r"cannot save the plot to '.*h\.png': matplotlib cannot "
                                         r"write \.png here \(the writer is missing\)"):
        plots.plot_history(_history(), tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()
