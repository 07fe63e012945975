"""Exceptions chainrule raises beyond the built-in ones."""

__all__ = ["NonFiniteError"]


class NonFiniteError(ValueError):
    """A layer or loss received NaN or infinite values where it needs finite ones.

    A ``ValueError``, so bad user input is caught as such; ``fit`` checks its inputs up
    front, so when this arises inside training it means the training diverged.
    """
