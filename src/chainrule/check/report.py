"""What a check found: rows of analytic vs numeric values, the verdict, the diagnosis.

Relative error (every report): ``r = |a - n| / max(|a|, |n|, atol / rtol)`` for analytic
``a`` and numeric ``n``; an entry passes when ``r <= rtol``, i.e. when
``|a - n| <= max(rtol · max(|a|, |n|), atol)``, so entries near zero are judged absolutely
and cannot raise false alarms. Defaults: ``rtol = 1e-5``, ``atol = 1e-8`` (float64 central
differences are good to ~1e-8 relative).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from chainrule.check.matrices import side_by_side

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "Diagnosis",
    "Report",
    "Row",
    "Sweep",
    "SweepRow",
    "Worst",
    "relative_error",
]

DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-8


@dataclass(frozen=True)
class Diagnosis:
    """One recognised mistake: a stable ``identifier``, its explanation, where it was seen."""

    identifier: str
    explanation: str
    part: str = "all"
    detail: str = ""
    fix: str = ""
    where: str = ""

    def __str__(self) -> str:
        where = "" if self.part == "all" else f" [{self.part}]"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.identifier}{where}: {self.explanation}{detail}"

    def to_dict(self) -> dict[str, str]:
        return {"identifier": self.identifier, "explanation": self.explanation,
                "part": self.part, "detail": self.detail, "fix": self.fix, "where": self.where}


def relative_error(analytic: np.ndarray, numeric: np.ndarray, atol: float = DEFAULT_ATOL,
                   rtol: float = DEFAULT_RTOL) -> np.ndarray:
    """``|a - n| / max(|a|, |n|, atol / rtol)``, entry by entry (same shape as the inputs)."""
    floor = atol / rtol
    return np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic),
                                                              np.abs(numeric)), floor)


@dataclass(frozen=True)
class Worst:
    """The entry with the largest relative error: where, claimed (analytic) and numeric value."""

    row: str
    index: tuple[int, ...]
    analytic: float
    numeric: float


@dataclass
class Row:
    """One compared quantity (a Jacobian, an input gradient, a parameter gradient).

    ``analytic``/``numeric`` have the same shape; ``positions`` maps their flat entries to
    indices into the full quantity when only a sample of entries was checked. ``probe`` is
    ``(φ, slope)``: ``φ(t)`` the checked scalar at ``x + t·v`` for a random direction ``v``
    and ``slope`` the claimed ``dφ/dt`` at 0, used by :meth:`Report.eps_sweep`. ``problem``
    fails the row whatever its numbers (a crash at this shape, a result of the wrong kind).
    """

    name: str
    analytic: np.ndarray
    numeric: np.ndarray
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    layer: int | None = None
    positions: np.ndarray | None = None
    diagnosis: list[Diagnosis] = field(default_factory=list)
    probe: tuple[Callable[[float], float], float] | None = field(default=None, repr=False)
    problem: str | None = None

    @property
    def abs_error(self) -> np.ndarray:
        return np.abs(self.analytic - self.numeric)

    @property
    def rel_error(self) -> np.ndarray:
        return relative_error(self.analytic, self.numeric, self.atol, self.rtol)

    @property
    def max_abs_error(self) -> float:
        return float(np.max(self.abs_error, initial=0.0))

    @property
    def max_rel_error(self) -> float:
        return float(np.maximum.reduce(self.rel_error, axis=None, initial=0.0))

    @property
    def passed(self) -> bool:
        return self.problem is None and self.max_rel_error <= self.rtol

    @property
    def worst(self) -> Worst | None:
        if self.analytic.size == 0 or self.analytic.shape != self.numeric.shape:
            return None
        flat = int(np.argmax(self.rel_error))
        index = np.unravel_index(flat, self.analytic.shape)
        position = tuple(int(i) for i in (index if self.positions is None
                                          else self.positions[flat]))
        return Worst(self.name, position, float(self.analytic[index]),
                     float(self.numeric[index]))

    def to_dict(self) -> dict:
        worst = self.worst
        return {"name": self.name, "layer": self.layer, "entries": int(self.analytic.size),
                "passed": self.passed, "problem": self.problem, "max_abs_error": self.max_abs_error,
                "max_rel_error": self.max_rel_error,
                "worst": None if worst is None else {"index": list(worst.index),
                                                     "analytic": worst.analytic,
                                                     "numeric": worst.numeric},
                "diagnosis": [d.to_dict() for d in self.diagnosis]}


@dataclass
class Report:
    """The result of a check: one :class:`Row` per compared quantity.

    ``failing_layer``: 0-based index of the layer whose own derivative is wrong (the cause,
    not every layer below it that inherits the error), None when none is; ``cause`` says
    the same in words (it may be the loss). ``diagnosis`` lists the recognised mistakes of
    the cause; ``str(report)`` is a table, ``_repr_html_`` the same for Jupyter.
    """

    title: str
    rows: list[Row]
    failing_layer: int | None = None
    cause: str | None = None
    notes: list[str] = field(default_factory=list)
    failing_layers: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def __bool__(self) -> bool:
        """``report.passed``, so that ``assert check_layer(...)`` fails on a wrong derivative."""
        return self.passed

    @property
    def failed_rows(self) -> list[Row]:
        return [row for row in self.rows if not row.passed]

    @property
    def cause_rows(self) -> list[Row]:
        """The failing rows of the cause (the failing layer's, or the first failing ones)."""
        failed = self.failed_rows
        if self.failing_layer is not None:
            return [row for row in failed if row.layer == self.failing_layer]
        named = [row for row in failed if self.cause is not None and row.name == self.cause]
        return named or failed[:1]

    @property
    def diagnosed_rows(self) -> list[Row]:
        """The cause's failing rows, then those of every other layer failing in isolation."""
        others = [row for row in self.failed_rows
                  if row.layer in self.failing_layers and row.layer != self.failing_layer
                  and not row.name.startswith("network")]
        return self.cause_rows + others

    @property
    def worst(self) -> Worst | None:
        """Worst entry of the cause when the check failed, else of the whole report."""
        rows = self.cause_rows or self.rows
        candidates = [row for row in rows if row.analytic.size and row.problem is None]
        if not candidates:
            return None
        return max(candidates, key=lambda row: row.max_rel_error).worst

    @property
    def diagnosis(self) -> list[Diagnosis]:
        """The recognised mistakes of every failing layer (the cause's first), deduplicated."""
        found: dict[str, Diagnosis] = {}
        for row in self.diagnosed_rows:
            for item in row.diagnosis:
                found.setdefault(f"{item.where}/{item.identifier}/{item.part}", item)
        return list(found.values())

    def summary(self) -> str:
        """One line: ``PASSED`` or where it fails, the worst entry and what it looks like."""
        if self.passed:
            count = len(self.rows)
            return (f"PASSED: {count} check{'' if count == 1 else 's'} within "
                    f"rtol={self._rtol:g}" if self.rows else "PASSED (nothing to check)")
        worst = self.worst
        broken = next((row for row in self.cause_rows if row.problem is not None), None)
        if broken is not None or worst is None:
            broken = broken or self.cause_rows[0]
            line = f"FAILED: {broken.name}: {broken.problem}"
        else:
            line = (f"FAILED: {worst.row}, entry {list(worst.index)}: analytic "
                    f"{worst.analytic:.6g}, numeric {worst.numeric:.6g}")
        diagnosis = self.diagnosis
        places = {item.where for item in diagnosis}
        if diagnosis:
            line += " — looks like " + "; ".join(
                (f"{item.where}: " if len(places) > 1 and item.where else "") + str(item)
                for item in diagnosis)
        else:
            line += " — no classic mistake in the catalogue matches"
        return line

    def __str__(self) -> str:
        width = min(64, max([44, *(len(row.name) for row in self.rows)]))
        header = (f"{'check':<{width}} {'entries':>7} {'max abs err':>11} {'max rel err':>11}"
                  "  status")
        lines = [self.title, header, "-" * len(header)]
        for row in self.rows:
            status = "ok" if row.passed else "FAIL"
            if row.problem is not None and row.analytic.size == 0:  # nothing was compared
                lines.append(f"{row.name[:width]:<{width}} {'-':>7} {'-':>11} {'-':>11}  {status}")
                continue
            lines.append(f"{row.name[:width]:<{width}} {row.analytic.size:>7} "
                         f"{row.max_abs_error:>11.2e}"
                         f" {row.max_rel_error:>11.2e}  {status}")
        lines += [*self.notes, _FORMULA.format(rtol=self._rtol, atol=self._atol)]
        lines += [f"{row.name}: {row.problem}" for row in self.rows if row.problem is not None]
        for row in self.diagnosed_rows:
            lines += side_by_side(row)
        fixes = dict.fromkeys(item.fix for item in self.diagnosis if item.fix)
        lines += [f"fix: {fix}" for fix in fixes]
        lines.append(self.summary())
        return "\n".join(lines)

    @property
    def _rtol(self) -> float:
        return self.rows[0].rtol if self.rows else DEFAULT_RTOL

    @property
    def _atol(self) -> float:
        return self.rows[0].atol if self.rows else DEFAULT_ATOL

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr style='color:{'inherit' if row.passed else '#b00020'}'>"
            f"<td>{html.escape(row.name)}</td><td>{row.analytic.size}</td>"
            f"<td>{row.max_abs_error:.2e}</td><td>{row.max_rel_error:.2e}</td>"
            f"<td>{'ok' if row.passed else '<b>FAIL</b>'}</td></tr>" for row in self.rows)
        notes = "".join(f"<p>{html.escape(note)}</p>" for note in [
            *self.notes, *(f"{row.name}: {row.problem}" for row in self.rows if row.problem)])
        matrices = "".join(f"<pre>{html.escape(chr(10).join(side_by_side(row)))}</pre>"
                           for row in self.diagnosed_rows if side_by_side(row))
        fixes = "".join(f"<p>fix: {html.escape(fix)}</p>" for fix in dict.fromkeys(
            item.fix for item in self.diagnosis if item.fix))
        return (f"<div><b>{html.escape(self.title)}</b><table><thead><tr><th>check</th>"
                "<th>entries</th><th>max abs err</th><th>max rel err</th><th>status</th></tr>"
                f"</thead><tbody>{cells}</tbody></table>{notes}"
                f"<p>{html.escape(_FORMULA.format(rtol=self._rtol, atol=self._atol))}</p>"
                f"{matrices}{fixes}<p><b>{html.escape(self.summary())}</b></p></div>")

    def to_dict(self) -> dict:
        worst = self.worst
        return {"title": self.title, "passed": self.passed, "failing_layer": self.failing_layer,
                "failing_layers": self.failing_layers, "cause": self.cause, "rtol": self._rtol,
                "atol": self._atol,
                "worst": None if worst is None else {"row": worst.row,
                                                     "index": list(worst.index),
                                                     "analytic": worst.analytic,
                                                     "numeric": worst.numeric},
                "diagnosis": [d.to_dict() for d in self.diagnosis],
                "rows": [row.to_dict() for row in self.rows], "notes": self.notes,
                "summary": self.summary()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def eps_sweep(self, steps: Sequence[float] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5,
                                                  1e-6, 1e-7)) -> Sweep:
        """Re-check every row along a random direction for several steps ``h``.

        For ``φ(h)`` the checked scalar moved by ``h`` along the direction and ``s`` the
        claimed slope: the central-difference error ``|(φ(h) - φ(-h)) / 2h - s|`` and the
        Taylor remainder ``|φ(h) - φ(0) - h s|``, which shrinks like ``h²`` when ``s`` is
        right and like ``h`` when it is wrong; ``order`` is its fitted exponent.
        """
        return Sweep(tuple(steps), [_sweep_row(row, steps) for row in self.rows
                                    if row.probe is not None])


_FORMULA = ("rel err = |a - n| / max(|a|, |n|, atol/rtol); an entry passes if rel err ≤ "
            "rtol = {rtol:g} (atol = {atol:g})")


@dataclass(frozen=True)
class SweepRow:
    """Errors of one row across steps; ``order`` of the Taylor remainder (2: right, 1: wrong)."""

    name: str
    central_error: tuple[float, ...]
    remainder: tuple[float, ...]
    order: float

    @property
    def consistent(self) -> bool:
        return self.order > 1.5


@dataclass
class Sweep:
    """:meth:`Report.eps_sweep` result; ``str`` is a table, one line per row and step."""

    steps: tuple[float, ...]
    rows: list[SweepRow]

    @property
    def consistent(self) -> bool:
        return all(row.consistent for row in self.rows)

    def __str__(self) -> str:
        """Three lines per check (its name, order and verdict; the central-difference
        errors; the remainders), under one header of steps: under 100 characters wide."""
        label = 12
        width = label + 8 * len(self.steps)

        def values(name: str, numbers: Sequence[float]) -> str:
            return f"  {name:<{label - 2}}" + "".join(f"{number:>8.1e}" for number in numbers)

        lines = ["step-size sweep along a random direction: relative error of the central",
                 "difference, and the Taylor remainder |φ(h) - φ(0) - h·slope|, whose order is",
                 "~2 when the slope is right and ~1 when it is wrong",
                 f"{'h =':<{label}}" + "".join(f"{step:>8.0e}" for step in self.steps)]
        for row in self.rows:
            verdict = "ok" if row.consistent else "WRONG"
            order = "exact" if np.isinf(row.order) else f"{row.order:.2f}"
            tail = f"  order {order:>5}  {verdict}"
            name = row.name[:width - len(tail)]
            lines += [f"{name:<{width - len(tail)}}{tail}",
                      values("central", row.central_error), values("remainder", row.remainder)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"steps": list(self.steps), "rows": [
            {"name": row.name, "central_error": list(row.central_error),
             "remainder": list(row.remainder), "order": row.order,
             "consistent": row.consistent} for row in self.rows]}


def _sweep_row(row: Row, steps: Sequence[float]) -> SweepRow:
    phi, slope = row.probe

    def value(t: float) -> float:
        try:
            return phi(t)
        except ValueError:  # a large step left the domain (e.g. probabilities below 0)
            return float("nan")

    at_zero = value(0.0)
    central, remainder = [], []
    for step in steps:
        plus, minus = value(step), value(-step)
        central.append(abs((plus - minus) / (2 * step) - slope) / max(abs(slope), 1e-300))
        remainder.append(abs(plus - at_zero - step * slope))
    # Fit the order where the remainder is well above round-off of φ.
    floor = 1e4 * np.finfo(np.float64).eps * max(abs(at_zero), 1.0)
    usable = sorted((step, rest) for step, rest in zip(steps, remainder, strict=True)
                    if rest > floor)[:3]  # the smallest steps: where the leading term rules
    if len(usable) >= 2:
        logs = np.log(np.array(usable))
        order = float(np.polyfit(logs[:, 0], logs[:, 1], 1)[0])
    else:
        order = float("inf")  # remainder at round-off for every step: φ linear, slope exact
    return SweepRow(row.name, tuple(central), tuple(remainder), order)
