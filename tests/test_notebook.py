"""examples/tour.ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel):
progress bars without TqdmWarning, the summary, a failing softmax check, explain, a plot."""

import importlib.util
import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
if importlib.util.find_spec("ipykernel") is None:  # not imported here: it is the kernel's
    pytest.skip("needs ipykernel", allow_module_level=True)
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent


def test_tour_notebook_runs_in_a_kernel(monkeypatch):
    # The kernel is a subprocess: it must import this checkout's chainrule.
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    notebook = nbformat.read(ROOT / "examples" / "tour.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    streams = "".join(output.get("text", "") for output in outputs
                      if output.output_type == "stream")
    assert "TqdmWarning" not in streams and "IProgress" not in streams
    train = "".join(output.get("text", "") for output in code[0].outputs)
    assert "epoch 10/10" in train and "val_accuracy" in train
    summary = code[1].outputs
    assert "2,410 parameters" in streams  # 64·32 + 32 + 32·10 + 10
    assert any("text/html" in output.get("data", {}) and "<b>History</b>" in
               output["data"]["text/html"] for output in summary)
    assert "FAILED: Jacobian" in streams and "evaluated_at_input" in streams
    assert "PASSED" in streams
    explained = code[3].outputs[0]["data"]
    assert "text/html" in explained and "A - T" in explained["text/plain"]
    assert "image/png" in code[4].outputs[0]["data"]
