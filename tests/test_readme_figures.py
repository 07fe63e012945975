"""The README shows what a user sees: the quick start's output, the default accuracies, the
machine next to a time, the install lines for the export extras and the CSV header advice."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from chainrule import experiment

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
TIME = re.compile(r"\d+\.\d\d s$")


def quick_start_output() -> list[str]:
    block = README[README.index("## Quick start"):]
    block = block[block.index("```text\n") + 8:]
    return block[:block.index("```")].splitlines()


def test_quick_start_output_is_what_train_prints():
    shown = quick_start_output()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = experiment.run(experiment.TrainConfig(), verbose=1)
    printed = out.getvalue().splitlines()
    epochs = {line.split(" - ")[0]: TIME.sub("", line) for line in printed
              if line.startswith("epoch ")}
    for line in shown:
        if line.startswith("epoch "):
            assert TIME.sub("", line) == epochs[line.split(" - ")[0]]
    assert shown[-2] == result.history.note == printed[-1]
    assert TIME.sub("", shown[-1]) == TIME.sub("", result.summary())
    assert shown[0].startswith("training on digits: hidden [64] relu, adam lr=0.001, about "
                               f"{experiment.STEP_BUDGET} steps")
    after = README[README.index(shown[-1]):][:800]
    assert "2-core AMD EPYC" in after and "2 threads" in after  # the machine beside the time


@pytest.mark.parametrize("data", ["iris", "wine", "breast_cancer"])
def test_default_accuracies_in_the_readme_are_measured(data):
    claim = re.search(r"which reaches test accuracy (.*?) with the other defaults",
                      README, re.S)[1]
    shown = float(re.search(rf"([01]\.\d+) on {data}\b", claim)[1])
    result = experiment.run(experiment.TrainConfig(data=data), verbose=0)
    assert round(result.test_accuracy, len(str(shown)) - 2) == shown


def test_install_lines_and_csv_advice():
    export = README[README.index("When you outgrow chainrule"):]
    assert "pip install torch==2.13.0" in export and 'pip install "chainrule[onnx]"' in export
    assert "pip install torch`" not in README  # no unpinned torch anywhere
    assert "df.to_csv(path, index=False, header=False)" in README
