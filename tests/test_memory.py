"""Memory on the training path, probed with tracemalloc (NumPy reports its buffers to it).

No timing here: only sizes, which do not depend on how busy the machine is.
"""

import tracemalloc

import numpy as np
import pytest

import chainrule as cr


def peak_bytes(function) -> int:
    """Peak traced memory while ``function`` runs, above what was allocated before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


# B x C x C float64 for these sizes is 32 MiB; everything else on the path is ~100 KiB.
BATCH, CLASSES, FEATURES = 32, 362, 8
JACOBIAN_BYTES = BATCH * CLASSES * CLASSES * 8


def test_probe_sees_a_batch_of_softmax_jacobians(rng):
    """The probe can fail: building the (B, C, C) Jacobians shows up in full."""
    logits = rng.normal(size=(BATCH, CLASSES))
    assert peak_bytes(lambda: cr.Softmax().jacobian(logits)) >= JACOBIAN_BYTES


@pytest.mark.parametrize("head", ["fused", "softmax_then_cross_entropy", "log_softmax_nll"])
def test_no_batch_of_jacobians_on_the_training_path(head, rng):
    X = rng.normal(size=(4 * BATCH, FEATURES))
    y = rng.integers(0, CLASSES, len(X))
    layers = [cr.Dense(FEATURES, CLASSES, seed=0)]
    loss = cr.SoftmaxCrossEntropy()
    if head == "softmax_then_cross_entropy":
        layers.append(cr.Softmax())
        loss = cr.CrossEntropy()
    elif head == "log_softmax_nll":
        layers.append(cr.LogSoftmax())
        loss = cr.NLLLoss()
    model = cr.Sequential(layers)

    peak = peak_bytes(lambda: cr.fit(model, loss, cr.SGD(0.1, momentum=0.9), X, y, epochs=2,
                                     batch_size=BATCH, seed=0, verbose=0))
    assert peak < JACOBIAN_BYTES / 20, f"peak {peak} bytes: a (B, C, C) array on the path?"


def test_fit_peak_is_a_small_fraction_of_the_data_and_does_not_grow_with_epochs(rng):
    """Batches are gathered into reused buffers, nothing accumulates per batch."""
    X = rng.normal(size=(20_000, 100)).astype(np.float32)  # 8 MB
    y = rng.integers(0, 10, len(X))

    def train(epochs: int) -> int:
        model = cr.mlp(100, [32], 10, seed=0, dtype=np.float32)
        return peak_bytes(lambda: cr.fit(model, cr.SoftmaxCrossEntropy(), cr.SGD(0.05), X, y,
                                         epochs=epochs, batch_size=128, seed=0,
                                         verbose=0))

    one_epoch, three_epochs = train(1), train(3)
    assert one_epoch < 0.1 * X.nbytes, f"peak {one_epoch} bytes for {X.nbytes} of data"
    assert three_epochs < 1.1 * one_epoch + 10_000
