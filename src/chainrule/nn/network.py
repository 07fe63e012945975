"""``Sequential``: layers applied in order, gradients propagated back in reverse."""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chainrule.nn.errors import at_layer
from chainrule.nn.functional import softmax
from chainrule.nn.layers import Dense, Layer, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from chainrule.nn.preprocessing import PreparedInputs, Scaler
from chainrule.nn.summary import model_html, model_repr, model_summary

if TYPE_CHECKING:
    import torch

__all__ = ["ACTIVATIONS", "Sequential", "mlp"]

ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}


class Sequential:
    """A feed-forward network ``y = f_L(... f_1(x))``.

    One rule for inputs: ``forward``, ``model(x)`` and ``backward`` work on what the first
    layer takes; ``predict``, ``predict_proba`` and ``chainrule.evaluate`` take RAW inputs and
    apply the recorded ``preprocessing`` (set by ``fit(scaling=...)``) themselves. For a model
    that records a scaling, ``forward`` accepts only ``model.prepare(X_raw)`` (it raises on
    anything else), so raw inputs never reach the first layer by accident. Inputs are cast
    to the model's dtype. ``predict`` maps class indices to the recorded ``classes``.

    Layers are given as arguments, ``Sequential(l1, l2, ...)``, or as one list.

    >>> model = Sequential(Dense(4, 8, seed=0), ReLU(), Dense(8, 3, seed=1))
    >>> model.forward(np.ones((2, 4))).shape
    (2, 3)
    """

    def __init__(self, *layers: Layer | Sequence[Layer]) -> None:
        if len(layers) == 1 and isinstance(layers[0], Iterable) and not isinstance(
                layers[0], Layer | str):  # one list (or generator) of layers
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Sequential: needs at least one layer")
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: layer {index} is {_shown(layer)}, not a "
                                f"chainrule layer{_hint(layer)}")
        self._hold(layers)

    def _hold(self, layers: Sequence[object]) -> None:
        self.layers: list[Layer] = list(layers)
        self.preprocessing: Scaler | None = None
        self.classes: np.ndarray | None = None

    @classmethod
    def _of_any(cls, layers: Sequence[object]) -> Sequential:
        """A Sequential of objects that follow the layer protocol (``forward``, ``backward``,
        ``params``, ``grads``) without being chainrule's: the checker's wrapped user layers."""
        network = object.__new__(cls)
        network._hold(layers)
        return network

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def __repr__(self) -> str:
        return model_repr(self)

    def _repr_html_(self) -> str:
        return model_html(self)

    def summary(self, print_fn: Callable[[str], object] = print) -> None:
        """Print the layers with output shapes and parameter counts, then the parameter
        total, dtype, recorded scaling and classes (as Keras's ``model.summary()``)."""
        print_fn(model_summary(self))

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every layer on network inputs ``(B, n_in)``; each caches what its ``backward``
        needs. ``x`` is cast to the model's dtype (float32 into a float64 model computes in
        float64; float64 into a float32 model is rounded to float32)."""
        if self.preprocessing is not None and not isinstance(x, PreparedInputs):
            raise ValueError(
                f"this model records {self.preprocessing.kind} scaling of its inputs, so "
                "forward and model(x) take scaled inputs: pass model.prepare(X) for raw X, or "
                "use model.predict, model.predict_proba or chainrule.evaluate, which take raw X")
        if not hasattr(x, "dtype"):  # lists; arrays and SciPy sparse matrices keep their kind
            x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        for index, layer in enumerate(self.layers):
            try:
                x = layer.forward(x)
            except ValueError as error:
                raise at_layer(index, error) from None
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Propagate ``∂L/∂output`` back through every layer; returns ``∂L/∂input``."""
        for index in range(len(self.layers) - 1, -1, -1):
            try:
                grad_out = self.layers[index].backward(grad_out)
            except ValueError as error:
                raise at_layer(index, error) from None
        return grad_out

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, param)`` for every live parameter array, names like ``"0.W"``
        (layer index.parameter), as in PyTorch."""
        for index, layer in enumerate(self.layers):
            for name, param in layer.params.items():
                yield f"{index}.{name}", param

    def named_grads(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, grad)`` for every parameter's gradient from the last ``backward``, in the
        order and with the names of ``named_parameters``."""
        for index, layer in enumerate(self.layers):
            for name in layer.params:
                yield f"{index}.{name}", layer.grads[name]

    def parameters(self) -> Iterator[np.ndarray]:
        """Every live parameter array, in the order of ``named_parameters``."""
        for _, param in self.named_parameters():
            yield param

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Every live parameter array, by key ``"<layer index>.<name>"``."""
        return dict(self.named_parameters())

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Every parameter gradient from the last ``backward``, keyed like ``params``."""
        return dict(self.named_grads())

    @property
    def n_params(self) -> int:
        return sum(param.size for param in self.parameters())

    @property
    def dtype(self) -> np.dtype:
        """The parameters' dtype (float64 when the network has no parameters)."""
        return next((param.dtype for param in self.parameters()), np.dtype(np.float64))

    @property
    def input_width(self) -> int | None:
        """Features expected by the first ``Dense`` layer (None if there is none)."""
        first = next((layer for layer in self.layers if "W" in layer.params), None)
        return None if first is None else first.params["W"].shape[0]

    def output_width(self, input_width: int | None = None) -> int:
        """Width of the network's output for inputs of ``input_width`` features."""
        width = self.input_width if input_width is None else input_width
        if width is None:
            raise ValueError("Sequential: give input_width, the network has no Dense layer")
        for layer in self.layers:
            width = layer.output_width(width)
        return width

    def astype(self, dtype: np.typing.DTypeLike) -> Sequential:
        """Convert every parameter to ``dtype`` in place; returns the model."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def get_weights(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, for ``set_weights`` (e.g. to restore the best epoch)."""
        return {key: param.copy() for key, param in self.params.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy ``weights`` (as from ``get_weights``) into the live parameters."""
        params = self.params
        if set(weights) != set(params):
            raise ValueError(f"Sequential.set_weights: expected keys {sorted(params)}, "
                             f"got {sorted(weights)}")
        for key, value in weights.items():
            if np.shape(value) != params[key].shape:
                raise ValueError(f"Sequential.set_weights: {key} has shape {params[key].shape},"
                                 f" got {np.shape(value)}")
            params[key][...] = value

    def prepare(self, x: np.ndarray) -> PreparedInputs:
        """Raw inputs ``(B, n_in)`` -> network inputs: the recorded preprocessing, in the
        model's dtype. Already prepared inputs are returned as they are."""
        if isinstance(x, PreparedInputs):
            return x
        x = np.asarray(x)
        width = self.input_width
        if x.ndim != 2:
            raise ValueError(f"the model expects inputs of shape (B, {width or 'features'}), "
                             f"one row per sample; got shape {x.shape}")
        if width is not None and x.shape[1] != width:
            raise ValueError(f"the model expects {width} features per row; the data has "
                             f"{x.shape[1]} (shape {x.shape})")
        if self.preprocessing is not None:
            x = self.preprocessing.transform(x)
        return x.astype(self.dtype, copy=False).view(PreparedInputs)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(B, C)`` for RAW inputs ``(B, n_in)``.

        The last layer decides: ``Softmax`` outputs are returned as they are, ``LogSoftmax``
        outputs exponentiated, anything else is taken as logits and passed through softmax.
        """
        output = self.forward(self.prepare(x))
        last = self.layers[-1]
        if isinstance(last, Softmax):
            return output
        if isinstance(last, LogSoftmax):
            return np.exp(output)
        return softmax(output)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class for each RAW input row: ``classes[argmax]`` (indices if no classes).
        A network with one output has no classes: its values are ``model(model.prepare(x))``."""
        output = self.forward(self.prepare(x))
        if output.shape[1] == 1:
            raise ValueError("predict picks a class by argmax, and this network has one "
                             "output, so no classes to pick from; for its values use "
                             "model(model.prepare(X))")
        indices = np.argmax(output, axis=1)
        return indices if self.classes is None else self.classes[indices]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to a safetensors file, atomically (``chainrule.io.serialization.save``);
        ``chainrule.load(path)`` reads it back."""
        from chainrule.io.serialization import save

        return save(self, path)

    def to_torch(self, include_preprocessing: bool = False) -> torch.nn.Sequential:
        """An equivalent ``torch.nn.Sequential`` with the same weights
        (``chainrule.io.export.to_torch``; needs ``pip install torch==2.13.0``).
        ``include_preprocessing=True``: raw inputs to probabilities, as the ONNX graph."""
        from chainrule.io.export import to_torch

        return to_torch(self, include_preprocessing)


def _shown(layer: object) -> str:
    """A layer as an error names it: the class name for the user's objects."""
    if isinstance(layer, type):
        return f"the class {layer.__name__}"
    return repr(layer) if type(layer).__repr__ is not object.__repr__ else (
        f"a {type(layer).__name__} object")


def _hint(layer: object) -> str:
    if isinstance(layer, type):
        try:
            required = any(parameter.default is parameter.empty and parameter.kind in (
                parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
                for parameter in inspect.signature(layer).parameters.values())
        except (TypeError, ValueError):
            required = True
        return f"; pass an instance: {layer.__name__}({'...' if required else ''})"
    if callable(getattr(layer, "forward", None)):  # the user's own layer
        return ("; to gradient-check a network of your own layers, pass them as a list: "
                "chainrule.gradcheck([layer, ...], loss, X, y)")
    return ""


def mlp(
    n_in: int,
    hidden: int | Sequence[int],
    n_out: int,
    activation: str = "relu",
    output: str | None = None,
    seed: int | None = None,
    dtype: np.typing.DTypeLike = np.float64,
) -> Sequential:
    """A multi-layer perceptron ``Dense → act → … → Dense [→ output]``.

    ``hidden``: the hidden widths, e.g. ``[16, 8]``, or one int for one hidden layer.
    ``output``: None (logits, to train with ``SoftmaxCrossEntropy``), ``"softmax"`` or
    ``"log_softmax"``. ReLU layers get He initialisation, the others Glorot. Layer seeds
    derive from ``seed``.

    >>> [type(layer).__name__ for layer in mlp(3, 2, 2)]
    ['Dense', 'ReLU', 'Dense']
    """
    if isinstance(hidden, int | np.integer):
        hidden = [int(hidden)]
    if activation not in ACTIVATIONS:
        raise ValueError(f"mlp: activation must be one of {sorted(ACTIVATIONS)}, "
                         f"got {activation!r}")
    outputs = {None: None, "softmax": Softmax, "log_softmax": LogSoftmax}
    if output not in outputs:
        raise ValueError(f"mlp: output must be None, 'softmax' or 'log_softmax', got {output!r}")
    rng = np.random.default_rng(seed)
    init = "he" if activation == "relu" else "glorot"
    widths = [n_in, *hidden]
    layers: list[Layer] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [Dense(fan_in, fan_out, seed=rng, dtype=dtype, init=init),
                   ACTIVATIONS[activation]()]
    layers.append(Dense(widths[-1], n_out, seed=rng, dtype=dtype))
    if outputs[output] is not None:
        layers.append(outputs[output]())
    return Sequential(layers)
