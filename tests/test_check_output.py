"""chainrule check's text: the step-size sweep fits a terminal and has numbers in every row;
--help describes only what check does."""

import math
import subprocess
import sys

from chainrule import experiment
from chainrule.cli import main


def test_sweep_has_finite_numbers_in_every_row_and_fits_100_columns(capsys):
    report = experiment.check_network(hidden=(8,), batch_size=4)
    sweep = report.eps_sweep()
    loss_row = next(row for row in sweep.rows if row.name.startswith("loss"))
    assert all(math.isfinite(value) for value in loss_row.central_error + loss_row.remainder)
    assert abs(loss_row.order - 2) < 0.2
    main(["check", "--hidden", "8", "--batch-size", "4", "--sweep"])
    out = capsys.readouterr().out
    sweep_text = out[out.index("step-size sweep"):]
    assert "nan" not in sweep_text
    assert max(len(line) for line in sweep_text.splitlines()) <= 100
    lines = sweep_text.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("loss SoftmaxCrossEntropy")))
    assert lines[at].endswith("order  2.00  ok")
    assert lines[at + 1].startswith("  central  ") and lines[at + 2].startswith("  remainder")


def test_check_help_describes_its_own_seed():
    help_text = subprocess.run([sys.executable, "-m", "chainrule", "check", "--help"],
                               capture_output=True, text=True, check=True).stdout
    flat = " ".join(help_text.split())
    assert ("seed for the rows checked, the weights and the random directions and entries "
            "(default: 0)") in flat
    assert "split" not in flat and "shuffling" not in flat
