"""Pictures of what backpropagation computes, drawn with matplotlib (optional extra ``plot``).

Every function here renders to a file with matplotlib's Agg canvas: no window opens, no
global backend is switched (so a Jupyter session keeps its own), and matplotlib is imported
only when a plot is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure"]

INSTALL_HINT = 'plotting needs matplotlib: pip install "chainrule[plot]"'


def new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    """A matplotlib ``Figure`` (inches ``width`` × ``height``) on an Agg canvas, laid out
    with constrained layout; raises ``ImportError`` naming the install command if
    matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path``, format from its suffix (.png, .svg, .pdf...); returns it.

    The parent folder must exist, so that a typo in the path is an error, not a new folder.
    """
    path = Path(path)
    supported = figure.canvas.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in supported:
        raise ValueError(f"cannot save the plot to {str(path)!r}: the name must end in one of "
                         f"{', '.join('.' + kind for kind in sorted(supported))}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save the plot to {str(path)!r}: folder "
                                f"{str(path.parent)!r} does not exist")
    figure.savefig(path, dpi=dpi)
    return path
