"""Every example in the package's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import chainrule

MODULES = sorted(info.name for info in pkgutil.walk_packages(chainrule.__path__, "chainrule.")
                 if info.name != "chainrule.__main__")


def test_every_wing_is_walked():
    assert {"chainrule.nn.layers", "chainrule.check.network", "chainrule.explain.backprop",
            "chainrule.io.serialization", "chainrule.estimator"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
