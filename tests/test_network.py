"""Sequential and optimizers: whole-network gradients and update rules against PyTorch."""

import numpy as np
import pytest

import chainrule as cr


def small_mlp(seed=0, activation="tanh"):
    return cr.mlp(6, [5, 4], 3, activation=activation, seed=seed)


def test_parameter_keys_shapes_and_repr():
    model = small_mlp()
    assert list(model.params) == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b"]
    assert model.params["2.W"].shape == (5, 4)
    assert model.n_params == 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3
    assert model.output_width() == 3 and model.input_width == 6
    assert "Dense(6→5)" in repr(model) and "Tanh()" in repr(model)
    assert model.params["0.W"] is model.layers[0].params["W"]  # live arrays


def test_named_parameters_are_pairs_like_torch_and_grads_come_by_name(rng):
    model = small_mlp()
    pairs = list(model.named_parameters())
    assert [name for name, _ in pairs] == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b"]
    assert all(len(pair) == 2 for pair in pairs)
    assert pairs[2][1] is model.layers[2].params["W"]
    assert [param for param in model.parameters()][2] is pairs[2][1]
    loss = cr.SoftmaxCrossEntropy()
    loss.forward(model.forward(rng.normal(size=(3, 6))), np.array([0, 1, 2]))
    model.backward(loss.backward())
    grads = list(model.named_grads())
    assert [name for name, _ in grads] == [name for name, _ in pairs]
    assert grads[2][1] is model.layers[2].grads["W"] and np.any(grads[2][1] != 0)
    pytest.importorskip("torch")
    torch_names = [name for name, _ in model.to_torch().named_parameters()]
    assert [name.replace("weight", "W").replace("bias", "b") for name in torch_names] == \
        [name for name, _ in pairs]


def test_sequential_takes_layers_as_arguments_or_a_list_and_mlp_an_int_hidden():
    layers = [cr.Dense(3, 2, seed=0), cr.ReLU(), cr.Dense(2, 2, seed=1)]
    as_arguments, as_list = cr.Sequential(*layers), cr.Sequential(layers)
    assert as_arguments.layers == as_list.layers == layers
    assert cr.Sequential(tuple(layers)).layers == layers
    assert cr.Sequential(layers[0]).layers == [layers[0]]
    model = cr.mlp(3, 2, 2, seed=0)
    assert [type(layer).__name__ for layer in model] == ["Dense", "ReLU", "Dense"]
    assert model.params["0.W"].shape == (3, 2) and model.params["2.W"].shape == (2, 2)
    np.testing.assert_array_equal(model.params["0.W"], cr.mlp(3, [2], 2, seed=0).params["0.W"])
    with pytest.raises(TypeError, match=r"layer 1 is .*ReLU.*pass an instance: ReLU\(\)"):
        cr.Sequential(cr.Dense(3, 2), cr.ReLU, cr.Dense(2, 2))
    with pytest.raises(ValueError, match="at least one layer"):
        cr.Sequential()


def test_network_gradients_match_finite_differences(numeric_jacobian, rng):
    model = small_mlp()
    loss = cr.SoftmaxCrossEntropy()
    x, y = rng.normal(size=(4, 6)), np.array([0, 2, 1, 2])
    loss.forward(model.forward(x), y)
    grad_x = model.backward(loss.backward())
    analytic = {key: grad.copy() for key, grad in model.grads.items()}
    for key, param in model.params.items():
        original = param.copy()

        def loss_of(value, param=param):
            param[...] = value
            return cr.SoftmaxCrossEntropy().forward(model.forward(x), y)

        np.testing.assert_allclose(analytic[key], numeric_jacobian(loss_of, original),
                                   atol=1e-8, err_msg=key)
        param[...] = original
    numeric_x = numeric_jacobian(lambda v: cr.SoftmaxCrossEntropy().forward(model.forward(v), y),
                                 x)
    np.testing.assert_allclose(grad_x, numeric_x, atol=1e-8)


def to_torch_sequential(model, torch):
    modules = []
    for layer in model.layers:
        if isinstance(layer, cr.Dense):
            linear = torch.nn.Linear(*layer.params["W"].shape, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.params["b"]))
            modules.append(linear)
        else:
            modules.append({cr.ReLU: torch.nn.ReLU, cr.Tanh: torch.nn.Tanh,
                            cr.Sigmoid: torch.nn.Sigmoid}[type(layer)]())
    return torch.nn.Sequential(*modules)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_mlp_gradients_agree_with_torch(activation, rng):
    torch = pytest.importorskip("torch")
    model = cr.mlp(8, [16, 12], 5, activation=activation, seed=3)
    reference = to_torch_sequential(model, torch)
    x, y = rng.normal(size=(10, 8)), rng.integers(0, 5, size=10)
    loss = cr.SoftmaxCrossEntropy(label_smoothing=0.1)
    value = loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    expected = torch.nn.functional.cross_entropy(reference(torch.from_numpy(x)),
                                                 torch.from_numpy(y), label_smoothing=0.1)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    for index, module in enumerate(reference):
        if isinstance(module, torch.nn.Linear):
            np.testing.assert_allclose(model.grads[f"{index}.W"], module.weight.grad.numpy().T,
                                       rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(model.grads[f"{index}.b"], module.bias.grad.numpy(),
                                       rtol=1e-10, atol=1e-14)


OPTIMIZER_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}),
]


@pytest.mark.parametrize(("name", "options"), OPTIMIZER_CASES)
def test_optimizers_follow_torch_step_by_step(name, options, rng):
    torch = pytest.importorskip("torch")
    model = cr.mlp(4, [6], 3, activation="tanh", seed=1)
    reference = to_torch_sequential(model, torch)
    optimizer = getattr(cr, name)(**options)
    reference_optimizer = getattr(torch.optim, name)(reference.parameters(), **options)
    loss = cr.SoftmaxCrossEntropy()
    for _ in range(5):
        x, y = rng.normal(size=(8, 4)), rng.integers(0, 3, size=8)
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        optimizer.step(model)
        reference_optimizer.zero_grad()
        torch.nn.functional.cross_entropy(reference(torch.from_numpy(x)),
                                          torch.from_numpy(y)).backward()
        reference_optimizer.step()
    np.testing.assert_allclose(model.params["0.W"], reference[0].weight.detach().numpy().T,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.params["2.b"], reference[2].bias.detach().numpy(),
                               rtol=1e-9, atol=1e-12)


def test_optimizer_argument_errors():
    with pytest.raises(ValueError, match="lr must be > 0"):
        cr.SGD(0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        cr.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas must be in"):
        cr.Adam(betas=(1.0, 0.9))


def test_errors_name_the_layer_index():
    model = small_mlp()
    with pytest.raises(ValueError, match=r"layer 0: Dense\(6→5\): expected input of shape "
                                         r"\(B, 6\), got \(2, 7\)"):
        model.forward(np.zeros((2, 7)))
    model.forward(np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"layer 4: Dense\(4→3\): backward expected grad_out"):
        model.backward(np.zeros((2, 4)))


def test_astype_and_weights_round_trip(rng):
    model = small_mlp().astype(np.float32)
    assert model.dtype == np.float32
    assert model.forward(rng.normal(size=(2, 6))).dtype == np.float32
    saved = model.get_weights()
    model.params["0.W"][...] = 0
    model.set_weights(saved)
    np.testing.assert_array_equal(model.params["0.W"], saved["0.W"])
    with pytest.raises(ValueError, match="expected keys"):
        model.set_weights({"0.W": saved["0.W"]})


def test_predict_proba_follows_the_last_layer(rng):
    x = rng.normal(size=(3, 6))
    logits_model = small_mlp()
    probabilities = logits_model.predict_proba(x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1)
    for output in ["softmax", "log_softmax"]:
        model = cr.mlp(6, [5, 4], 3, activation="tanh", output=output, seed=0)
        np.testing.assert_allclose(model.predict_proba(x), probabilities, rtol=1e-12)
    np.testing.assert_array_equal(logits_model.predict(x), probabilities.argmax(axis=1))


def test_mlp_argument_errors():
    with pytest.raises(ValueError, match="activation must be one of"):
        cr.mlp(2, [3], 2, activation="gelu")
    with pytest.raises(ValueError, match="needs at least one layer"):
        cr.Sequential([])
