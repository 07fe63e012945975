"""Claimed and numeric values of a failing row, side by side, wrong entries marked with ``*``.

Up to 6 × 6 (a Jacobian, or one sample's per-row Jacobian) the two matrices are printed whole;
larger ones, the rows holding the worst entries.
"""

from __future__ import annotations

import numpy as np

__all__ = ["side_by_side"]

_WHOLE = 6  # matrices up to this many rows and columns are printed whole
_WORST_ROWS = 3
_WIDTH = 10


def _cell(value: float, wrong: bool) -> str:
    return f"{value:>{_WIDTH}.4g}{'*' if wrong else ' '}"


def _line(claimed: np.ndarray, numeric: np.ndarray, wrong: np.ndarray) -> str:
    left = "".join(_cell(a, w) for a, w in zip(claimed.tolist(), wrong.tolist(), strict=True))
    right = "".join(_cell(n, w) for n, w in zip(numeric.tolist(), wrong.tolist(), strict=True))
    return f"  {left}  |{right}"


def side_by_side(row: object) -> list[str]:
    """Lines showing ``row.analytic`` (claimed) next to ``row.numeric``; [] when not useful.

    ``row`` is a :class:`~chainrule.check.report.Row` whose entries were all checked
    (``positions`` None). A per-row ``(B, m, n)`` quantity shows its worst sample.
    """
    claimed, numeric = np.asarray(row.analytic), np.asarray(row.numeric)
    if (row.passed or row.positions is not None or claimed.shape != numeric.shape
            or claimed.size == 0 or claimed.ndim > 3):
        return []
    wrong = row.rel_error > row.rtol
    title = f"{row.name}: claimed (left) vs numeric (right), * = wrong"
    if claimed.ndim == 3:
        sample = int(np.argmax(row.rel_error.reshape(len(claimed), -1).max(axis=1)))
        claimed, numeric, wrong = claimed[sample], numeric[sample], wrong[sample]
        title += f", sample {sample}"
    claimed, numeric, wrong = (np.atleast_2d(part) for part in (claimed, numeric, wrong))
    if claimed.shape[0] <= _WHOLE and claimed.shape[1] <= _WHOLE:
        return [title + ":"] + [_line(a, n, w) for a, n, w in zip(claimed, numeric, wrong,
                                                                    strict=True)]
    error = np.where(wrong, np.abs(claimed - numeric), 0)
    worst = np.argsort(-error.max(axis=1), kind="stable")[:_WORST_ROWS]
    lines = [f"{title}, worst rows of {claimed.shape[0]} × {claimed.shape[1]}:"]
    for index in worst.tolist():
        if wrong[index].any():
            columns = np.sort(np.argsort(-error[index], kind="stable")[:_WHOLE])
            lines.append(f"  row {index}, columns {columns.tolist()}:")
            lines.append(_line(claimed[index, columns], numeric[index, columns],
                               wrong[index, columns]))
    return lines
