"""to_torch(include_preprocessing=True) is the ONNX graph's pipeline: a labelled scaling
module, raw inputs in, probabilities out; the install hints match the README's pins."""

import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.io.export import onnx_model


@pytest.mark.parametrize("output", [None, "softmax", "log_softmax"])
def test_the_torch_pipeline_and_the_onnx_graph_both_give_probabilities(output, rng):
    torch = pytest.importorskip("torch")
    X = rng.normal(size=(30, 5)) * 4 + 2
    y = np.arange(30) % 3
    model = cr.mlp(5, 6, 3, activation="tanh", output=output, seed=0)
    loss = {None: cr.SoftmaxCrossEntropy, "softmax": cr.CrossEntropy,
            "log_softmax": cr.NLLLoss}[output]()
    cr.fit(model, loss, cr.SGD(0.1), X, y, epochs=3, verbose=0, seed=0, scaling="standard")
    module = model.to_torch(include_preprocessing=True)
    names = [name for name, _ in module.named_children()]
    assert names[0] == "scaling" and "(scaling): Linear(in_features=5, out_features=5" in repr(
        module)
    assert names[-1] == ("probabilities" if output is None else "3")
    probabilities = module(torch.tensor(X)).detach().numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probabilities, model.predict_proba(X), rtol=1e-12, atol=1e-14)
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(onnx_model(model).SerializeToString())
    graph = session.run(["probabilities"], {"input": X})[0]
    np.testing.assert_allclose(probabilities, graph, rtol=1e-10, atol=1e-14)
    # Without preprocessing: the layers alone, named as chainrule's, prepared inputs in.
    layers = model.to_torch()
    assert [name for name, _ in layers.named_children()] == [
        str(index) for index in range(len(model.layers))]
    np.testing.assert_allclose(layers(torch.tensor(model.prepare(X).view(np.ndarray)))
                               .detach().numpy(), model(model.prepare(X)), rtol=1e-12)


def test_install_hints_name_the_pinned_torch_and_the_onnx_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"^to_torch needs PyTorch: pip install torch==2\.13\.0 "
                                          r"\(the version chainrule is tested against\)$"):
        cr.mlp(2, 2, 2).to_torch()
    with pytest.raises(ImportError, match=r'pip install onnx, or pip install "chainrule\[onnx\]"'
                                          r" for onnx and onnxruntime"):
        onnx_model(cr.mlp(2, 2, 2))
