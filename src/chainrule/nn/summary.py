"""Text and HTML views of a network and of a training history, for the terminal and Jupyter:
``Sequential.summary()``/``repr``/``_repr_html_`` and ``History``'s ``repr``/``_repr_html_``."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chainrule.nn.network import Sequential
    from chainrule.nn.training import History

__all__ = ["history_html", "history_repr", "model_html", "model_repr", "model_summary"]


def _layer_rows(model: Sequential) -> list[tuple[str, str, str, int]]:
    """``(index, layer, output shape, parameters)`` per layer."""
    width = model.input_width
    rows = []
    for index, layer in enumerate(model.layers):
        width = None if width is None else layer.output_width(width)
        shape = f"(B, {width if width is not None else '?'})"
        rows.append((str(index), repr(layer), shape, sum(p.size for p in layer.params.values())))
    return rows


def _classes(model: Sequential) -> str | None:
    if model.classes is None:
        return None
    labels = [repr(label) if isinstance(label, str) else str(label)
              for label in model.classes.tolist()]
    shown = labels if len(labels) <= 8 else [*labels[:4], "…", *labels[-2:]]
    return f"{len(labels)} classes: {', '.join(shown)}"


def _facts(model: Sequential) -> list[str]:
    """Parameters, dtype, scaling and classes, one phrase each."""
    scaler = model.preprocessing
    scaling = "no input scaling" if scaler is None else (
        f"{scaler.kind} scaling of {len(scaler.offset)} features (predict applies it)")
    facts = [f"{model.n_params:,} parameters", str(model.dtype), scaling]
    classes = _classes(model)
    return facts if classes is None else [*facts, classes]


def model_repr(model: Sequential) -> str:
    """``Sequential(Dense(4→8), ReLU(), Dense(8→3); 67 parameters, float64, ...)``."""
    layers = ", ".join(repr(layer) for layer in model.layers)
    return f"Sequential({layers}; {', '.join(_facts(model))})"


def model_summary(model: Sequential) -> str:
    """The layers with output shapes and parameter counts, then dtype, scaling and classes."""
    rows = [("#", "layer", "output shape", "parameters"),
            *((index, layer, shape, f"{count:,}") for index, layer, shape, count
              in _layer_rows(model))]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join([row[0].rjust(widths[0]), row[1].ljust(widths[1]),
                        row[2].ljust(widths[2]), row[3].rjust(widths[3])]).rstrip()
             for row in rows]
    rule = "-" * max(len(line) for line in lines)
    inputs = "?" if model.input_width is None else model.input_width
    return "\n".join([f"Sequential: input (B, {inputs})", rule, lines[0], rule, *lines[1:],
                      rule, *_facts(model)])


def model_html(model: Sequential) -> str:
    """``model_summary`` as an HTML table, for Jupyter."""
    cells = "".join(
        f"<tr><td>{index}</td><td><code>{html.escape(layer)}</code></td><td>{shape}</td>"
        f"<td style='text-align:right'>{count:,}</td></tr>"
        for index, layer, shape, count in _layer_rows(model))
    inputs = "?" if model.input_width is None else model.input_width
    return (f"<div><b>Sequential</b>: input (B, {inputs})<table><thead><tr><th>#</th>"
            f"<th>layer</th><th>output shape</th><th>parameters</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>{html.escape('; '.join(_facts(model)))}</div>")


def _metric_rows(history: History) -> list[tuple[str, float, float, float | None]]:
    """``(metric, first, last, at the best epoch)`` for every recorded metric."""
    best = history.best_epoch
    return [(name, values[0], values[-1], None if best is None else values[best])
            for name, values in history.history.items() if values]


def history_repr(history: History) -> str:
    """``History(30 epochs, loss 2.2358 → 0.0215, ...; best epoch 12)`` — no array dumps."""
    parts = [f"{len(history.epoch)} epochs"]
    parts += [f"{name} {first:.4f} → {last:.4f}" for name, first, last, _ in _metric_rows(history)]
    if history.best_epoch is not None:
        parts.append(f"best epoch {history.best_epoch + 1}")
    if history.stopped_early:
        parts.append("stopped early")
    return f"History({', '.join(parts)})"


def history_html(history: History) -> str:
    """First, last and best-epoch values of each metric as an HTML table, and the note."""
    best = history.best_epoch
    header = "<th>metric</th><th>epoch 1</th>" + f"<th>epoch {len(history.epoch)}</th>" + (
        "" if best is None else f"<th>best (epoch {best + 1})</th>")
    rows = "".join(
        f"<tr><td>{name}</td><td>{first:.4f}</td><td>{last:.4f}</td>"
        + ("" if at_best is None else f"<td>{at_best:.4f}</td>") + "</tr>"
        for name, first, last, at_best in _metric_rows(history))
    note = f"<br>{html.escape(history.note)}" if history.note else ""
    return (f"<div><b>History</b>: {len(history.epoch)} epochs in {history.seconds:.2f} s"
            f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>{note}</div>")
