"""scikit-learn's own MLP tests, run against chainrule's ``MLPClassifier`` and ``MLPRegressor``.

The test file is read from the INSTALLED scikit-learn at test time (never copied here) and
executed with one change: its ``from sklearn.neural_network import MLPClassifier,
MLPRegressor`` imports chainrule's estimators instead. Every test it defines is collected
here. The few that fail for a known reason are marked ``xfail(strict=True)`` with that
reason, so one that starts passing is reported; the README lists them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SKLEARN_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor\n"
CHAINRULE_IMPORT = "from chainrule import MLPClassifier, MLPRegressor\n"

# Test id -> why it fails against chainrule (see the README's scikit-learn section).
KNOWN_FAILURES: dict[str, str] = {
    "test_predict_proba_multilabel": (
        "predict_log_proba is computed stably, log σ(z) = -softplus(-z), not as "
        "log(predict_proba): where σ(z) rounds to 1.0 for several labels, log σ(z) still "
        "tells them apart (e.g. -1e-17 vs -1e-20), so its argmax differs from the argmax of "
        "the tied probabilities, and it is not exactly log(1.0) = 0"),
}


def _load_suite() -> dict[str, object]:
    """The namespace of scikit-learn's test_mlp.py, executed with chainrule's estimators."""
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-learn's tests are not installed", allow_module_level=True)
    path = Path(spec.origin)
    source = path.read_text(encoding="utf-8")
    if source.count(SKLEARN_IMPORT) != 1:
        raise RuntimeError(f"{path}: expected the line {SKLEARN_IMPORT.strip()!r} exactly once")
    namespace: dict[str, object] = {"__name__": "sklearn_test_mlp", "__file__": str(path)}
    exec(compile(source.replace(SKLEARN_IMPORT, CHAINRULE_IMPORT), str(path), "exec"),
         namespace)
    return namespace


SUITE = _load_suite()
globals().update({name: value for name, value in SUITE.items() if name.startswith("test_")})


@pytest.fixture
def global_random_seed() -> int:
    """scikit-learn's fixture, at its default seed (42)."""
    return 42


@pytest.fixture(autouse=True)
def _expected_failure(request: pytest.FixtureRequest) -> None:
    reason = KNOWN_FAILURES.get(request.node.name)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
