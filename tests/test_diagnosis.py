"""chainrule.check.diagnosis and .report: the catalogue matcher and the error measure."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.check.diagnosis import CATALOGUE, diagnose_gradient, diagnose_jacobian, named
from chainrule.check.report import Report, Row, relative_error
from chainrule.nn.functional import log_softmax, sigmoid, softmax, softmax_jacobian


def names(diagnoses) -> list[str]:
    return sorted(item.identifier for item in diagnoses)


def test_relative_error_worked_example():
    # atol/rtol = 1e-3 is the floor: near zero, errors are judged absolutely
    analytic = np.array([1.0, 1e-6, 0.0, -2.0])
    numeric = np.array([1.00001, 2e-6, 1e-9, 2.0])
    expected = [1e-5 / 1.00001, 1e-6 / 1e-3, 1e-9 / 1e-3, 4.0 / 2.0]
    np.testing.assert_allclose(relative_error(analytic, numeric, atol=1e-8, rtol=1e-5),
                               expected)
    row = Row("r", analytic, numeric, atol=1e-8, rtol=1e-5)
    assert not row.passed and row.worst.index == (3,)
    assert row.max_abs_error == pytest.approx(4.0)


def test_near_zero_entries_do_not_raise_false_alarms():
    # a plain relative error |a - n| / |n| would be 1 here
    row = Row("tiny", np.array([1e-12, 0.0]), np.array([2e-12, 5e-10]))
    assert row.passed


def test_diagnose_gradient_catalogue():
    numeric = np.array([[1.0, 2.0], [3.0, -4.0]])
    assert names(diagnose_gradient(-numeric, numeric)) == ["sign_flipped"]
    assert names(diagnose_gradient(numeric.T, numeric)) == ["transposed"]
    assert names(diagnose_gradient(16 * numeric, numeric, batch_size=16)) == [
        "missing_batch_mean"]
    scaled = diagnose_gradient(0.5 * numeric, numeric, batch_size=16)
    assert names(scaled) == ["scaled"] and scaled[0].detail == "factor 0.5"
    assert diagnose_gradient(numeric + 0.1, numeric) == []
    assert diagnose_gradient(np.zeros((2, 2)), numeric) == []  # zero is no scaling
    assert diagnose_gradient(numeric, numeric) == []


def test_symmetric_gradient_is_never_called_transposed():
    numeric = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert diagnose_gradient(numeric.T, numeric) == []


def test_families_are_recognised_from_the_numbers_alone(rng):
    z = rng.normal(size=(2, 4))
    for f, right in [(softmax, lambda: softmax_jacobian(softmax(z))),
                     (sigmoid, lambda: np.stack([np.diag(s * (1 - s)) for s in sigmoid(z)])),
                     (np.tanh, lambda: np.stack([np.diag(1 - t * t) for t in np.tanh(z)]))]:
        numeric = right()
        at_input = {softmax: softmax_jacobian(z),
                    sigmoid: np.stack([np.diag(v * (1 - v)) for v in z]),
                    np.tanh: np.stack([np.diag(1 - v * v) for v in z])}[f]
        assert names(diagnose_jacobian(at_input, numeric, z, f(z))) == ["evaluated_at_input"]


def test_log_softmax_mistakes(rng):
    z = rng.normal(size=4)
    p = softmax(z)
    numeric = np.eye(4) - p[None, :]
    assert names(diagnose_jacobian(numeric.T, numeric, z, log_softmax(z))) == ["transposed"]
    at_input = np.eye(4) - z[None, :]
    assert names(diagnose_jacobian(at_input, numeric, z, log_softmax(z))) == [
        "evaluated_at_input"]


def test_seed_pasted_version_parts_and_counts():
    z, a = np.array([1.75, 1.75]), np.array([0.5, 0.5])
    found = diagnose_jacobian(np.diag([-3.0625, -3.0625]), softmax_jacobian(a), z, a)
    by_name = {item.identifier: item for item in found}
    assert set(by_name) == {"diagonal_overwritten", "evaluated_at_input", "cross_terms_missing"}
    assert by_name["diagonal_overwritten"].part == "diagonal"
    assert by_name["cross_terms_missing"].part == "off-diagonal"
    assert by_name["cross_terms_missing"].detail == "explains 2/2 wrong off-diagonal entries"
    assert "[diagonal]" in str(by_name["evaluated_at_input"])


def test_shape_mismatch_or_all_zero_gives_no_diagnosis():
    assert diagnose_jacobian(np.ones((2, 3)), np.ones((2, 2)), np.ones(2), np.ones(2)) == []
    assert diagnose_jacobian(np.zeros((2, 2)), np.zeros((2, 2)), np.ones(2), np.ones(2)) == []


def test_every_catalogue_entry_has_an_explanation_and_is_exercised():
    # The issue-11 entries are exercised on user-style code in tests/test_user_code.py.
    exercised = {"transposed", "evaluated_at_input", "diagonal_overwritten", "diagonal_only",
                 "cross_terms_missing", "sign_flipped", "scaled", "missing_batch_mean",
                 "averaged_in_layer", "returned_jacobian", "fused_shortcut",
                 "reduction_without_keepdims", "grads_not_stored", "rows_ignored",
                 "off_diagonal_sign", "output_instead_of_derivative",
                 "shortcut_in_loss"}  # on user losses in tests/test_losscheck.py
    assert set(CATALOGUE) == exercised
    assert all(len(text) > 20 for text in CATALOGUE.values())
    assert all(named(identifier).fix for identifier in CATALOGUE)


def test_batch_factors_and_ignored_rows_are_named():
    numeric = np.array([[1.0, 2.0], [3.0, -4.0], [0.5, 0.25]])
    averaged = diagnose_gradient(numeric / 3, numeric, batch_size=3)
    assert names(averaged) == ["averaged_in_layer"] and averaged[0].detail == (
        "factor 0.333333 = 1 / batch size 3")
    only_first = numeric * np.array([[1.0], [0.0], [0.0]])
    ignored = diagnose_gradient(numeric, only_first)
    assert names(ignored) == ["rows_ignored"]
    assert ignored[0].detail == "rows 1, 2 of 3 do not affect the result"
    assert "every row of the batch" in ignored[0].fix


def test_report_worst_maps_sampled_positions_back():
    row = Row("W sample", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0]),
              positions=np.array([[0, 1], [2, 3], [4, 0]]))
    report = Report("t", [row], cause="W sample")
    assert report.worst.index == (2, 3)
    assert report.worst.analytic == 2.0 and report.worst.numeric == 2.5
    assert "FAILED: W sample, entry [2, 3]" in report.summary()


def test_passing_report_summary_and_empty_diagnosis():
    report = Report("t", [Row("a", np.ones(3), np.ones(3))])
    assert report.passed and report.diagnosis == [] and report.failing_layer is None
    assert report.summary() == "PASSED: 1 check within rtol=1e-05"
