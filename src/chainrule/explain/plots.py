"""Pictures of what backpropagation computes, drawn with matplotlib (optional extra ``plot``).

Every function here renders to a file with matplotlib's Agg canvas: no window opens, no
global backend is switched (so a Jupyter session keeps its own), and matplotlib is imported
only when a plot is asked for.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chainrule.io.files import write_bytes_atomically

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from chainrule.check.report import Report
    from chainrule.explain.derivation import Derivation
    from chainrule.nn.training import History

__all__ = ["check_plot_path", "new_figure", "plot_check", "plot_gradients", "plot_history",
           "plot_softmax_jacobian", "require_matplotlib", "save_figure"]

INSTALL_HINT = 'plotting needs matplotlib: pip install "chainrule[plot]"'


def require_matplotlib() -> None:
    """Raise ``ImportError`` naming the install command if matplotlib is missing.

    Call it before long work whose result is to be plotted, so that it fails first.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error


def check_plot_path(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if a plot can be written there: a known image suffix (.png,
    .svg, .pdf...) and an existing folder (a typo is an error, not a new folder)."""
    require_matplotlib()
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    supported = dict(FigureCanvasAgg.get_supported_filetypes())
    if shutil.which(matplotlib.rcParams["pgf.texsystem"]) is None:
        supported.pop("pgf", None)  # matplotlib writes .pgf through LaTeX
    if path.suffix.lower().lstrip(".") not in supported:
        raise ValueError(f"cannot save the plot to {str(path)!r}: the name must end in one of "
                         f"{', '.join('.' + kind for kind in sorted(supported))}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save the plot to {str(path)!r}: folder "
                                f"{str(path.parent)!r} does not exist")
    return path


def new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    """A matplotlib ``Figure`` of ``width`` × ``height`` inches on an Agg canvas (no window,
    no global backend change), with constrained layout."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` (checked by ``check_plot_path``), atomically: an
    interrupted save leaves the previous file. Returns the path."""
    path = check_plot_path(path)
    image, kind = io.BytesIO(), path.suffix.lower().lstrip(".")
    try:
        figure.savefig(image, format=kind, dpi=dpi)
    except (RuntimeError, OSError) as error:  # e.g. .pgf without a LaTeX installed
        raise ValueError(f"cannot save the plot to {str(path)!r}: matplotlib cannot write "
                         f".{kind} here ({error}); try .png, .svg or .pdf") from None
    write_bytes_atomically(path, image.getvalue())
    return path


def plot_history(history: History, path: str | os.PathLike,
                 loss_label: str = "cross-entropy (nats)") -> Path:
    """Loss and accuracy per epoch, training and validation, side by side; returns ``path``.

    The training values are running means over each epoch (the weights change during it);
    the validation values are measured after it. A dashed line marks the restored best epoch.
    """
    if not history.loss:
        raise ValueError("plot_history: the history has no epochs")
    panels = [("loss", loss_label, "Loss per epoch (lower is better)")]
    if history.accuracy:
        panels.append(("accuracy", "accuracy (fraction correct)",
                       "Accuracy per epoch (higher is better)"))
    figure = new_figure(5.0 * len(panels), 4.0)
    for position, (metric, label, title) in enumerate(panels, 1):
        axes = figure.add_subplot(1, len(panels), position)
        epochs = np.arange(1, len(history.history[metric]) + 1)
        axes.plot(epochs, history.history[metric], marker="o", markersize=3,
                  label="training (running mean)")
        validation = history.history[f"val_{metric}"]
        if validation:
            axes.plot(epochs, validation, marker="s", markersize=3, label="validation")
        if history.best_epoch is not None:
            axes.axvline(history.best_epoch + 1, color="grey", linestyle="--",
                         label=f"best epoch ({history.best_epoch + 1}, restored)")
        axes.set(title=title, xlabel="epoch", ylabel=label)
        _integer_ticks(axes.xaxis, 0)
        axes.grid(alpha=0.3)
        axes.legend()
    return save_figure(figure, path)


def plot_softmax_jacobian(derivation: Derivation, path: str | os.PathLike) -> Path:
    """Heat map of the softmax Jacobian ``J = diag(A) - A Aᵀ`` beside bars of A, T and ∂E/∂Z.

    ``derivation`` comes from ``explain_softmax_cross_entropy``; returns ``path``.
    """
    jacobian = derivation["J"].value
    n_classes = len(jacobian)
    figure = new_figure(11.0, 4.6)
    figure.get_layout_engine().set(wspace=0.08)
    heat, bars = figure.subplots(1, 2, width_ratios=[1, 1.2])
    _heat_map(heat, jacobian, r"$J_{ij} = \partial A_i / \partial Z_j$ (per unit logit)",
              diverging=True, annotate=n_classes <= 8)
    heat.set(title=r"Softmax Jacobian $J = \mathrm{diag}(A) - A A^\top$",
             xlabel="logit $Z_j$ (input)", ylabel="probability $A_i$ (output)")
    classes = np.arange(n_classes)
    width = 0.27
    gradient = r"$\partial E/\partial Z = J^\top \partial E/\partial A$"
    for offset, key, label in ((-width, "A", "$A$ = softmax(Z)"), (0, "T", "$T$ (target)"),
                               (width, "dE/dZ", gradient)):
        bars.bar(classes + offset, derivation[key].value, width, label=label)
    bars.axhline(0, color="black", linewidth=0.8)
    bars.set(title=r"Per class: output, target and the gradient $A - T$", xlabel="class",
             ylabel="probability, or gradient (nats per unit logit)")
    _integer_ticks(bars.xaxis, n_classes)
    bars.legend()
    bars.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def plot_gradients(derivation: Derivation, path: str | os.PathLike) -> Path:
    """Per layer, heat maps of |∂E/∂W| and of any full local Jacobian, and the size ‖δk‖ of
    the gradient entering each layer (log scale): where gradients grow or vanish.

    ``derivation`` comes from ``explain_backprop``; returns ``path``.
    """
    weights = [step for step in derivation if step.key.endswith(".W")]
    jacobians = [step for step in derivation if step.key.endswith(".local")
                 and step.value.ndim == 2 and step.name == "local Jacobian"
                 and "W" not in step.formula]
    n_panels = len(weights) + len(jacobians) + 1
    n_columns = min(n_panels, 2)
    n_rows = -(-n_panels // n_columns)
    figure = new_figure(6.0 * n_columns, 4.2 * n_rows)
    panels = iter(figure.subplots(n_rows, n_columns, squeeze=False).ravel())
    for step in weights:
        axes = next(panels)
        index = step.key.split(".")[0]
        # Drawn transposed, (n_out, n_in): one row per unit the weights feed.
        _heat_map(axes, np.abs(step.value.T), rf"$|\partial E / \partial W_{{{index}}}|$ "
                  "(nats per unit weight)", diverging=False, annotate=False)
        axes.set(title=f"|weight gradient|, {step.group}", xlabel=f"input unit of layer {index}",
                 ylabel=f"output unit of layer {index}")
    for step in jacobians:
        axes = next(panels)
        _heat_map(axes, step.value, "$\\partial$ output / $\\partial$ input", diverging=True,
                  annotate=len(step.value) <= 6)
        axes.set(title=f"local Jacobian, {step.group}", xlabel="input unit", ylabel="output unit")
    axes = next(panels)
    incoming = [step for step in derivation if step.key.endswith(".grad_out")]
    labels = [step.group.replace(": ", "\n") for step in incoming]
    norms = [float(np.linalg.norm(step.value)) for step in incoming]
    axes.bar(np.arange(len(norms)), norms, color="tab:purple")
    axes.set_yscale("log")
    axes.set_xticks(np.arange(len(norms)), labels, fontsize=8)
    axes.set(title="Size of the gradient entering each layer (output → input)",
             ylabel=r"$\|\delta_{k+1}\|_2$ (nats per unit, log scale)")
    axes.grid(axis="y", alpha=0.3)
    for unused in panels:
        unused.set_visible(False)
    return save_figure(figure, path)


def plot_check(report: Report, path: str | os.PathLike) -> Path:
    """One bar per check of a gradient-check ``report``: its max relative error between
    analytic and numeric values (log scale), the tolerance as a dashed line, failing checks
    in red and the cause (the failing layer, or the loss) labelled; returns ``path``."""
    rows = report.rows
    if not rows:
        raise ValueError("plot_check: the report has no checks")
    floor = 1e-17  # exact agreement (error 0) still gets a visible bar on the log scale
    errors = np.array([max(row.max_rel_error, floor) for row in rows])
    cause = {id(row) for row in report.cause_rows} if not report.passed else set()
    # Red: the cause; orange: failing only because of it (inherited downstream); green: ok.
    colours = ["tab:green" if row.passed else "tab:red" if id(row) in cause else "tab:orange"
               for row in rows]
    figure = new_figure(9.0, 1.8 + 0.32 * len(rows))
    axes = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    axes.barh(positions, errors, color=colours, left=floor)
    axes.set_xscale("log")
    axes.set_yticks(positions, [("▶ " if id(row) in cause else "") + row.name for row in rows],
                    fontsize=8)
    for tick, row in zip(axes.get_yticklabels(), rows, strict=True):
        if id(row) in cause:
            tick.set_color("tab:red")
            tick.set_fontweight("bold")
    rtol = rows[0].rtol
    axes.axvline(rtol, color="black", linestyle="--", label=f"tolerance rtol = {rtol:g}")
    from matplotlib.patches import Patch

    handles = [Patch(color="tab:green", label="passes"), Patch(color="tab:red", label="cause"),
               Patch(color="tab:orange", label="fails because of the cause"),
               *axes.get_legend_handles_labels()[0]]
    verdict = "PASSED" if report.passed else f"FAILED, cause: {report.cause or rows[0].name}"
    axes.set(title=f"Analytic vs numeric derivatives: {verdict}",
             xlabel="max relative error |a - n| / max(|a|, |n|, atol/rtol) (log scale)")
    axes.grid(axis="x", alpha=0.3)
    figure.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8,
                  frameon=False)
    return save_figure(figure, path)


def _heat_map(axes: Axes, values: np.ndarray, label: str, diverging: bool,
              annotate: bool) -> None:
    """``values`` as an image with a colour bar labelled ``label``; a diverging map is
    centred on 0 (red positive, blue negative); ``annotate`` writes each value in its cell."""
    if diverging:
        limit = float(np.max(np.abs(values))) or 1.0
        image = axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    else:
        image = axes.imshow(values, cmap="viridis", aspect="auto")
    axes.figure.colorbar(image, ax=axes, label=label)
    _integer_ticks(axes.xaxis, values.shape[1])
    _integer_ticks(axes.yaxis, values.shape[0])
    if annotate:
        limit = float(np.max(np.abs(values))) or 1.0
        for (row, column), value in np.ndenumerate(values):
            axes.text(column, row, f"{value:.3g}", ha="center", va="center", fontsize=9,
                      color="white" if abs(value) > 0.6 * limit else "black")


def _integer_ticks(axis, length: int) -> None:
    """Tick every index of ``range(length)`` when there are few, else (or for ``length=0``)
    let matplotlib pick whole numbers."""
    if 0 < length <= 16:
        axis.set_ticks(np.arange(length))
    else:
        from matplotlib.ticker import MaxNLocator
        axis.set_major_locator(MaxNLocator(integer=True))
