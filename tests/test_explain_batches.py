"""explain with batches of logits, several --logits, extreme and negative numbers, and the
messages of explain --network --model."""

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.explain.derivation import Derivation


def test_a_batch_of_logits_is_explained_row_by_row():
    single = cr.explain_softmax_cross_entropy(np.array([[2, 1, 0.1]]), 0)  # the README's shape
    assert isinstance(single, Derivation)
    np.testing.assert_allclose(single["A-T"].value, cr.softmax(np.array([2, 1, 0.1])) - [1, 0, 0])
    logits = np.array([[2.0, 1.0, 0.1], [0.0, 0.0, 5.0]])
    rows = cr.explain_softmax_cross_entropy(logits, [0, 2])
    assert [d.title.endswith(f"row {i} of 2") for i, d in enumerate(rows)] == [True, True]
    for d, z, label in zip(rows, logits, [0, 2], strict=True):
        expected = cr.explain_softmax_cross_entropy(z, label)
        np.testing.assert_array_equal(d["dE/dZ"].value, expected["dE/dZ"].value)
        assert d.agrees
    same_target = cr.explain_softmax_cross_entropy(logits, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(same_target[0]["A-T"].value, cr.softmax(logits[0]) - [0, 0, 1])
    second = cr.explain_softmax_cross_entropy(logits, np.eye(3)[[0, 2]], row=1)
    np.testing.assert_array_equal(second["dE/dZ"].value, rows[1]["dE/dZ"].value)
    with pytest.raises(ValueError, match="3 labels for 2 rows of logits"):
        cr.explain_softmax_cross_entropy(logits, [0, 1, 2])
    with pytest.raises(ValueError, match="row 2 is out of range for 2 rows"):
        cr.explain_softmax_cross_entropy(logits, 0, row=2)


def test_cli_takes_several_logits_and_negative_scientific_numbers(capsys):
    assert main(["explain", "--logits", "2", "1", "0.1", "--logits", "0", "0", "5",
                 "--label", "0", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("Softmax + cross-entropy, step by step") == 2
    assert "target class 0 (one-hot), row 0 of 2" in out
    assert "target class 2 (one-hot), row 1 of 2" in out
    assert main(["explain", "--logits", "1", "-1e4", "--label", "0"]) == 0
    assert "(1, -10000)" in capsys.readouterr().out
    assert main(["explain", "--logits", "1", "2", "--logits", "1", "2", "3", "--label", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "chainrule explain: error: every --logits needs the same number of classes; got 2, 3")


def test_huge_logits_leak_no_warning(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status = main(["explain", "--logits", "1000", "0", "-1000", "--label", "2"])
    out = capsys.readouterr().out
    assert status == 1  # A underflows where T > 0: the long way cannot agree, and says why
    assert "and then ∂E/∂Z = (-inf, 0, inf), not A - T" in out
    assert "A underflows (to 0 or a subnormal) where T > 0" in out


def test_the_seed_example_prints_no_negative_zero():
    softmax, cross_entropy = cr.Softmax(), cr.CrossEntropy()
    cross_entropy.forward(softmax.forward(np.array([[1.75, 1.75]])), np.array([[0.0, 1.0]]))
    gradient = cross_entropy.backward()
    assert str(gradient) == "[[ 0. -2.]]" and not np.signbit(gradient[0, 0])
    nll = cr.NLLLoss()
    nll.forward(np.log(np.array([[0.5, 0.5]])), np.array([1]))
    assert not np.any(np.signbit(nll.backward()[0, 0]))


def test_explain_network_model_without_data_says_data_defaults_to_digits(tmp_path, capsys):
    X, y = cr.datasets.load("wine")
    model = cr.mlp(13, 4, 3, seed=0)
    cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam(0.01), X, y, epochs=2, scaling="standard",
           verbose=0)
    path = model.save(tmp_path / "wine.safetensors")
    assert main(["explain", "--network", "--model", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "chainrule explain: error: the model expects 13 features per row; the data has 64 "
        "(shape (1, 64)) — the sample comes from --data, which defaults to digits: give the "
        "dataset the model was trained on, e.g. --data wine")
    assert main(["explain", "--network", "--model", str(path), "--data", "wine"]) == 0
