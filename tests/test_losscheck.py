"""check_loss and gradcheck read the user's own loss as written: classes that return or store
their gradient, softmax and cross-entropy in one, ``loss, dx = f(x, y)``, ``f`` with
``gradient=f_prime``, targets first or second."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.check.adapters import ConventionError
from chainrule.check.calls import UserCodeError
from chainrule.testing import assert_loss_correct
from user_code import book_style, losses


@pytest.fixture
def batch(rng):
    """Logits (5, 3), their softmax, labels."""
    z = rng.normal(size=(5, 3))
    return z, cr.softmax(z), np.array([0, 1, 2, 0, 1])


def diagnosed(report) -> list[str]:
    return [item.identifier for row in report.failed_rows for item in row.diagnosis]


def test_book_cross_entropy_on_probabilities_passes_with_the_gradient_it_stores(batch):
    _, p, y = batch
    report = cr.check_loss(losses.Loss_CategoricalCrossentropy(), p, y)
    assert report.passed, str(report)
    row = report.rows[0]
    assert row.name == "Loss_CategoricalCrossentropy ∂L/∂y_pred"  # the user's argument name
    T = np.eye(3)[y]
    np.testing.assert_allclose(row.analytic, -T / p / 5, rtol=1e-12)  # what dinputs held
    np.testing.assert_allclose(row.numeric, -T / p / 5, rtol=1e-6, atol=1e-9)
    assert report.notes == ["L is the mean of Loss_CategoricalCrossentropy.forward's "
                            "per-sample losses (5,)"]
    # one-hot targets take the other branch of the same code
    assert cr.check_loss(losses.Loss_CategoricalCrossentropy(), p, T).passed


def test_the_seed_mistake_a_minus_t_from_a_loss_on_probabilities_is_named(batch):
    _, p, y = batch
    report = cr.check_loss(losses.CrossEntropyWithTheShortcut(), p, y)
    assert not report.passed
    assert diagnosed(report) == ["shortcut_in_loss"]
    assert "-T / A / len(A)" in str(report)


def test_softmax_and_cross_entropy_in_one_gets_back_what_its_forward_stored(batch):
    z, _, y = batch
    report = cr.check_loss(book_style.Activation_Softmax_Loss_CategoricalCrossentropy(), z, y)
    assert report.passed, str(report)
    np.testing.assert_allclose(report.rows[0].analytic, (cr.softmax(z) - np.eye(3)[y]) / 5,
                               rtol=1e-12)
    assert report.rows[0].name.endswith("∂L/∂inputs")
    assert report.notes == [
        "Activation_Softmax_Loss_CategoricalCrossentropy.backward was given what "
        "Activation_Softmax_Loss_CategoricalCrossentropy.forward stored (the probabilities, not "
        "the inputs it took), as a training loop passes it; the gradient is ∂L/∂inputs"]
    with_dout = cr.check_loss(losses.SoftmaxWithLoss(), z, y)  # backward(dout=1): no argument
    assert with_dout.passed and with_dout.notes == []


@pytest.mark.parametrize("loss, gradient, expected", [
    (losses.softmax_loss, None, []),
    (losses.softmax_loss_summed_gradient, None, ["missing_batch_mean"]),
    (losses.mse, losses.mse_prime, []),
    (losses.MeanSquaredError(), None, []),
    (losses.MeanSquaredErrorSignFlipped(), None, ["sign_flipped"]),
])
def test_functions_and_targets_first_conventions(batch, loss, gradient, expected):
    z, p, y = batch
    targets = y if loss in (losses.softmax_loss, losses.softmax_loss_summed_gradient) else p
    report = cr.check_loss(loss, z, targets, gradient=gradient)
    assert report.passed == (not expected), str(report)
    assert diagnosed(report) == expected


def test_sample_checks_k_entries_of_a_large_output_and_still_names_the_mistake(rng):
    z = rng.normal(size=(64, 100))
    y = rng.integers(0, 100, 64)
    p = cr.softmax(z)
    report = cr.check_loss(losses.Loss_CategoricalCrossentropy(), p, y, sample=40)
    assert report.passed and report.rows[0].numeric.shape == (40,)
    np.testing.assert_allclose(report.rows[0].analytic,
                               (-np.eye(100)[y] / p / 64).reshape(-1)[report.rows[0].positions])
    wrong = cr.check_loss(losses.CrossEntropyWithTheShortcut(), p, y, sample=40)
    assert diagnosed(wrong) == ["shortcut_in_loss"]
    with pytest.raises(ValueError, match=r"^sample must be >= 1, got 0$"):
        cr.check_loss(losses.softmax_loss, z, y, sample=0)


def test_targets_first_is_read_from_the_names():
    """mse(y_true, y_pred) is symmetric: read the wrong way round, its gradient would be the
    negative of the numeric one and the check would fail."""
    y_true, y_pred = np.zeros((2, 2)), np.array([[1.0, 2.0], [3.0, 4.0]])
    report = cr.check_loss(losses.mse, y_pred, y_true, gradient=losses.mse_prime)
    assert report.passed
    np.testing.assert_allclose(report.rows[0].analytic, y_pred / 2, rtol=1e-12)
    assert report.rows[0].name == "mse ∂L/∂y_pred"


@settings(max_examples=25, deadline=None)
@given(batch_size=st.integers(1, 9), classes=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_the_users_loss_agrees_with_chainrules_as_oracle(batch_size, classes, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(batch_size, classes)) * 3
    y = rng.integers(0, classes, batch_size)
    fused = cr.SoftmaxCrossEntropy()
    fused.forward(z, y)
    report = cr.check_loss(book_style.Activation_Softmax_Loss_CategoricalCrossentropy(), z, y)
    assert report.passed, str(report)
    np.testing.assert_allclose(report.rows[0].analytic, fused.backward(), rtol=1e-10,
                               atol=1e-15)


def test_torch_agrees_on_the_gradient_of_a_loss_on_probabilities(batch):
    torch = pytest.importorskip("torch")
    _, p, y = batch
    report = cr.check_loss(losses.Loss_CategoricalCrossentropy(), p, y)
    probabilities = torch.tensor(p, requires_grad=True)
    torch.nn.functional.nll_loss(torch.log(probabilities), torch.tensor(y)).backward()
    np.testing.assert_allclose(report.rows[0].analytic, probabilities.grad.numpy(), rtol=1e-12)


def test_gradcheck_takes_the_users_loss_and_blames_it(rng):
    X, y = rng.normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
    fused = book_style.Activation_Softmax_Loss_CategoricalCrossentropy()
    report = cr.gradcheck([book_style.Layer_Dense(4, 3)], fused, X, y)
    assert report.passed, str(report)
    assert report.title.startswith("gradcheck: 1 layers, Activation_Softmax_Loss_Categorical")
    wrong = cr.gradcheck([book_style.Layer_Dense(4, 3), book_style.Activation_Softmax()],
                         losses.CrossEntropyWithTheShortcut(), X, y)
    assert not wrong.passed
    assert wrong.cause == "loss CrossEntropyWithTheShortcut ∂L/∂output"
    assert diagnosed(wrong)[0] == "shortcut_in_loss"
    right = cr.gradcheck([book_style.Layer_Dense(4, 3), book_style.Activation_Softmax()],
                         losses.Loss_CategoricalCrossentropy(), X, y)
    assert right.passed, str(right)


def test_the_users_loss_object_is_never_run(batch):
    z, _, y = batch
    loss = book_style.Activation_Softmax_Loss_CategoricalCrossentropy()
    before = copy.deepcopy(vars(loss))
    cr.check_loss(loss, z, y)
    cr.gradcheck([cr.Dense(3, 3, seed=0)], loss, z, y)
    assert vars(loss) == before == {}


def test_assert_loss_correct_raises_with_the_report(batch):
    _, p, y = batch
    assert_loss_correct(losses.Loss_CategoricalCrossentropy(), p, y)
    with pytest.raises(AssertionError, match="shortcut_in_loss"):
        assert_loss_correct(losses.CrossEntropyWithTheShortcut(), p, y)


def test_what_cannot_be_read_gets_one_line(batch):
    z, p, y = batch
    with pytest.raises(TypeError, match=r"^loss is the class Loss_CategoricalCrossentropy; "
                                        r"pass an instance: Loss_CategoricalCrossentropy\(\)$"):
        cr.check_loss(losses.Loss_CategoricalCrossentropy, p, y)
    with pytest.raises(ConventionError, match=r"^CrossEntropyStoresNothing\.backward\(\) "
                                              r"returned None and stored no gradient"):
        cr.check_loss(losses.CrossEntropyStoresNothing(), p, y)
    with pytest.raises(ConventionError, match=r"^softmax_loss_value returns only the loss"):
        def softmax_loss_value(x, y):
            return losses.softmax_loss(x, y)[0]
        cr.check_loss(softmax_loss_value, z, y)
    with pytest.raises(ConventionError, match=r"^three takes 3 arguments \['x', 'y', 'w'\]"):
        def three(x, y, w):
            return 0.0
        cr.check_loss(three, z, y)
    with pytest.raises(ConventionError, match=r"returned shape \(5, 3\); a loss returns a "
                                              r"number, or one loss per sample \(5,\)"):
        cr.check_loss(lambda x, y: (x - 1) ** 2, z, y, gradient=lambda x, y: 2 * (x - 1))
    with pytest.raises(TypeError, match=r"^loss must be a loss object or function, got str "
                                        r"'cross_entropy': e\.g\. cr\.SoftmaxCrossEntropy\(\)"):
        cr.gradcheck([cr.Dense(3, 3, seed=0)], "cross_entropy", z, y)
    with pytest.raises(ConventionError, match=r"^cannot tell how to check the loss object"):
        cr.check_loss(object(), z, y)
    with pytest.raises(ValueError, match=r"^y has 4 rows but output has 5$"):
        cr.check_loss(losses.softmax_loss, z, y[:4])
    with pytest.raises(ValueError, match=r"output must be a non-empty batch \(B, outputs\), got "
                                         r"shape \(3,\); for one sample pass output\[None\]"):
        cr.check_loss(losses.softmax_loss, z[0], y[:1])
    with pytest.raises(ValueError, match=r"^y must hold one target per row of output \(5 "
                                         r"rows\), got array\(3\)$"):
        cr.check_loss(losses.softmax_loss, z, 3)
    unclipped = np.array([[1e-7, 1 - 1e-7], [0.5, 0.5]])  # log(p - h) is NaN at [0, 0]
    with pytest.raises(ValueError, match=r"^softmax_log_loss gives a non-finite L within one "
                                         r"finite-difference step \(6\.06e-06\) of output\[0, "
                                         r"0\] = 1e-07: check it at outputs farther"):
        def softmax_log_loss(p, y):
            return -np.mean(np.log(p[np.arange(len(p)), y])), -np.eye(2)[y] / p / len(p)
        cr.check_loss(softmax_log_loss, unclipped, np.array([0, 1]))
    assert cr.check_loss(softmax_log_loss, unclipped, np.array([0, 1]), eps=1e-10).passed
    with pytest.raises(UserCodeError, match=r"^Loss_CategoricalCrossentropy\.forward raised "
                                            r"IndexError"):
        cr.check_loss(losses.Loss_CategoricalCrossentropy(), p, y + 5)


def test_the_example_script_names_the_shortcut_and_passes_the_fused_loss():
    script = Path(__file__).parents[1] / "examples" / "check_my_loss.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=True)
    assert ("FAILED: Loss_CategoricalCrossentropy ∂L/∂y_pred, entry [0, 1]: analytic 0.11195, "
            "numeric 0 — looks like shortcut_in_loss") in run.stdout
    assert "Activation_Softmax_Loss_CategoricalCrossentropy ∂L/∂inputs      12" in run.stdout
    assert run.stdout.endswith("network with the fused loss: passed True\n")


USER_LOSSES = Path(__file__).parent / "user_code" / "losses.py"


@pytest.mark.parametrize("arguments, status, first, last", [
    (["Loss_CategoricalCrossentropy", "--classes", "3"], 0,
     "check-loss: Loss_CategoricalCrossentropy at probabilities (5, 3), targets labels (5,)",
     "PASSED: 1 check within rtol=1e-05"),
    (["CrossEntropyWithTheShortcut", "--classes", "3", "--targets", "labels"], 1,
     "check-loss: CrossEntropyWithTheShortcut at probabilities (5, 3), targets labels (5,)",
     "looks like shortcut_in_loss"),
    (["softmax_loss_summed_gradient", "--classes", "4", "--output", "logits", "--batch", "3"],
     1, "check-loss: softmax_loss_summed_gradient at logits (3, 4), targets labels (3,)",
     "(factor 3 = batch size 3)"),
    (["mse", "--gradient", "mse_prime", "--classes", "2", "--output", "values", "--targets",
      "values"], 0, "check-loss: mse at values (5, 2), targets values (5, 2)", "PASSED"),
    (["MeanSquaredErrorSignFlipped", "--classes", "2", "--output", "values", "--targets",
      "values", "--args", "{}"], 1,
     "check-loss: MeanSquaredErrorSignFlipped at values (5, 2), targets values (5, 2)",
     "looks like sign_flipped: the derivative has the wrong sign"),
])
def test_cli_check_loss(capsys, arguments, status, first, last):
    from chainrule.cli import main

    assert main(["check-loss", f"{USER_LOSSES}:{arguments[0]}", *arguments[1:]]) == status
    out = capsys.readouterr().out.rstrip("\n")
    assert out.startswith(first + "\n")
    assert last in out.splitlines()[-1]


def test_cli_check_loss_says_what_is_wrong_in_one_line(capsys):
    from chainrule.cli import main

    for arguments, message in [
        (["mse", "--classes", "2", "--output", "values", "--targets", "values"],
         "mse returns only the loss and chainrule found no gradient method"),
        (["mse", "--classes", "0"], "--classes must be at least 1, got 0"),
        (["mse", "--classes", "2", "--batch", "0"], "--batch must be at least 1, got 0"),
        (["mse", "--classes", "2", "--args", '{"a": 1}'],
         "--args builds a class, and mse is a function"),
        (["nothing", "--classes", "2"], "losses.py has no function 'nothing'"),
    ]:
        assert main(["check-loss", f"{USER_LOSSES}:{arguments[0]}", *arguments[1:]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("chainrule check-loss: error: ") and message in err
        assert err.count("\n") == 1, err
    assert main(["check-loss", f"{USER_LOSSES}:MeanSquaredError", "--classes", "2", "--output",
                 "values"]) == 3  # labels (5,) do not broadcast against (5, 2) in its code
    err = capsys.readouterr().err
    assert err.startswith(
        "chainrule check-loss: your code raised: MeanSquaredError.loss raised ValueError")
    assert err.rstrip().endswith("(the targets were class labels (5,); for a loss on values "
                                 "pass --targets values, or --targets onehot)")
