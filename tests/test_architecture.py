"""The package's shape: four wings, imports only downwards, no circles, a light ``import``.

The import graph is read from the source with ``ast`` (no module is imported to build it).
Module-level imports must be acyclic and respect the wings' order; an import inside a function
may reach upwards only where it is listed in ``LAZY_UPWARD`` (a convenience method).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import chainrule

PACKAGE = Path(chainrule.__file__).parent
# What each wing may import from the others; the top (estimator, experiment, cli) may import
# every wing, and nothing imports the CLI.
WINGS_BELOW = {"nn": set(), "io": {"nn"}, "check": {"nn"}, "explain": {"nn", "check", "io"}}
LAZY_UPWARD = {
    ("chainrule.nn.network", "chainrule.io.serialization"),  # Sequential.save
    ("chainrule.nn.network", "chainrule.io.export"),  # Sequential.to_torch
}
HEAVY = ("sklearn", "scipy", "matplotlib", "tqdm", "torch", "onnx", "onnxruntime", "mlxtend",
         "numba")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """``(module-level, inside functions)`` chainrule modules imported by the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top, nested = set(), set()
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found = {name for name in names if name.split(".")[0] == "chainrule"}
        (nested if id(node) in in_function else top).update(found)
    return top, nested


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The module an imported name refers to (``chainrule.nn.Dense`` -> ``chainrule.nn``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph(level: int) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        imported = _imports(path)[level]
        graph[name] = {target for target in map(_resolve, imported)
                       if target and target != name}
    return graph


def _wing(module: str) -> str:
    parts = module.split(".")
    if module == "chainrule._version":
        return "leaf"  # one constant, no imports: anyone may read it
    return parts[1] if len(parts) > 1 and parts[1] in WINGS_BELOW else "top"


def _find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports in ``graph`` as ``[a, b, ..., a]``, or None. A package importing its
    own submodules (its ``__init__``) is not a circle."""
    visiting, done = [], set()

    def visit(node: str) -> list[str] | None:
        if node in done:
            return None
        if node in visiting:
            return [*visiting[visiting.index(node):], node]
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            if not target.startswith(node + "."):
                circle = visit(target)
                if circle:
                    return circle
        visiting.pop()
        done.add(node)
        return None

    return next(filter(None, map(visit, sorted(graph))), None)


def test_the_four_wings_exist_and_hold_their_modules():
    assert {_wing(name) for name in MODULES} == {"nn", "check", "explain", "io", "top", "leaf"}
    for module in ("chainrule.nn.layers", "chainrule.nn.training", "chainrule.check.numerical",
                   "chainrule.check.network", "chainrule.explain.derivation",
                   "chainrule.io.serialization", "chainrule.estimator", "chainrule.cli"):
        assert module in MODULES


def test_module_level_imports_are_acyclic():
    assert _find_circle(_graph(0)) is None


def test_the_circle_finder_finds_a_planted_circle():
    graph = {"chainrule.nn.network": {"chainrule.io.serialization"},
             "chainrule.io.serialization": {"chainrule.io.export"},
             "chainrule.io.export": {"chainrule.nn.network"},
             "chainrule.io": {"chainrule.io.export"}}
    assert _find_circle(graph) == ["chainrule.io.export", "chainrule.nn.network",
                                   "chainrule.io.serialization", "chainrule.io.export"]
    del graph["chainrule.io.export"]
    assert _find_circle(graph) is None


@pytest.mark.parametrize("level", [0, 1], ids=["module-level", "inside-functions"])
def test_lower_wings_never_import_higher_ones(level):
    for module, targets in _graph(level).items():
        wing = _wing(module)
        for target in targets:
            target_wing = _wing(target)
            if (wing == "top" or target_wing in (wing, "leaf")
                    or (module, target) in LAZY_UPWARD):
                continue
            assert target_wing in WINGS_BELOW[wing] and target != "chainrule", (
                f"{module} ({wing}) imports {target} ({target_wing})")


def test_nothing_imports_the_cli():
    for level in (0, 1):
        for module, targets in _graph(level).items():
            inside_cli = module.startswith("chainrule.cli") or module == "chainrule.__main__"
            reaches_cli = any(target.startswith("chainrule.cli") for target in targets)
            assert inside_cli or not reaches_cli, module


def test_imports_are_read_from_the_source():
    top, nested = _imports(PACKAGE / "nn" / "network.py")
    assert "chainrule.nn.layers" in top and "chainrule.io.serialization" in nested
    assert _resolve("chainrule.nn.layers.Dense") == "chainrule.nn.layers"


def test_import_chainrule_stays_light():
    code = ("import sys, chainrule; "
            f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_every_public_name_is_what_a_user_expects():
    import types

    for name in chainrule.__all__:
        value = getattr(chainrule, name)
        if name == "datasets":
            assert isinstance(value, types.ModuleType)
        elif name != "__version__":
            assert not isinstance(value, types.ModuleType), name
    assert callable(chainrule.gradcheck) and callable(chainrule.check_layer)
    assert chainrule.MLPClassifier.__name__ == "MLPClassifier"


def test_gradcheck_is_callable_from_the_top_level():
    import numpy as np

    model = chainrule.mlp(3, [4], 2, seed=0)
    X = np.random.default_rng(0).standard_normal((5, 3))
    labels = np.array([0, 1, 0, 1, 0])
    report = chainrule.gradcheck(model, chainrule.SoftmaxCrossEntropy(), X, labels)
    assert report.passed
