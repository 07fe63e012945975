"""A worked derivation: ordered steps (name, formula, value) as text, Markdown, LaTeX, HTML.

``chainrule.explain`` builds these; this module only holds and prints them. Arrays whose
every axis has at most ``max_full`` entries are printed in full; a longer axis shows its
first three entries and its last one around an ellipsis.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Derivation", "Step", "format_number"]

# Ellipsis cells of a shortened array, and their LaTeX spelling.
_ACROSS, _DOWN, _DIAGONAL = "…", "⋮", "⋱"
_LATEX_DOTS = {_ACROSS: r"\cdots", _DOWN: r"\vdots", _DIAGONAL: r"\ddots"}


@dataclass(frozen=True)
class Step:
    """One line of a derivation: ``formula`` (plain text) and ``latex`` evaluate to ``value``.

    ``key`` names the step for lookup (``derivation["J"]``); ``group`` is the section it
    belongs to (e.g. a layer); ``passed`` is set on checks: did the compared values agree?
    """

    key: str
    name: str
    formula: str
    latex: str
    value: np.ndarray
    note: str = ""
    group: str = ""
    passed: bool | None = None


@dataclass
class Derivation:
    """An ordered list of ``Step``; ``str()`` is aligned plain text for a terminal.

    Also ``to_markdown()``, ``to_latex()`` (an amsmath ``align*`` block) and ``_repr_html_``
    (Jupyter). Numbers get ``precision`` significant digits; in the text, a value that would
    make a line longer than ``width`` characters goes on the lines below its formula.
    """

    title: str
    steps: list[Step] = field(default_factory=list)
    precision: int = 6
    max_full: int = 10
    width: int = 100

    def __getitem__(self, key: str) -> Step:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(f"no step {key!r}; steps: {[step.key for step in self.steps]}")

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def agrees(self) -> bool:
        """True when every check step passed."""
        return all(step.passed is not False for step in self.steps)

    def __str__(self) -> str:
        rows = [(f"{number}", step.name, _shape(step.value), step.formula,
                 self._text_lines(step.value)) for number, step in enumerate(self.steps, 1)]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        lines = [self.title]
        group = ""
        for step, (number, name, shape, formula, value_lines) in zip(self.steps, rows,
                                                                       strict=True):
            if step.group != group or not lines[1:]:
                group = step.group
                lines += ["", group] if group else [""]
            left = (f"{number:>{widths[0]}}  {name:<{widths[1]}}  {shape:>{widths[2]}}  "
                    f"{formula:<{widths[3]}}  ")
            verdict = {True: "   agree", False: "   DISAGREE", None: ""}[step.passed]
            indent = " " * (widths[0] + 2)
            if len(left) + max(map(len, value_lines)) <= self.width:
                lines.append((left + value_lines[0] + verdict).rstrip())
                lines += [" " * len(left) + more for more in value_lines[1:]]
            else:  # too wide beside the formula: the value goes on its own lines below
                lines.append(left.rstrip() + verdict)
                lines += [indent + "  " + line for line in value_lines]
            lines += [indent + note for note in step.note.splitlines()]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A Markdown table: step, shape, formula (as ``$LaTeX$``), value (as code)."""
        lines = [f"**{self.title}**", "", "| # | step | shape | formula | value |",
                 "|---:|---|---:|---|---|"]
        group = ""
        for number, step in enumerate(self.steps, 1):
            if step.group != group:
                group = step.group
                lines.append(f"| | **{_markdown_escape(group)}** | | | |")
            value = f"`{self.format_value(step.value)}`"
            if step.passed is not None:
                value += " agree" if step.passed else " **DISAGREE**"
            name = _markdown_escape(step.name)
            if step.note:
                name += "".join(f" <br><sub>{_markdown_escape(note)}</sub>"
                                for note in step.note.splitlines())
            lines.append(f"| {number} | {name} | {_shape(step.value)} | ${step.latex}$ "
                         f"| {value} |")
        return "\n".join(lines)

    def to_latex(self) -> str:
        """amsmath ``align*`` blocks, one per group under its bold title: one
        ``formula &= value && \\text{step}`` line per step."""
        lines = [f"% {self.title}"]
        group: str | None = None
        body: list[str] = []
        for step in self.steps:
            if step.group != group:
                if body:
                    lines += [r"\begin{align*}", " \\\\\n".join(body), r"\end{align*}"]
                    body = []
                group = step.group
                if group:
                    lines.append(rf"\noindent\textbf{{{_latex_text(group)}}}")
            verdict = {True: r"\quad\text{(agree)}", False: r"\quad\text{(DISAGREE)}",
                       None: ""}[step.passed]
            body.append(rf"{step.latex} &= {self._latex_value(step.value)}{verdict} "
                        rf"&& \text{{{_latex_text(step.name)}}}")
        lines += [r"\begin{align*}", " \\\\\n".join(body), r"\end{align*}"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "<tr><th>#</th><th>step</th><th>shape</th><th>formula</th><th>value</th></tr>"
        rows = []
        group = ""
        for number, step in enumerate(self.steps, 1):
            if step.group != group:
                group = step.group
                rows.append(f'<tr><th colspan="5" style="text-align:left">'
                            f"{html.escape(group)}</th></tr>")
            value = html.escape("\n".join(self._text_lines(step.value)))
            if step.passed is not None:
                value += " agree" if step.passed else " <b>DISAGREE</b>"
            note = "".join(f"<br><small>{html.escape(note)}</small>"
                           for note in step.note.splitlines())
            rows.append(f"<tr><td>{number}</td><td>{html.escape(step.name)}{note}</td>"
                        f"<td>{_shape(step.value)}</td><td>{html.escape(step.formula)}</td>"
                        f'<td><pre style="margin:0">{value}</pre></td></tr>')
        return (f"<p><b>{html.escape(self.title)}</b></p><table>{head}{''.join(rows)}"
                "</table>")

    def _cells(self, value: np.ndarray) -> list[list[str]]:
        """Formatted entries of a 1-D or 2-D ``value`` as rows, long axes shortened."""
        matrix = np.atleast_2d(value)
        row_indices = _shown_indices(matrix.shape[0], self.max_full)
        column_indices = _shown_indices(matrix.shape[1], self.max_full)
        rows = []
        for row in row_indices:
            cells = []
            for column in column_indices:
                if row is None:
                    cells.append(_DIAGONAL if column is None else _DOWN)
                else:
                    cells.append(_ACROSS if column is None else
                                 format_number(matrix[row, column], self.precision))
            rows.append(cells)
        return rows

    def _text_lines(self, value: np.ndarray) -> list[str]:
        """A scalar, ``(a, b)`` for a vector, or one ``[a  b]`` line per matrix row."""
        if np.ndim(value) == 0:
            return [format_number(value, self.precision)]
        rows = self._cells(value)
        if np.ndim(value) == 1:
            return [f"({', '.join(rows[0])})"]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        return ["[" + "  ".join(f"{cell:>{width}}" for cell, width in zip(row, widths,
                                                                         strict=True)) + "]"
                for row in rows]

    def format_value(self, value: np.ndarray) -> str:
        """``value`` on one line, as in the Markdown: ``0.5``, ``(a, b)``, ``[[a, b], [c, d]]``."""
        if np.ndim(value) < 2:
            return self._text_lines(value)[0]
        return "[" + ", ".join("[" + ", ".join(row) + "]" for row in self._cells(value)) + "]"

    def _latex_value(self, value: np.ndarray) -> str:
        if np.ndim(value) == 0:
            return _latex_number(format_number(value, self.precision))
        rows = [" & ".join(_LATEX_DOTS.get(cell) or _latex_number(cell) for cell in row)
                for row in self._cells(value)]
        return r"\begin{pmatrix} " + r" \\ ".join(rows) + r" \end{pmatrix}"


def _shown_indices(length: int, max_full: int) -> list[int | None]:
    """Every index up to ``max_full`` entries, else the first three, None (…), the last."""
    if length <= max_full:
        return list(range(length))
    return [0, 1, 2, None, length - 1]


def format_number(value: float, precision: int) -> str:
    """``value`` with ``precision`` significant digits; -0 prints as 0."""
    text = f"{float(value) + 0.0:.{precision}g}"
    return "0" if text == "-0" else text


def _shape(value: np.ndarray) -> str:
    """``"2"``, ``"2×2"``; empty for a scalar."""
    return "×".join(str(length) for length in np.shape(value))


def _latex_number(text: str) -> str:
    """``1.5e-11`` -> ``1.5 \\times 10^{-11}``; other numbers unchanged."""
    if "e" not in text or text in ("inf", "-inf"):
        return text.replace("inf", r"\infty").replace("nan", r"\mathrm{NaN}")
    mantissa, exponent = text.split("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}"


def _latex_text(text: str) -> str:
    """Plain text made safe for ``\\text{...}``."""
    return text.translate(_LATEX_ESCAPES)


_LATEX_ESCAPES = str.maketrans({
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}", "→": r"$\to$", "×": r"$\times$"})


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")
