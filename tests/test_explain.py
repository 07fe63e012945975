"""chainrule.explain: the seed question's numbers, any C, the layer table against backward, CLI."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule
from chainrule.cli import main
from chainrule.experiment import dataset_example, digits_example
from chainrule.explain import derivation
from chainrule.explain.backprop import explain_backprop, explain_softmax_cross_entropy, loss_for
from chainrule.nn.layers import Dense, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from chainrule.nn.losses import CrossEntropy, MSELoss, NLLLoss, SoftmaxCrossEntropy
from chainrule.nn.network import Sequential, mlp

SEED_LOGITS = [1.75, 1.75]


@pytest.fixture
def seed_derivation() -> derivation.Derivation:
    return explain_softmax_cross_entropy(SEED_LOGITS, [0, 1])


# ---- the first seed question, number by number ----------------------------------------------

def test_seed_question_values(seed_derivation) -> None:
    d = seed_derivation
    np.testing.assert_array_equal(d["A"].value, [0.5, 0.5])
    assert d["E"].value == pytest.approx(math.log(2), abs=1e-15)
    np.testing.assert_array_equal(d["dE/dA"].value, [0.0, -2.0])
    np.testing.assert_array_equal(d["J"].value, [[0.25, -0.25], [-0.25, 0.25]])
    np.testing.assert_array_equal(d["dE/dZ"].value, [0.5, -0.5])
    np.testing.assert_array_equal(d["A-T"].value, [0.5, -0.5])
    np.testing.assert_allclose(d["numerical"].value, [0.5, -0.5], atol=1e-8)
    assert d["chain=shortcut"].passed and d["chain=numerical"].passed and d.agrees
    assert [step.key for step in d] == ["Z", "T", "A", "E", "dE/dA", "J", "dE/dZ", "A-T",
                                        "numerical", "chain=shortcut", "chain=numerical"]


def test_label_and_one_hot_target_give_the_same_derivation(seed_derivation) -> None:
    by_label = explain_softmax_cross_entropy(SEED_LOGITS, 1)
    assert str(by_label) == str(seed_derivation)


def test_text_shows_every_seed_number_aligned(seed_derivation) -> None:
    text = str(seed_derivation)
    for expected in ["(1.75, 1.75)", "(0, 1)", "(0.5, 0.5)", "0.693147", "-ln 0.5", "(0, -2)",
                     "[ 0.25  -0.25]", "[-0.25   0.25]"]:
        assert expected in text
    assert text.count("(0.5, -0.5)") == 3  # chain rule, shortcut, numerical
    # The seed's mistake (J evaluated at Z) is named with the numbers it produced.
    assert "[[-1.3125, -3.0625], [-3.0625, -1.3125]]" in text and "(6.125, 2.625)" in text
    # The two rows of J line up under each other.
    rows = [line for line in text.splitlines() if "0.25" in line and "[" in line]
    assert len(rows) == 2 and rows[0].index("[") == rows[1].index("[")
    assert "-0 " not in text and "(-0," not in text


def test_markdown_shows_every_seed_number(seed_derivation) -> None:
    markdown = seed_derivation.to_markdown()
    for expected in ["`(1.75, 1.75)`", "`(0.5, 0.5)`", "`0.693147`", "`(0, -2)`",
                     "`[[0.25, -0.25], [-0.25, 0.25]]`"]:
        assert expected in markdown
    assert markdown.count("`(0.5, -0.5)`") == 3
    table_rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table_rows) == 2 + len(seed_derivation)
    assert all(row.count(" | ") == 4 for row in table_rows[2:])  # 5 cells, no stray pipes


def test_latex_shows_every_seed_number(seed_derivation) -> None:
    latex = seed_derivation.to_latex()
    for expected in [r"\begin{pmatrix} 1.75 & 1.75 \end{pmatrix}", "= 0.693147",
                     r"\begin{pmatrix} 0 & -2 \end{pmatrix}",
                     r"\begin{pmatrix} 0.25 & -0.25 \\ -0.25 & 0.25 \end{pmatrix}"]:
        assert expected in latex
    assert latex.count(r"\begin{pmatrix} 0.5 & -0.5 \end{pmatrix}") == 3


def _assert_valid_latex(latex: str) -> None:
    """Structure a LaTeX compiler would demand: balanced environments and braces, one
    alignment point per line, rows separated by \\\\, ASCII outside comments."""
    body = [line for line in latex.splitlines() if not line.startswith("%")]
    assert all(line.isascii() for line in body)
    text = "\n".join(body)
    for environment in ("align*", "pmatrix"):
        opened = text.count(rf"\begin{{{environment}}}")
        assert opened > 0 or environment == "pmatrix"
        assert opened == text.count(rf"\end{{{environment}}}")
    unescaped = re.sub(r"\\[{}]", "", text)
    depth = 0
    for char in unescaped:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    for block in re.findall(r"\\begin\{align\*\}\n(.*?)\n\\end\{align\*\}", text, re.S):
        lines = block.split("\n")
        assert all(line.endswith(r" \\") for line in lines[:-1])
        assert not lines[-1].endswith("\\\\")
        assert all(line.count("&=") == 1 and line.count("&&") == 1 for line in lines)


def test_latex_is_well_formed(seed_derivation) -> None:
    _assert_valid_latex(seed_derivation.to_latex())
    model, x, label = digits_example()
    _assert_valid_latex(explain_backprop(model, loss_for(model), x, label).to_latex())
    _assert_valid_latex(explain_softmax_cross_entropy(np.arange(40.0), 3).to_latex())


def test_html_for_jupyter(seed_derivation) -> None:
    page = seed_derivation._repr_html_()
    assert page.startswith("<p><b>") and page.count("<tr>") == 1 + len(seed_derivation)
    assert "(0, -2)" in page and "0.693147" in page and "&lt;" not in page.split("<table>")[0]
    assert "0.25  -0.25" in page


def test_lookup_of_a_missing_step_names_the_steps(seed_derivation) -> None:
    with pytest.raises(KeyError, match="dE/dZ"):
        seed_derivation["dE/dz"]


# ---- any number of classes ------------------------------------------------------------------

@settings(max_examples=30)
@given(n_classes=st.integers(2, 12), seed=st.integers(0, 10_000), soft=st.booleans())
def test_chain_rule_shortcut_and_numerical_agree_for_any_c(n_classes: int, seed: int,
                                                           soft: bool) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=n_classes)
    target = rng.dirichlet(np.ones(n_classes)) if soft else int(rng.integers(n_classes))
    d = explain_softmax_cross_entropy(logits, target)
    t = d["T"].value
    a = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(d["A"].value, a, rtol=1e-12)
    assert d["E"].value == pytest.approx(-np.sum(t * np.log(a)), rel=1e-12)
    np.testing.assert_allclose(d["dE/dA"].value, -t / a, rtol=1e-12)
    np.testing.assert_allclose(d["J"].value, np.diag(a) - np.outer(a, a), atol=1e-15)
    np.testing.assert_allclose(d["J"].value.sum(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(d["dE/dZ"].value, a - t, atol=1e-12)
    np.testing.assert_allclose(d["numerical"].value, a - t, atol=1e-7)
    assert d.agrees


def test_gradient_matches_pytorch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    logits = rng.normal(size=6)
    target = rng.dirichlet(np.ones(6))
    z = torch.tensor(logits, requires_grad=True)
    torch.nn.functional.cross_entropy(z[None], torch.tensor(target)[None]).backward()
    d = explain_softmax_cross_entropy(logits, target)
    np.testing.assert_allclose(d["dE/dZ"].value, z.grad.numpy(), atol=1e-12)


def test_large_c_is_summarised_in_every_format() -> None:
    d = explain_softmax_cross_entropy(np.linspace(-2, 2, 50), 7)
    text = str(d)
    assert "50×50" in text and "…" in text and "⋮" in text and "⋱" in text
    assert max(len(line) for line in text.splitlines()) < 160
    assert "…" in d.to_markdown()
    latex = d.to_latex()
    assert r"\cdots" in latex and r"\vdots" in latex and r"\ddots" in latex
    assert "common slip" not in text  # the worked mistake is shown only for small C


def test_full_matrices_up_to_the_limit() -> None:
    d = explain_softmax_cross_entropy(np.arange(10.0), 0)
    assert "…" not in str(d) and len(d["J"].value) == 10
    assert "…" in str(explain_softmax_cross_entropy(np.arange(10.0), 0, max_full=9))


@pytest.mark.parametrize("gap", [710.0, 800.0])  # A_0 subnormal (4.5e-309), then exactly 0
def test_underflow_shows_why_the_shortcut_exists(gap: float) -> None:
    d = explain_softmax_cross_entropy([0.0, gap], 0)
    assert d["A"].value[0] < np.finfo(np.float64).tiny
    np.testing.assert_allclose(d["A-T"].value, [-1.0, 1.0])
    np.testing.assert_allclose(d["numerical"].value, [-1.0, 1.0], atol=1e-6)
    assert d["E"].value == pytest.approx(gap)
    assert d["chain=shortcut"].passed is False and not d.agrees
    assert "underflows" in d["chain=shortcut"].note and "DISAGREE" in str(d)


@pytest.mark.parametrize(("logits", "target", "message"), [
    ([[[1.0, 2.0]]], 0, "vector of at least 2 classes"),  # (B, C) is a batch (issue 13)
    ([1.0], 0, "vector of at least 2 classes"),
    ([1.0, float("nan")], 0, "finite; entry 1"),
    ([1.0, 2.0], 2, "out of range for 2 classes"),
    ([1.0, 2.0], -1, "out of range"),
    ([1.0, 2.0], [0.0, 1.0, 0.0], "vector of 2 probabilities"),
    ([1.0, 2.0], [0.5, 0.6], "sum to 1"),
    ([1.0, 2.0], [1.5, -0.5], ">= 0"),
    ([1.0, 2.0], True, "class index or a vector"),
])
def test_bad_input_is_a_clear_value_error(logits, target, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        explain_softmax_cross_entropy(logits, target)


# ---- a whole network ------------------------------------------------------------------------

def _reference_backward(model: Sequential, loss, x: np.ndarray, target) -> dict:
    """Every gradient the plain forward/backward pass computes, layer by layer."""
    model.forward(x[None])
    loss.forward(model.forward(x[None]), np.asarray(target)[None])
    grads = {}
    delta = loss.backward()
    for index in range(len(model) - 1, -1, -1):
        grads[f"{index}.grad_out"] = delta
        delta = model.layers[index].backward(delta)
        grads[f"{index}.grad_in"] = delta
        grads.update({f"{index}.{name}": grad.copy()
                      for name, grad in model.layers[index].grads.items()})
    return grads


def test_network_table_equals_backward() -> None:
    model = Sequential([Dense(5, 3, seed=1), Sigmoid(), Dense(3, 4, seed=2), Softmax()])
    x = np.random.default_rng(0).normal(size=5)
    reference = _reference_backward(model, CrossEntropy(), x, 2)
    table = explain_backprop(model, CrossEntropy(), x, 2)
    assert set(reference) <= {step.key for step in table}
    for key, value in reference.items():
        np.testing.assert_allclose(table[key].value, value, rtol=1e-12, atol=1e-15,
                                   err_msg=key)
    assert table["check"].passed and table["check"].value < 1e-15 and table.agrees
    # The local derivatives are the textbook ones.
    h2, h4 = table["h2"].value[0], table["h4"].value[0]
    np.testing.assert_allclose(table["1.local"].value, h2 * (1 - h2), rtol=1e-12)
    np.testing.assert_allclose(table["3.local"].value, np.diag(h4) - np.outer(h4, h4),
                               atol=1e-15)
    np.testing.assert_array_equal(table["2.local"].value, model.layers[2].params["W"].T)
    assert table["E"].value == pytest.approx(-np.log(h4[2]), rel=1e-12)


@pytest.mark.parametrize(("layers", "loss", "target"), [
    ([Dense(4, 3, seed=0), Tanh(), Dense(3, 3, seed=1)], SoftmaxCrossEntropy(), 1),
    ([Dense(4, 6, seed=0, init="he"), ReLU(), Dense(6, 3, seed=1), LogSoftmax()], NLLLoss(), 0),
    ([Dense(4, 3, seed=0), Sigmoid(), Dense(3, 2, seed=1)], MSELoss(), [0.2, -1.0]),
    ([Dense(4, 3, seed=0), Softmax()], CrossEntropy(), [0.1, 0.7, 0.2]),
])
def test_every_layer_and_loss_agrees_with_backward(layers, loss, target) -> None:
    model = Sequential(layers)
    x = np.array([0.3, -1.2, 0.8, 2.0])
    reference = _reference_backward(model, loss, x, target)
    table = explain_backprop(model, loss, x, target)
    for key, value in reference.items():
        np.testing.assert_allclose(table[key].value, value, rtol=1e-12, atol=1e-15,
                                   err_msg=key)
    assert table.agrees


def test_network_table_reads_from_the_output_back() -> None:
    model, x, label = digits_example()
    text = str(explain_backprop(model, loss_for(model), x, label))
    headings = ["forward", "loss: CrossEntropy", "layer 3: Softmax()", "layer 2: Dense(4→10)",
                "layer 1: Sigmoid()", "layer 0: Dense(64→4)", "check"]
    positions = [text.index("\n" + heading + "\n") for heading in headings]
    assert positions == sorted(positions)
    for formula in ["h1 = h0 W0 + b0", "h2 = σ(h1)", "E = -Σ T ln h4", "δ4 = ∂E/∂h4 = -T / h4",
                    "J = diag(h4) - h4ᵀ h4", "δ3 = δ4 J", "∂E/∂W2 = h2ᵀ δ3", "∂E/∂b2 = δ3",
                    "δ2 = δ3 W2ᵀ", "σ'(h1) = h2 ⊙ (1 - h2)", "δ1 = δ2 ⊙ σ'(h1)",
                    "δ0 = δ1 W0ᵀ"]:
        assert formula in text, formula
    assert "64×4" in text and "1×10" in text  # shapes, as drawn by hand
    assert text.rstrip().endswith("over δ0 and every parameter gradient")
    assert "agree" in text


def test_network_gradients_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    model, x, label = digits_example(sample=3)
    table = explain_backprop(model, loss_for(model), x, label)
    params = {key: torch.tensor(value, requires_grad=True) for key, value in
              model.params.items()}
    hidden = torch.sigmoid(torch.tensor(x)[None] @ params["0.W"] + params["0.b"])
    logits = hidden @ params["2.W"] + params["2.b"]
    torch.nn.functional.cross_entropy(logits, torch.tensor([label])).backward()
    for key, param in params.items():
        np.testing.assert_allclose(table[key].value, param.grad.numpy(), atol=1e-12)


def test_explain_backprop_takes_one_sample() -> None:
    model = mlp(3, [2], 2, seed=0)
    with pytest.raises(ValueError, match=r"ONE sample .* got \(2, 3\)"):
        explain_backprop(model, SoftmaxCrossEntropy(), np.ones((2, 3)), 0)
    table = explain_backprop(model, SoftmaxCrossEntropy(), np.ones((1, 3)), 0)
    assert table["h0"].value.shape == (1, 3)


def test_digits_example_and_dataset_example() -> None:
    _, y = chainrule.io.datasets.load("digits")
    model, x, label = digits_example(sample=11)
    assert label == y[11] and x.shape == (64,) and 0 <= x.min() and x.max() <= 1
    assert [type(layer) for layer in model.layers] == [Dense, Sigmoid, Dense, Softmax]
    assert isinstance(loss_for(model), CrossEntropy)
    model.classes = np.arange(10)[::-1].copy()  # labels stored in reverse order
    _, index = dataset_example(model, "digits", 11)
    assert model.classes[index] == y[11]
    with pytest.raises(ValueError, match=r"sample must be in 0\.\.1796"):
        digits_example(sample=1797)


# ---- command line ---------------------------------------------------------------------------

def test_cli_explain_seed_question(capsys) -> None:
    assert main(["explain", "--logits", "1.75", "1.75", "--target", "0", "1"]) == 0
    text = capsys.readouterr().out
    assert text.strip() == str(explain_softmax_cross_entropy(SEED_LOGITS, [0, 1]))
    assert main(["explain", "--logits", "1.75", "1.75", "--label", "1"]) == 0
    assert capsys.readouterr().out == text


@pytest.mark.parametrize(("fmt", "expected"), [
    ("markdown", "`[[0.25, -0.25], [-0.25, 0.25]]`"),
    ("latex", r"\begin{pmatrix} 0.25 & -0.25 \\ -0.25 & 0.25 \end{pmatrix}"),
])
def test_cli_explain_formats(fmt: str, expected: str, capsys) -> None:
    assert main(["explain", "--logits", "1.75", "1.75", "--label", "1", "--format", fmt]) == 0
    assert expected in capsys.readouterr().out


def test_cli_explain_network(tmp_path, capsys) -> None:
    assert main(["explain", "--network", "--sample", "5"]) == 0
    out = capsys.readouterr().out
    model, x, label = digits_example(sample=5)
    assert out.strip() == str(explain_backprop(model, loss_for(model), x, label))

    trained = mlp(64, [3], 10, activation="tanh", seed=1)
    chainrule.fit(trained, SoftmaxCrossEntropy(), chainrule.SGD(0.1),
                  *chainrule.io.datasets.load("digits"), epochs=1, verbose=0,
                  scaling="standard")
    path = tmp_path / "model.safetensors"
    chainrule.save(trained, path)
    assert main(["explain", "--network", "--model", str(path), "--sample", "2"]) == 0
    out = capsys.readouterr().out
    assert "layer 1: Tanh()" in out and "SoftmaxCrossEntropy" in out and "agree" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--logits", "1", "2"], "--logits needs --target"),
    (["--network", "--label", "1"], "--network takes the sample's own label"),
    (["--logits", "1", "2", "--label", "0", "--model", "m.safetensors"], "--model goes with"),
    (["--logits", "1", "2", "--label", "5"],
     "error: --label 5 is not a class of --logits, which has 2 classes (labels 0 to 1)\n"),
    (["--logits", "1", "2", "--logits", "3", "4", "--label", "0", "2"],
     "error: --label 2 is not a class of --logits"),
    (["--logits", "1", "2", "--target", "0", "1", "0"],
     "error: --target needs one probability per class: --logits has 2 classes, --target 0 1 0 "
     "has 3 values\n"),
    (["--logits", "1", "2", "--target", "0.5", "0.5", "--target", "1"],
     "--target 1 has 1 value\n"),
    (["--logits", "1", "2", "--label", "0", "--plot", "jacobian.txt"], "must end in one of"),
])
def test_cli_explain_errors(argv, message, capsys) -> None:
    assert main(["explain", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_explain_exit_status_1_when_a_check_disagrees(capsys) -> None:
    assert main(["explain", "--logits", "0", "800", "--label", "0"]) == 1
    assert "DISAGREE" in capsys.readouterr().out
