"""Exceptions chainrule raises beyond the built-in ones."""

__all__ = ["NonFiniteError", "at_layer"]


class NonFiniteError(ValueError):
    """A layer or loss received NaN or infinite values where it needs finite ones.

    A ``ValueError``, so bad user input is caught as such; ``fit`` checks its inputs up
    front, so when this arises inside training it means the training diverged.
    """


def at_layer(index: int, error: ValueError) -> ValueError:
    """``error`` prefixed with ``"layer <index>: "``, of the same kind: a ``NonFiniteError``
    stays one, so ``fit`` still recognises divergence raised inside a hidden layer."""
    kind = NonFiniteError if isinstance(error, NonFiniteError) else ValueError
    return kind(f"layer {index}: {error}")
