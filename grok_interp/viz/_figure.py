"""The figure class every plot returns: a matplotlib ``Figure`` that shows itself.

Plots are built with the object API on an Agg canvas, never through pyplot, so they
leak no open figures and do not depend on the session's backend. Such a figure has no
pyplot manager, and a fresh Jupyter kernel only registers its inline PNG formatter once
pyplot has been imported; so a plain ``Figure`` displays as ``<Figure size ...>`` and
``fig.show()`` raises. :class:`InlineFigure` fixes both:

* ``_repr_png_``: IPython (Jupyter, VS Code, Colab) displays it as a PNG when it is a
  cell's value, with no ``%matplotlib`` magic. Where pyplot's inline backend is active
  its own Figure formatter takes precedence, so the figure is drawn once either way.
* ``show()``: in a notebook, displays it; in a script with an interactive pyplot
  backend, opens it in a window (as ``Figure.show`` does for pyplot figures); headless
  (Agg), warns as matplotlib does and draws nothing.

``savefig`` works everywhere, as for any ``Figure``.

Every plot also draws into axes you give it (``ax=``): :func:`place_axes` hands a plot
either new axes on a new :class:`InlineFigure` or yours, checked, so plots compose into
one figure of your own (``fig, axs = plt.subplots(1, 3)``; ``plot_x(..., ax=axs[0])``).
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._validate import bad_value

__all__ = ["InlineFigure", "new_figure", "place_axes", "grid_shape", "set_title"]


def _in_notebook() -> bool:
    """Whether an IPython kernel (Jupyter and friends, not a terminal IPython) runs us."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class InlineFigure(Figure):
    """A ``Figure`` on an Agg canvas that displays in notebooks and shows in scripts."""

    #: Resolution of the PNG a notebook displays.
    repr_dpi = 100

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.repr_dpi, bbox_inches="tight", pad_inches=0.1)
        return buf.getvalue()

    def show(self, warn: bool = True) -> None:
        """Display the figure: inline in a notebook, in a window under a GUI backend.

        Headless (a non-interactive backend such as Agg) it warns, as
        ``matplotlib.figure.Figure.show`` does, and draws nothing: save it instead
        (``fig.savefig`` or :func:`grok_interp.viz.save_figure`).
        """
        if self.canvas.manager is not None:  # already adopted by pyplot
            return super().show(warn)
        if _in_notebook():
            from IPython.display import display

            display(self)
            return
        import matplotlib
        from matplotlib.backends import BackendFilter, backend_registry

        backend = matplotlib.get_backend()
        interactive = backend.lower() in backend_registry.list_builtin(BackendFilter.INTERACTIVE)
        if not interactive:
            if warn:
                warnings.warn(
                    f"the {backend!r} backend is non-interactive, so the figure cannot be shown; "
                    "save it with fig.savefig(...) or grok_interp.viz.save_figure(...)",
                    UserWarning,
                    stacklevel=2,
                )
            return
        canvas_class = backend_registry.load_backend_module(backend).FigureCanvas  # the session's GUI canvas
        manager = canvas_class.new_manager(self, id(self))
        manager.show()


def new_figure(width: float, height: float) -> InlineFigure:
    """An :class:`InlineFigure` of ``width x height`` inches, constrained layout, Agg canvas."""
    fig = InlineFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def grid_shape(n: int, ncols: int = 4) -> tuple[int, int]:
    """Rows and columns of a grid of ``n`` panels, at most ``ncols`` wide."""
    cols = max(1, min(n, ncols))
    return math.ceil(n / cols), cols


def place_axes(
    ax: Any, n: int, width: float, height: float, *, grid: tuple[int, int] | None = None, **subplots: Any
) -> tuple[Figure, list[Axes]]:
    """The figure and the ``n`` axes a plot draws into.

    Args:
        ax: None: a new :class:`InlineFigure` of ``width x height`` inches with ``n``
            axes (``grid`` rows x columns, default one row; the cells past ``n``
            hidden). Otherwise the caller's axes: one ``Axes`` (when ``n == 1``) or a
            sequence / array of ``n`` of them.
        n: How many panels the plot draws.
        width, height: Size of a new figure.
        grid: Rows and columns of a new figure's panels.
        **subplots: Passed to ``Figure.subplots`` for a new figure (``sharex``,
            ``width_ratios``, ...).

    Returns:
        ``(figure, axes)``: for given axes, the figure that holds them (the top-level
        one when they sit in a subfigure).
    """
    if ax is None:
        fig = new_figure(width, height)
        rows, cols = grid or (1, n)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, **subplots)).reshape(-1)
        for extra in axes[n:]:
            extra.set_visible(False)
        return fig, list(axes[:n])
    given = [ax] if isinstance(ax, Axes) else list(np.asarray(ax, dtype=object).reshape(-1))
    if len(given) != n or not all(isinstance(a, Axes) for a in given):
        what = "one matplotlib Axes" if n == 1 else f"{n} matplotlib Axes (a list or array)"
        raise bad_value("ax", f"{len(given)} object(s)", f"this plot draws {n} panel(s): give {what}")
    fig = given[0].figure
    while getattr(fig, "figure", fig) is not fig:  # a SubFigure: its root figure
        fig = fig.figure
    return fig, given


def set_title(fig: Figure, axes: list[Axes], title: str | None, default: str, own: bool) -> None:
    """The plot's title: the figure's suptitle on a figure the plot made (``own``); on
    given axes, ``title`` (not the default) goes on the first axes, and the caller's
    figure keeps its own suptitle."""
    if own:
        fig.suptitle(title or default)
    elif title:
        axes[0].set_title(title)
