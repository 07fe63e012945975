"""Optimizer state after ``pickle`` and ``deepcopy``: training continues exactly as it would
have without the round trip (the flat state's per-parameter views are rebuilt, not trusted)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import chainrule as cr

ROUND_TRIPS = {"pickle": lambda obj: pickle.loads(pickle.dumps(obj)), "deepcopy": copy.deepcopy}


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("make_optimizer", [
    lambda: cr.Adam(0.1), lambda: cr.SGD(0.1, momentum=0.9, nesterov=True),
    lambda: cr.SGD(0.1, momentum=0.5, weight_decay=0.01)], ids=["adam", "nesterov", "decay"])
def test_training_continues_identically_after_a_round_trip(round_trip, make_optimizer, rng):
    X, labels = rng.normal(size=(8, 3)), np.array([0, 1] * 4)
    loss = cr.SoftmaxCrossEntropy()

    def step(model, optimizer):
        loss.forward(model.forward(X), labels)
        model.backward(loss.backward())
        optimizer.step(model)

    model, optimizer = cr.mlp(3, [4], 2, seed=0), make_optimizer()
    step(model, optimizer)
    model_copy, optimizer_copy = ROUND_TRIPS[round_trip]((model, optimizer))
    for _ in range(3):
        step(model, optimizer)
        step(model_copy, optimizer_copy)
    for original, copied in zip(model.parameters(), model_copy.parameters(), strict=True):
        assert_array_equal(copied, original)
