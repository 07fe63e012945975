"""Export: PyTorch modules (outputs and gradients against PyTorch's own) and ONNX graphs
(run in onnxruntime against ``predict_proba`` on raw inputs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule
from chainrule import (
    SGD,
    CrossEntropy,
    Dense,
    Layer,
    LogSoftmax,
    NLLLoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    fit,
    mlp,
)
from chainrule.cli import main
from chainrule.io import export

OUTPUTS = {"logits": None, "softmax": Softmax, "log_softmax": LogSoftmax}


def every_layer_model(output: type[Layer] | None = None, dtype=np.float64) -> Sequential:
    """Dense → Tanh → Dense → Sigmoid → Dense → ReLU → Dense [→ output], random biases."""
    layers: list[Layer] = [Dense(5, 7, seed=1), Tanh(), Dense(7, 6, seed=2), Sigmoid(),
                           Dense(6, 4, seed=3), ReLU(), Dense(4, 3, seed=4)]
    if output is not None:
        layers.append(output())
    model = Sequential(layers)
    rng = np.random.default_rng(5)
    for param in model.parameters():
        param[...] = rng.normal(size=param.shape)
    return model.astype(dtype)


class Square(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * x


def raw_data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw inputs far from zero mean and unit scale, so a missing scaling would show."""
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[10, -5, 0, 100, 3], scale=[2, 1, 0.1, 30, 5], size=(n, 5))
    y = np.array(["low", "mid", "high"])[(X[:, 0] > 10).astype(int) + (X[:, 3] > 110)]
    return X, y


# --- PyTorch ---------------------------------------------------------------------------------

def torch_loss(torch, output_kind: str, output, target):
    functional = torch.nn.functional
    if output_kind == "logits":
        return functional.cross_entropy(output, target)
    if output_kind == "log_softmax":
        return functional.nll_loss(output, target)
    return functional.nll_loss(torch.log(output), target)


@pytest.mark.parametrize("output", OUTPUTS)
def test_to_torch_outputs_and_gradients_equal_pytorch(output: str) -> None:
    torch = pytest.importorskip("torch")
    model = every_layer_model(OUTPUTS[output])
    module = model.to_torch()
    assert [type(layer).__name__ for layer in module] == [
        "Linear", "Tanh", "Linear", "Sigmoid", "Linear", "ReLU", "Linear",
        *{"logits": [], "softmax": ["Softmax"], "log_softmax": ["LogSoftmax"]}[output]]
    rng = np.random.default_rng(6)
    x, labels = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)

    loss = {"logits": SoftmaxCrossEntropy, "softmax": CrossEntropy,
            "log_softmax": NLLLoss}[output]()
    ours = model.forward(x)
    our_loss = loss.forward(ours, labels)
    our_grad_x = model.backward(loss.backward())

    x_torch = torch.tensor(x, requires_grad=True)
    theirs = module(x_torch)
    their_loss = torch_loss(torch, output, theirs, torch.tensor(labels))
    their_loss.backward()

    assert theirs.dtype == torch.float64
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert our_loss == pytest.approx(their_loss.item(), rel=1e-12)
    np.testing.assert_allclose(our_grad_x, x_torch.grad.numpy(), rtol=1e-9, atol=1e-12)
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Dense):
            np.testing.assert_allclose(layer.grads["W"], module[index].weight.grad.numpy().T,
                                       rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(layer.grads["b"], module[index].bias.grad.numpy(),
                                       rtol=1e-9, atol=1e-12)


def test_to_torch_copies_weights_in_the_model_dtype() -> None:
    torch = pytest.importorskip("torch")
    model = every_layer_model(dtype=np.float32)
    module = model.to_torch()
    assert module[0].weight.dtype == torch.float32
    assert module[0].weight.shape == (7, 5)  # torch stores (out, in); chainrule W is (in, out)
    np.testing.assert_array_equal(module[0].weight.detach().numpy(), model.params["0.W"].T)
    with torch.no_grad():
        module[0].weight.zero_()
    assert np.abs(model.params["0.W"]).min() > 0  # a copy, not a view


def test_to_torch_with_preprocessing_takes_raw_inputs() -> None:
    torch = pytest.importorskip("torch")
    X, y = raw_data()
    model = mlp(5, [6], 3, activation="tanh", seed=0)
    fit(model, SoftmaxCrossEntropy(), SGD(0.1), X, y, epochs=3, verbose=0, seed=0,
        scaling="standard")
    module = model.to_torch(include_preprocessing=True)
    assert not module[0].weight.requires_grad
    # Raw inputs to probabilities, as the ONNX graph (issue 13: it gave logits before).
    probabilities = module(torch.tensor(X)).detach().numpy()
    np.testing.assert_allclose(probabilities, model.predict_proba(X), rtol=1e-12, atol=1e-14)
    assert len(model.to_torch()) == len(module) - 2


def test_to_torch_without_torch_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match="pip install torch"):
        every_layer_model().to_torch()


def test_to_torch_refuses_unknown_layers() -> None:
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"layer 1 \(Square\(\)\) has no PyTorch equivalent"):
        export.to_torch(Sequential([Dense(2, 2, seed=0), Square()]))


# --- ONNX ------------------------------------------------------------------------------------

def run_onnx(path: Path, X: np.ndarray) -> np.ndarray:
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": X})[0]


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_gives_the_loaded_models_probabilities(tmp_path: Path, output: str,
                                                    dtype: str) -> None:
    onnx = pytest.importorskip("onnx")
    X, y = raw_data()
    model = every_layer_model(OUTPUTS[output])
    fit(model, {"logits": SoftmaxCrossEntropy, "softmax": CrossEntropy,
                "log_softmax": NLLLoss}[output](), SGD(0.05), X, y, epochs=2, verbose=0,
        seed=0, scaling="standard")
    loaded = chainrule.load(model.save(tmp_path / "model.safetensors"))
    path = export.to_onnx(loaded, tmp_path / "model.onnx", dtype=dtype)

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    last = {"logits": ["Softmax"], "softmax": ["Softmax"], "log_softmax": ["LogSoftmax", "Exp"]}
    assert [node.op_type for node in proto.graph.node] == [
        "Sub", "Div", "MatMul", "Add", "Tanh", "MatMul", "Add", "Sigmoid", "MatMul", "Add",
        "Relu", "MatMul", "Add", *last[output]]
    assert json.loads(proto.metadata_props[0].value) == ["high", "low", "mid"]

    probabilities = run_onnx(path, X.astype(dtype))
    assert probabilities.dtype == dtype
    expected = loaded.predict_proba(X)
    np.testing.assert_allclose(probabilities, expected, rtol=0,
                               atol=1e-5 if dtype == "float32" else 1e-12)
    # The graph really contains the scaling: predictions match on raw inputs, and the
    # unscaled network would give something else.
    assert np.abs(loaded.predict_proba(loaded.preprocessing.transform(X)) - expected).max() > 1e-3
    np.testing.assert_array_equal(
        np.asarray(loaded.classes)[probabilities.argmax(axis=1)], loaded.predict(X))


def test_onnx_without_preprocessing_starts_at_the_first_layer(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = every_layer_model()
    proto = export.onnx_model(model)
    assert (proto.opset_import[0].version, proto.ir_version) == (17, 8)  # for older runtimes
    assert proto.graph.node[0].op_type == "MatMul"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert json.loads(proto.metadata_props[0].value) is None
    x = np.random.default_rng(7).normal(size=(6, 5))
    path = export.to_onnx(model, tmp_path / "m.onnx")
    np.testing.assert_allclose(run_onnx(path, x), model.predict_proba(x), rtol=0, atol=1e-12)


def test_onnx_errors(monkeypatch) -> None:
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got float16"):
        export.onnx_model(every_layer_model(), dtype=np.float16)
    with pytest.raises(ValueError, match=r"layer 1 \(Square\(\)\) has no ONNX equivalent"):
        export.onnx_model(Sequential([Dense(2, 2, seed=0), Square()]))
    with pytest.raises(ValueError, match="no Dense layer"):
        export.onnx_model(Sequential([Softmax()]))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install onnx"):
        export.onnx_model(every_layer_model())


def test_cli_export_onnx(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnx")
    X, y = raw_data()
    model = mlp(5, [6], 3, seed=0)
    fit(model, SoftmaxCrossEntropy(), SGD(0.1), X, y, epochs=2, verbose=0, seed=0,
        scaling="minmax")
    model_path = model.save(tmp_path / "model.safetensors")
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(model_path), "--onnx", str(onnx_path)]) == 0
    np.testing.assert_allclose(run_onnx(onnx_path, X), model.predict_proba(X), rtol=0,
                               atol=1e-12)
    assert main(["export", str(model_path), "--onnx", str(onnx_path), "--dtype",
                 "float32"]) == 0
    np.testing.assert_allclose(run_onnx(onnx_path, X.astype(np.float32)),
                               model.predict_proba(X), rtol=0, atol=1e-5)
    capsys.readouterr()
    onnx_path.write_bytes(b"not a model")
    assert main(["export", str(onnx_path), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "not a valid safetensors file" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
