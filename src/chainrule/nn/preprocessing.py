"""Input scaling that is explicit and recorded with the model: ``x' = (x - offset) / scale``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SCALINGS", "PreparedInputs", "Scaler"]

SCALINGS = ("standard", "minmax")


class PreparedInputs(np.ndarray):
    """Network inputs made by ``Sequential.prepare``: the recorded scaling applied, the model's
    dtype. Slices keep the mark. ``forward`` of a model that records a scaling takes only these,
    so raw inputs cannot reach its first layer by accident; ``prepare`` leaves them as they are.
    """


@dataclass(frozen=True, repr=False)
class Scaler:
    """Per-feature affine scaling ``x' = (x - offset) / scale``.

    ``kind="standard"``: offset = mean, scale = standard deviation (zero-mean, unit-variance
    features). ``kind="minmax"``: offset = min, scale = max - min (features in [0, 1]).
    Constant features get scale 1, so they map to 0 instead of dividing by zero.

    >>> Scaler.fit(np.array([[0.0], [10.0]]), "minmax").transform(np.array([[5.0]]))
    array([[0.5]])
    """

    kind: str
    offset: np.ndarray
    scale: np.ndarray

    def __repr__(self) -> str:
        return f"Scaler({self.kind!r}, {len(self.offset)} features)"

    @classmethod
    def fit(cls, x: np.ndarray, kind: str) -> Scaler:
        """Learn offset and scale from the training inputs ``x`` ``(N, n_features)``."""
        x = np.asarray(x, dtype=np.float64)
        if kind == "standard":
            offset, scale = x.mean(axis=0), x.std(axis=0)
        elif kind == "minmax":
            offset, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
        else:
            raise ValueError(f"Scaler: kind must be one of {SCALINGS}, got {kind!r}")
        return cls(kind, offset, np.where(scale > 0, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale raw inputs ``(B, n_features)``; the result is float64 (or x's float dtype)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.offset):
            raise ValueError(f"Scaler: expected input of shape (B, {len(self.offset)}), "
                             f"got {x.shape}")
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return ((x - self.offset) / self.scale).astype(dtype, copy=False)
